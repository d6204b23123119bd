"""HTDQ (reconstructed): quantize timestep features so timesteps stay discriminable.

QVD's abstract names a Temporal Discriminability Score (TDScore) and a quantizer for the
timestep ("temporal") features chosen to keep it high; the equations are not public, so
this follows ``research/methods.md`` §4.3:

- :func:`tdscore`: mean over timestep pairs of ``min(1, ||Q_t - Q_t'|| / ||F_t - F_t'||)``,
  ``F`` the FP features and ``Q`` the quantized ones. It is 0 when every timestep maps to
  the same code and 1 when no pair got closer than in FP (noise cannot score above 1);
- :func:`htdq_search`: a grid of quantile clip ranges ``[lo, hi]`` for the static
  per-tensor activation quantizer of one timestep-embedding linear, scored on the layer's
  output (the feature that reaches every frame); the best TDScore (optionally minus a
  relative-MSE penalty) wins, ties (within ``tol``) go to the lowest output MSE;
- :class:`FiniteSetLinear`: the "finite set" upper bound: FP outputs precomputed per
  sampling step (keyed by its timestep value) and looked up at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.context import current_step
from quantizers.core.quantizer import fake_quant, qparams_from_range

MAX_QUANTILE_ELEMS = 1 << 22


def tdscore(quant: torch.Tensor, fp: torch.Tensor, eps: float = 1e-12) -> float:
    """Discriminability of quantized features ``quant [T, D]`` relative to FP ``fp [T, D]``.

    Pairs that are identical in FP carry no information and are ignored; with no pair left
    the score is 1 (nothing to discriminate).
    """
    q, f = quant.detach().double(), fp.detach().double()
    i, j = torch.triu_indices(f.shape[0], f.shape[0], 1)
    d_fp = (f[i] - f[j]).norm(dim=-1)
    keep = d_fp > eps
    if not bool(keep.any()):
        return 1.0
    d_q = (q[i[keep]] - q[j[keep]]).norm(dim=-1)
    return float((d_q / d_fp[keep]).clamp(max=1.0).mean())


@dataclass(frozen=True)
class HTDQResult:
    """Selected range and its scores, plus the min-max range's scores for comparison."""

    lo: float
    hi: float
    score: float
    mse: float
    score_minmax: float
    mse_minmax: float


def _candidates(x: torch.Tensor, grid: int, symmetric: bool) -> list[tuple[float, float]]:
    flat = x.detach().float().flatten()
    if flat.numel() > MAX_QUANTILE_ELEMS:
        idx = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))
        flat = flat[idx[:MAX_QUANTILE_ELEMS]]
    # clip fractions: 0 (min-max) then log-spaced up to 30% of the values on each side
    tail = torch.logspace(-4, torch.log10(torch.tensor(0.3)).item(), max(grid - 1, 0))
    p = torch.cat([torch.zeros(1), tail]).double()
    if symmetric:
        amax = torch.quantile(flat.abs().double(), 1 - p).tolist()
        return [(-a, a) for a in amax]
    los = torch.quantile(flat.double(), p).tolist()
    his = torch.quantile(flat.double(), 1 - p).tolist()
    return [(lo, hi) for lo in los for hi in his]


def htdq_search(
    x: torch.Tensor,
    w_fp: torch.Tensor,
    w_q: torch.Tensor,
    bias: torch.Tensor | None,
    bits: int,
    symmetric: bool = False,
    grid: int = 8,
    tol: float = 0.01,
    mse_weight: float = 0.0,
    bias_q: torch.Tensor | None = None,
) -> HTDQResult:
    """Clip range of the input quantizer of a timestep-embedding linear.

    ``x [T, K]`` holds one input row per distinct calibration timestep, ``w_fp``/``w_q`` the
    FP and (already quantized, dequantized) weight, ``bias_q`` the quantized layer's bias
    (default ``bias``; SCRI corrects it for the quantized weight). Candidate ranges are
    quantiles of ``x`` (``grid`` per side; the first is min-max). Scores compare
    ``Q(x) w_q^T + b_q`` with the FP output ``x w_fp^T + b``: the objective is
    ``TDScore - mse_weight * MSE / mean(ref^2)``; candidates within ``tol`` of the best
    objective are tie-broken by the lowest MSE.
    """
    x = x.detach().float()
    b = None if bias is None else bias.detach().float()
    ref = F.linear(x, w_fp.detach().float(), b)
    w_q = w_q.detach().float()
    b_q = b if bias_q is None else bias_q.detach().float()
    power = float(ref.pow(2).mean().clamp_min(1e-12))
    scored = []
    for lo, hi in _candidates(x, grid, symmetric):
        s, z = qparams_from_range(torch.tensor(lo), torch.tensor(hi), bits, symmetric)
        out = F.linear(fake_quant(x, s, z, bits, symmetric), w_q, b_q)
        score, mse = tdscore(out, ref), float((out - ref).pow(2).mean())
        scored.append((score - mse_weight * mse / power, score, mse, lo, hi))
    best = max(c[0] for c in scored)
    _, score, mse, lo, hi = min((c for c in scored if c[0] >= best - tol), key=lambda c: c[2])
    return HTDQResult(lo, hi, score, mse, scored[0][1], scored[0][2])


class FiniteSetLinear(nn.Linear):
    """An FP linear whose outputs at the calibrated timesteps are precomputed.

    ``timesteps [S]`` and ``inputs [S, K]`` are one input row per sampling-step timestep.
    Inside :func:`~quantizers.core.context.sampling_step` at a cached timestep, with input
    rows that all match the cached row (``allclose``, rtol 1e-5), the cached output is
    returned (``hits`` counts these); otherwise the layer computes in FP.
    """

    def __init__(self, linear: nn.Linear, timesteps: torch.Tensor, inputs: torch.Tensor) -> None:
        w = linear.weight
        super().__init__(
            linear.in_features, linear.out_features, linear.bias is not None, w.device, w.dtype
        )
        self.weight = linear.weight
        self.bias = linear.bias
        with torch.no_grad():
            outputs = F.linear(inputs.to(w), w, linear.bias)
        self.register_buffer("table_t", timesteps.detach().float().clone())
        self.register_buffer("table_x", inputs.detach().to(w.dtype).clone())
        self.register_buffer("table_y", outputs.detach().clone())
        self.hits = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = current_step().timestep
        if t is not None and self.table_t.numel():
            dist = (self.table_t - t).abs()
            k = int(dist.argmin())
            if float(dist[k]) <= 1e-3 * max(1.0, abs(t)):
                row = self.table_x[k].to(x.dtype)
                if torch.allclose(x, row.expand_as(x), rtol=1e-5, atol=1e-6):
                    self.hits += 1
                    return self.table_y[k].to(x.dtype).expand(*x.shape[:-1], self.out_features)
        return super().forward(x)
