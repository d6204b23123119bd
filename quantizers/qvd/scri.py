"""SCRI (reconstructed): Scattered Channel Range Integration (``research/methods.md`` §4.4).

Per input channel ``j`` with calibrated range ``[m_j, M_j]``: centre ``z_j = (M_j + m_j)/2``,
radius ``r_j = (M_j - m_j)/2`` and scale ``s_j = (r_j / max r)^alpha``. The linear computes

    y = Q((x - z) / s) Q(W diag(s))^T + (b + W z)

which equals ``x W^T + b`` before quantization: the scale is folded into the weight, the
shift into the bias, and ``(x - z) / s`` runs online (:class:`SCRILinear`). The quantized
layer's bias is ``b + Q(W diag(s)) (z / s)`` (see :func:`fold`), so the shift only centres
the activations and leaves the weight error that of ``Q(W diag(s)) x / s``. ``alpha = 0``
only centres the channels; ``alpha = 1`` gives every channel the same symmetric range, so
one per-tensor quantizer covers all levels for every channel. :func:`search_alpha` picks
alpha per layer by the output error on calibration rows, scored against ranges measured on
other calibration prompts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.quantizer import (
    EPS,
    fake_quant_act,
    fake_quant_weight,
    qparams_from_range,
)


def scri_params(
    lo: torch.Tensor, hi: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Shift ``z``, scale ``s`` (both ``[K]``) and the per-tensor range of ``(x - z) / s``."""
    lo, hi = lo.float(), hi.float()
    shift = (hi + lo) / 2
    radius = ((hi - lo) / 2).clamp_min(EPS)
    scale = (radius / radius.max()).pow(alpha).clamp_min(EPS)
    r = (radius / scale).max()
    return shift, scale, (-r, r)


def fold(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    shift: torch.Tensor,
    scale: torch.Tensor,
    w_used: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``W diag(s)`` and the bias ``b + W~ (z / s)`` for input ``(x - z) / s``.

    ``w_used`` is the weight the layer really multiplies by (the quantized ``W diag(s)``);
    by default ``W diag(s)`` itself, which gives the exact FP fold ``b + W z``. With the
    quantized weight, the shift cancels exactly in the weight term:
    ``Q(W diag(s)) (x - z) / s + b~ = Q(W diag(s)) x / s + b``, so centering changes only
    the activation quantizer and never amplifies the weight error by ``|x - z|``.
    """
    w = weight.detach() * scale.to(weight.dtype)
    w_b = (w if w_used is None else w_used.detach()).float()
    b = w_b @ (shift.float() / scale.float())
    if bias is not None:
        b = b + bias.detach().float()
    return w, b.to(weight.dtype)


def output_error(
    x: torch.Tensor,
    weight: torch.Tensor,
    spec: LayerSpec,
    shift: torch.Tensor,
    scale: torch.Tensor,
    act_range: tuple[torch.Tensor, torch.Tensor] | None,
) -> float:
    """Sum of squared output errors of RTN-quantizing the SCRI-transformed layer on ``x``."""
    w = weight.detach().float()
    ws = w * scale
    wq = fake_quant_weight(ws, spec.w_bits, spec.w_granularity, spec.group_size, spec.w_symmetric)
    xs = (x.float() - shift) / scale
    if spec.a_bits < 16:
        qs = None
        if act_range is not None:
            lo, hi = (v.reshape(1, 1) for v in act_range)
            qs = qparams_from_range(lo, hi, spec.a_bits, spec.a_symmetric)
        xs = fake_quant_act(xs, spec.a_bits, spec.a_symmetric, *(qs or (None, None)), ste=False)
    out = F.linear(xs, wq) + wq @ (shift / scale)  # bias cancels against the FP reference
    return float((out - F.linear(x.float(), w)).pow(2).sum())


def search_alpha(
    rows: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]],
    weight: torch.Tensor,
    spec: LayerSpec,
    alphas: tuple[float, ...],
    static: bool,
) -> float:
    """The ``alpha`` with the lowest output error over ``rows``.

    Each entry pairs input rows ``x`` with the channel ranges ``(lo, hi)`` to build SCRI
    from. Ranges taken from *other* calibration prompts than the rows (as the QVD
    calibration does) make the score include the clipping that unseen inputs suffer.
    """
    if len(alphas) == 1 or not rows:
        return alphas[0]
    errs = []
    for a in alphas:
        err = 0.0
        for x, (lo, hi) in rows:
            shift, scale, rng = scri_params(lo, hi, a)
            err += output_error(x, weight, spec, shift, scale, rng if static else None)
        errs.append(err)
    return alphas[min(range(len(alphas)), key=errs.__getitem__)]


class SCRILinear(QuantLinear):
    """A :class:`QuantLinear` whose variants each carry a SCRI shift and folded bias.

    Variant ``i`` computes ``Q((x - shift_i) / smooth_i) Q(W_i)^T + bias_i``; ``smooth_i``
    is the variant's ``smooth`` vector and ``W_i`` already holds ``W diag(smooth_i)``.
    """

    def __init__(
        self,
        linear: nn.Linear,
        variants: list[QuantVariant],
        shifts: torch.Tensor,
        biases: torch.Tensor,
        early_steps: int = 0,
        t_edges: tuple[float, ...] = (),
    ) -> None:
        super().__init__(linear, variants, early_steps=early_steps, t_edges=t_edges)
        self.bias = None
        self.register_buffer("shifts", shifts.detach().clone())
        # a (frozen) parameter, not a buffer: models probe ``module.parameters()`` for dtype
        self.biases = nn.Parameter(biases.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.variant_index()
        v = self.variants[i]
        shape = x.shape
        x = (x.reshape(-1, shape[-1]) - self.shifts[i].to(x.dtype)) / v.smooth.to(x.dtype)
        return v.matmul(x, self.biases[i]).reshape(*shape[:-1], self.out_features)

    def memory_bytes(self) -> int:
        """Variants plus the per-variant shifts and biases."""
        extra = self.shifts.numel() * self.shifts.element_size()
        return super().memory_bytes() + extra + self.biases.numel() * self.biases.element_size()
