"""GPTQ (Frantar et al., ICLR 2023): column-by-column quantization with Hessian error feedback.

``H = 2/n X^T X`` comes from :func:`quantizers.core.calib.collect_hessians`. Dead inputs
(zero diagonal) are zeroed, ``damp * mean(diag H)`` is added, and the upper Cholesky factor
of ``H^-1`` drives the lazy-batch updates of the reference implementation. Groups, when
used, get their range from the already-updated weights as each group begins.
"""

from __future__ import annotations

import torch

from quantizers.core.linear import LayerSpec, QWeight
from quantizers.core.quantizer import qparams_from_range, quantize_codes


def _params(
    w: torch.Tensor, spec: LayerSpec, clip: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    if spec.w_granularity == "tensor":
        lo, hi = w.min().reshape(1, 1), w.max().reshape(1, 1)
    else:
        lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    return qparams_from_range(lo * clip, hi * clip, spec.w_bits, spec.w_symmetric)


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    spec: LayerSpec,
    damp: float = 0.01,
    clip_ratio: torch.Tensor | float = 1.0,
) -> QWeight:
    """Quantize ``weight [N, K]`` with GPTQ under ``spec``; returns codes, scales, zeros.

    ``clip_ratio`` (scalar or ``[N, 1]``) shrinks each row's min-max range (learned clipping).
    """
    w = weight.detach().double().clone()
    n, k = w.shape
    h = hessian.detach().double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    grouped = spec.w_granularity == "group"
    block = spec.group_size if grouped else 128
    bits, sym = spec.w_bits, spec.w_symmetric
    codes = torch.zeros(n, k, dtype=torch.double)
    scales, zeros = [], []
    if not grouped:
        scale, zero = _params(w, spec, clip_ratio)
        scales, zeros = [scale], [zero]
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        if grouped:
            scale, zero = _params(w1, spec, clip_ratio)
            scales.append(scale)
            zeros.append(zero)
        for i in range(i2 - i1):
            col = w1[:, i : i + 1]
            q = quantize_codes(col, scale, zero, bits, sym)
            codes[:, i1 + i] = q[:, 0]
            e = (col - (q - zero) * scale) / h1[i, i]
            w1[:, i:] -= e @ h1[i : i + 1, i:]
            err1[:, i : i + 1] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    off = 0 if sym else 2 ** (bits - 1)
    scale = torch.cat(scales, 1).float()
    zero = torch.cat(zeros, 1).float() - off
    return QWeight((codes - off).to(torch.int8), scale, zero)
