"""``QuantLinear``: a drop-in for ``nn.Linear`` with fake (reference) and real (int8) modes.

Forward for an input ``x [..., in]``::

    x <- x / smooth_v              (per-variant smoothing vector, optional)
    x <- input_transform(x)        (online transform, e.g. a Hadamard rotation, optional)
    y  = Q_a(x) @ Q_w(W_v)^T + b

``W_v`` already carries whatever the method folded into it (``W diag(smooth)``, ``W H``).
A layer holds one or more *variants* (bit settings and weights) and picks one per call from
the sampling-step context (:mod:`quantizers.core.context`): the last variant serves the
first ``early_steps`` steps (e.g. an 8-bit variant), otherwise the timestep bucket given by
``t_edges`` picks one (timestep-aware SmoothQuant). One variant is the common case.

Modes:

- ``fake``: ``Q_a`` and ``Q_w`` quantize-dequantize in float (what the papers report);
- ``real``: weights stored as int8 codes (<=4 bits: two per byte), activations quantized per
  token (or with a static range) to int8 codes of ``a_bits`` levels, one exact integer GEMM
  per weight group, then the zero-point corrections (row/column sums) and the per-token x
  per-channel rescale. Integer codes equal the fake mode's, so real and fake differ only by
  float summation order. A 16-bit side runs dequantized in float. On CPU the codes and, with
  one weight group, the corrections and rescale run as compiled loops
  (:mod:`quantizers.core.fused`; op by op elsewhere or with ``VQBENCH_FUSED=off``).

The GEMM backend is chosen per device and ISA when the layer is built
(:func:`~quantizers.core.backends.choose_backend`; ``self.backend``): ``int_mm``
(``torch._int_mm``; <=4-bit weights unpacked per call) or ``fbgemm`` (CPU; the codes,
<=4-bit ones expanded to int8, prepacked once into fbgemm's format, a runtime copy next to
the stored codes that :meth:`QuantVariant.memory_bytes` does not count). A layer whose
input arrives on another device than its backend serves runs ``int_mm``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core import fused
from quantizers.core.backends import BACKENDS, choose_backend, note_used
from quantizers.core.context import current_step
from quantizers.core.kernels import (
    fbgemm_linear,
    fbgemm_linear_split,
    fbgemm_pack,
    fbgemm_saturates,
    int_mm,
    pack_int4,
    row_sums,
    unpack_int4,
)
from quantizers.core.observers import bucket_of
from quantizers.core.quantizer import (
    fake_quant_act,
    group_view,
    qparams_from_range,
    quantize_codes,
    weight_qparams,
)
from vqbench.types import KERNEL_MODES

logger = logging.getLogger(__name__)
MODES = KERNEL_MODES  # one declaration: vqbench.types


@dataclass(frozen=True)
class LayerSpec:
    """Bit widths and granularities of one layer variant (16 bits = that side stays FP)."""

    w_bits: int = 8
    a_bits: int = 8
    w_granularity: str = "channel"
    group_size: int = 128
    w_symmetric: bool = False
    a_granularity: str = "token"
    a_symmetric: bool = False


@dataclass
class QWeight:
    """Quantized weight: signed int8 codes ``[N, K]`` (asymmetric codes shifted by
    ``2^(b-1)``), scale and shifted zero ``[N or 1, G]`` for ``G`` groups along K."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor

    def dequant(self) -> torch.Tensor:
        """Float32 ``(codes - zero) * scale`` shaped ``[N, K]``."""
        n, k = self.codes.shape
        g = self.scale.shape[-1]
        c = self.codes.float().reshape(n, g, k // g)
        return ((c - self.zero.unsqueeze(-1)) * self.scale.unsqueeze(-1)).reshape(n, k)


def quantize_weight(
    w: torch.Tensor, spec: LayerSpec, clip_ratio: torch.Tensor | float = 1.0
) -> QWeight:
    """Round-to-nearest min-max quantization of ``w [N, K]`` (optionally range-clipped)."""
    bits, sym = spec.w_bits, spec.w_symmetric
    w = w.detach().float()
    scale, zero = weight_qparams(w, bits, spec.w_granularity, spec.group_size, sym, clip_ratio)
    grouped = group_view(w, spec.w_granularity, spec.group_size)
    codes = quantize_codes(grouped, scale, zero, bits, sym)
    off = 0 if sym else 2 ** (bits - 1)
    n = w.shape[0]
    if spec.w_granularity == "tensor":
        scale, zero = scale.reshape(1, 1), zero.reshape(1, 1)
    else:
        scale, zero = scale.reshape(n, -1), zero.reshape(n, -1)
    return QWeight((codes - off).reshape(w.shape).to(torch.int8), scale, zero - off)


class QuantVariant(nn.Module):
    """One bit setting of a :class:`QuantLinear`: its weight and activation quantizers."""

    def __init__(
        self,
        spec: LayerSpec,
        mode: str,
        weight: torch.Tensor,
        qweight: QWeight | None = None,
        smooth: torch.Tensor | None = None,
        act_range: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """``weight`` is the (transformed) float weight; ``qweight`` overrides its RTN
        quantization (GPTQ); ``act_range`` = static ``(lo, hi)`` for per-tensor activations."""
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"kernel must be one of {MODES}, got {mode!r}")
        self.spec, self.mode = spec, mode
        self.out_features, self.in_features = weight.shape
        dtype = weight.dtype
        if spec.w_bits < 16 and qweight is None:
            qweight = quantize_weight(weight, spec)
        self.packed = mode == "real" and spec.w_bits <= 4
        if spec.w_bits >= 16:
            self.register_buffer("weight", weight.detach().clone())
        elif mode == "fake":
            self.register_buffer("weight", qweight.dequant().to(dtype))
        else:
            codes = qweight.codes
            self.register_buffer("qweight", pack_int4(codes) if self.packed else codes.clone())
            self.register_buffer("w_scale", qweight.scale.float().clone())
            self.register_buffer("w_zero", qweight.zero.float().clone())
            g = qweight.scale.shape[-1]
            colsum = codes.reshape(codes.shape[0], g, -1).sum(-1, dtype=torch.int32)
            self.register_buffer("w_colsum", colsum.float())
        self.backend = "fake" if mode == "fake" else "float"
        if mode == "real" and spec.w_bits < 16 and spec.a_bits < 16:
            self.backend = choose_backend(weight.device)
            note_used(self.backend)
        if self.backend == "fbgemm":
            self._pack_fbgemm(qweight)
        self.register_buffer("smooth", None if smooth is None else smooth.detach().float().clone())
        self.register_buffer("a_scale", None)
        self.register_buffer("a_zero", None)
        if spec.a_bits < 16 and spec.a_granularity == "tensor":
            if act_range is None:
                raise ValueError("a_granularity 'tensor' needs a calibrated act_range")
            lo, hi = (torch.as_tensor(v, dtype=torch.float32).reshape(1, 1) for v in act_range)
            self.a_scale, self.a_zero = qparams_from_range(lo, hi, spec.a_bits, spec.a_symmetric)

    def _pack_fbgemm(self, qweight: QWeight) -> None:
        """fbgemm's packed weight per group and the activation zero point's correction.

        fbgemm returns ``F[m, n] = sum_g s_g[n] sum_k u[m, k] (c[n, k] - z_g[n])``; with
        ``x_hat = (u - z_u) s_x`` the output is ``s_x (F - z_u w_corr) + b``, where
        ``w_corr[n] = sum_g s_g[n] (colsum_g[n] - k z_g[n])``. Where fbgemm saturates and the
        codes are wide enough to reach int16's limit (8-bit weights with 8-bit activations),
        each GEMM is split in two (:func:`~quantizers.core.kernels.fbgemm_linear_split`).
        """
        n, kk = qweight.codes.shape
        groups = qweight.scale.shape[-1]
        k = kk // groups
        scale, zero = qweight.scale.float().expand(n, groups), qweight.zero.expand(n, groups)
        self._packed = [
            fbgemm_pack(qweight.codes[:, g * k : (g + 1) * k], scale[:, g], zero[:, g])
            for g in range(groups)
        ]
        corr = (scale * (self.w_colsum - k * zero)).sum(-1)
        self.register_buffer("w_corr", corr.contiguous(), persistent=False)
        s = self.spec
        u_max = 2 ** (s.a_bits - 1) - 1 + 128 if s.a_symmetric else 2**s.a_bits - 1
        self._split = 2 * u_max * 2 ** (s.w_bits - 1) > 32767 and fbgemm_saturates()

    def int_weight(self) -> torch.Tensor:
        """Signed int8 codes ``[N, K]`` (unpacked on the fly when packed)."""
        return unpack_int4(self.qweight, self.in_features) if self.packed else self.qweight

    def float_weight(self) -> torch.Tensor:
        """The dequantized weight the layer multiplies by (float32 in real mode)."""
        if self.spec.w_bits >= 16 or self.mode == "fake":
            return self.weight
        return QWeight(self.int_weight(), self.w_scale, self.w_zero).dequant()

    def matmul(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``Q_a(x) Q_w(W)^T + b`` for ``x [M, K]``."""
        s = self.spec
        if self.mode == "fake" or s.w_bits >= 16 or s.a_bits >= 16:
            if s.a_bits < 16:
                x = fake_quant_act(x, s.a_bits, s.a_symmetric, self.a_scale, self.a_zero)
            w = self.float_weight().to(x.dtype)
            return F.linear(x, w, None if bias is None else bias.to(x.dtype))
        if self.backend == "fbgemm" and x.device.type == "cpu":
            return self._fbgemm_matmul(x, bias)
        return self._int_matmul(x, bias)

    def _codes(
        self, x: torch.Tensor, shift: int, dtype: torch.dtype, rowsum: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Activation codes of ``x`` (see :func:`~quantizers.core.fused.token_codes`)."""
        s = self.spec
        return fused.token_codes(
            x.float(), s.a_bits, s.a_symmetric, shift, dtype, self.a_scale, self.a_zero, rowsum
        )

    def _fbgemm_matmul(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        u, sx, zu, _ = self._codes(x, 128 if self.spec.a_symmetric else 0, torch.float32)
        m, groups = u.shape[0], len(self._packed)
        k = u.shape[1] // groups
        out = None
        gemm = fbgemm_linear_split if self._split else fbgemm_linear
        for g, packed in enumerate(self._packed):
            y = gemm(u if groups == 1 else u[:, g * k : (g + 1) * k], packed)
            out = y if out is None else out.add_(y)
        if fused.active(out):
            return fused.fbgemm_epilogue(out, sx, zu, self.w_corr, _float(bias)).to(x.dtype)
        left = [-zu.expand(m, 1).reshape(m)]
        return _epilogue(out, sx, left, [self.w_corr], bias).to(x.dtype)

    def _int_matmul(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``torch._int_mm`` per group, then the rescale and zero-point corrections.

        ``y = s_x sum_g s_g (q.w_g - z_x colsum_g - z_g (rows_g - k z_x)) + b``: with one
        group on CPU, one compiled pass over ``[M, N]``
        (:func:`~quantizers.core.fused.int_epilogue`); otherwise the scaled products take one
        pass per group and the corrections and the bias one ``addmm`` of rank <= 2 groups + 1
        (:func:`_epilogue`).
        """
        s = self.spec
        groups = self.w_scale.shape[-1]
        one = groups == 1 and fused.active(x)
        shift = 0 if s.a_symmetric else -(2 ** (s.a_bits - 1))
        q, sx, zx, rows = self._codes(x, shift, torch.int8, one and not s.w_symmetric)
        w = self.int_weight()
        if one:
            return fused.int_epilogue(
                int_mm(q, w.t()),
                self.w_scale[:, 0],
                sx,
                None if s.a_symmetric else zx,
                self.w_colsum[:, 0],
                None if s.w_symmetric else self.w_zero[:, 0],
                rows,
                q.shape[1],
                _float(bias),
            ).to(x.dtype)
        m, n = q.shape[0], self.out_features
        k = q.shape[1] // groups
        zx_m = zx.expand(m, 1).reshape(m)
        out, left, right = None, [], []
        for g in range(groups):
            sl = slice(g * k, (g + 1) * k)
            qg, wg = (q, w) if groups == 1 else (q[:, sl], w[:, sl])
            acc = torch.mul(int_mm(qg, wg.t()), self.w_scale[:, g])  # int32 -> float, scaled
            out = acc if out is None else out.add_(acc)
            if not s.a_symmetric:  # sum_k (q - zx) w = q.w - zx * colsum(w)
                left.append(-zx_m)
                right.append((self.w_scale[:, g] * self.w_colsum[:, g]).expand(n))
            if not s.w_symmetric:  # ... - zw * sum_k (q - zx)
                left.append(k * zx_m - row_sums(qg).float())
                right.append((self.w_scale[:, g] * self.w_zero[:, g]).expand(n))
        return _epilogue(out, sx, left, right, bias).to(x.dtype)

    def memory_bytes(self) -> int:
        """Packed storage: codes (<=4 bits two per byte) + scales/zeros + static ranges."""
        s, n, k = self.spec, self.out_features, self.in_features
        total = 0 if self.smooth is None else self.smooth.numel() * 4
        if s.a_bits < 16 and s.a_granularity == "tensor":
            total += 8
        if s.w_bits >= 16:
            return total + self.weight.numel() * self.weight.element_size()
        total += n * ((k + 1) // 2 if s.w_bits <= 4 else k)
        n_scales = {"tensor": 1, "channel": n}.get(s.w_granularity, n * (k // s.group_size))
        return total + n_scales * 4 * (1 if s.w_symmetric else 2)


def _float(bias: torch.Tensor | None) -> torch.Tensor | None:
    return None if bias is None else bias.float()


def _epilogue(
    out: torch.Tensor,
    sx: torch.Tensor,
    left: list[torch.Tensor],
    right: list[torch.Tensor],
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``sx * (out + sum_i left_i right_i^T) + bias`` in two passes over ``out [M, N]``."""
    out.mul_(sx)
    m = out.shape[0]
    sx_m = sx.expand(m, 1).reshape(m)
    cols = [v * sx_m for v in left]
    rows = list(right)
    if bias is not None:
        cols.append(torch.ones_like(sx_m))
        rows.append(bias.float())
    if cols:
        out.addmm_(torch.stack(cols, 1), torch.stack(rows, 0))
    return out


class QuantLinear(nn.Module):
    """Quantized replacement for an ``nn.Linear`` (see the module docstring)."""

    def __init__(
        self,
        linear: nn.Linear,
        variants: list[QuantVariant],
        input_transform: nn.Module | None = None,
        early_steps: int = 0,
        t_edges: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        expected = len(t_edges) + 1 + (1 if early_steps > 0 else 0)
        if len(variants) != expected:
            raise ValueError(f"QuantLinear needs {expected} variants, got {len(variants)}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.variants = nn.ModuleList(variants)
        self.input_transform = input_transform
        self.early_steps = int(early_steps)
        self.t_edges = tuple(float(e) for e in t_edges)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        self._warned = False
        if fused.enabled():  # compile here, not in the first timed generation batch
            x = torch.zeros(2, self.in_features)
            with torch.no_grad():
                for v in variants:
                    if v.backend in BACKENDS and v.qweight.device.type == "cpu":
                        v.matmul(x, self.bias)

    @property
    def mode(self) -> str:
        return self.variants[0].mode

    @property
    def weight(self) -> torch.Tensor:
        """Dequantized weight of the default variant (for code that probes ``.weight``)."""
        return self.variants[0].float_weight()

    def variant_index(self) -> int:
        """Variant chosen for the current :func:`~quantizers.core.context.sampling_step`."""
        ctx = current_step()
        if self.early_steps and ctx.step is not None and ctx.step < self.early_steps:
            return len(self.variants) - 1
        if not self.t_edges:
            return 0
        if ctx.timestep is None:
            if not self._warned:
                logger.warning("timestep-aware layer called outside sampling_step(); range 0")
                self._warned = True
            return 0
        return bucket_of(ctx.timestep, self.t_edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.variants[self.variant_index()]
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if v.smooth is not None:
            x = x / v.smooth.to(x.dtype)
        if self.input_transform is not None:
            x = self.input_transform(x)
        return v.matmul(x, self.bias).reshape(*shape[:-1], self.out_features)

    def memory_bytes(self) -> int:
        """Packed bytes of all variants, the bias and the transform's buffers."""
        total = sum(v.memory_bytes() for v in self.variants)
        if self.bias is not None:
            total += self.bias.numel() * self.bias.element_size()
        if self.input_transform is not None:
            total += sum(b.numel() * b.element_size() for b in self.input_transform.buffers())
        return total

    def extra_repr(self) -> str:
        specs = ", ".join(f"W{v.spec.w_bits}A{v.spec.a_bits}" for v in self.variants)
        return f"in={self.in_features}, out={self.out_features}, mode={self.mode}, [{specs}]"
