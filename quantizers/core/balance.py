"""Channel-balancing helpers: salience, rank correlation, per-timestep channel statistics.

Used by salience-balancing methods (PTQ4DiT's CSB/SSC, ViDiT-Q's channel balancing):

- :func:`channel_salience`: ``s(W_j) = max_i |W_ij|`` per input channel;
- :func:`balance_vector`: CSB's ``b_j = sqrt(s(X_j) / s(W_j))`` (the layer multiplies
  ``(X / b)(W diag(b))^T``, so both sides end with salience ``sqrt(s(X_j) s(W_j))``);
- :func:`rankdata` / :func:`spearman_rho`: Spearman's rank correlation (ties get average
  ranks, as ``scipy.stats.spearmanr``);
- :func:`salience_weights`: SSC's ``eta_t = softmax_t(-rho_t)``;
- :func:`timestep_edges` / :func:`collect_timestep_stats`: per-channel min/max of every
  linear input, one bucket per distinct calibration timestep;
- :class:`ButterflyHadamard`: the rotation of
  :class:`~quantizers.core.transforms.BlockHadamard` stored as 2x2 Hadamard factors (the
  butterflies of the fast Walsh-Hadamard transform) plus the odd orthogonal factor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from quantizers.core.calib import collect_act_stats
from quantizers.core.observers import MinMaxObserver
from quantizers.core.transforms import BlockHadamard, hadamard, random_orthogonal
from vqbench.types import CalibrationSet, QuantTarget

EPS = 1e-5


def channel_salience(weight: torch.Tensor) -> torch.Tensor:
    """``max_i |W_ij|`` of ``W [out, in]``: one value per input channel (float32)."""
    return weight.detach().abs().amax(0).float()


def balance_vector(
    act_salience: torch.Tensor, w_salience: torch.Tensor, eps: float = EPS
) -> torch.Tensor:
    """CSB balancing vector ``b_j = sqrt(s(X_j) / s(W_j))`` (both clamped to ``eps``)."""
    a = act_salience.float().clamp_min(eps)
    w = w_salience.float().clamp_min(eps)
    return (a / w).sqrt()


def rankdata(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor (float64); tied values share their average rank."""
    x = x.detach().reshape(-1).double()
    n = x.numel()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    ranks = torch.empty(n, dtype=torch.float64)
    # runs of equal values: [start, end) in sorted order share rank (start + end + 1) / 2
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_x[1:] != sorted_x[:-1]
    starts = torch.nonzero(new_run).reshape(-1)
    ends = torch.cat([starts[1:], torch.tensor([n])])
    run_id = torch.cumsum(new_run.long(), 0) - 1
    avg = (starts + ends + 1).double() / 2
    ranks[order] = avg[run_id]
    return ranks


def spearman_rho(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two equal-length vectors (0.0 if either is constant)."""
    if a.numel() != b.numel():
        raise ValueError(f"spearman_rho: lengths differ ({a.numel()} vs {b.numel()})")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return 0.0 if denom == 0 else float((ra @ rb).item() / denom)


def salience_weights(rhos: torch.Tensor | list[float]) -> torch.Tensor:
    """SSC's timestep weights ``eta_t = exp(-rho_t) / sum_tau exp(-rho_tau)`` (float64)."""
    return torch.softmax(-torch.as_tensor(rhos, dtype=torch.float64), 0)


def timestep_edges(timesteps: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Distinct timesteps (ascending) and the inner bucket edges (midpoints) between them,
    so that :func:`~quantizers.core.observers.bucket_of` maps the i-th distinct value to i."""
    values = tuple(float(v) for v in torch.unique(timesteps.detach().float().cpu()).tolist())
    edges = tuple((lo + hi) / 2 for lo, hi in zip(values[:-1], values[1:], strict=True))
    return values, edges


@dataclass
class TimestepStats:
    """Per-channel input statistics of one linear, one row per distinct timestep.

    ``lo``/``hi``: ``[T, C]`` running min/max (rows of unseen timesteps are NaN);
    ``timesteps``: the ``T`` distinct values, ascending.
    """

    timesteps: tuple[float, ...]
    lo: torch.Tensor
    hi: torch.Tensor

    @property
    def absmax(self) -> torch.Tensor:
        """``[T, C]`` per-timestep channel salience ``max |X_j|``."""
        return torch.maximum(self.lo.abs(), self.hi.abs())

    @property
    def seen(self) -> torch.Tensor:
        """``[T]`` bool: which timesteps this layer saw."""
        return ~torch.isnan(self.lo[:, 0])


def collect_timestep_stats(
    target: QuantTarget, calib: CalibrationSet, names: list[str], batch_size: int = 4
) -> dict[str, TimestepStats]:
    """Run the calibration set once; per-channel min/max of each linear input per timestep."""
    values, edges = timestep_edges(calib.timesteps)
    obs = collect_act_stats(
        target, calib, names, lambda: MinMaxObserver(per_channel=True), edges, batch_size
    )
    out = {}
    for n in names:
        rows_lo, rows_hi = [], []
        width = next((o.lo.numel() for o in obs[n].observers if o.lo is not None), 0)
        for o in obs[n].observers:
            if o.lo is None:
                nan = torch.full((width,), float("nan"))
                rows_lo.append(nan)
                rows_hi.append(nan)
            else:
                rows_lo.append(o.lo)
                rows_hi.append(o.hi)
        out[n] = TimestepStats(values, torch.stack(rows_lo), torch.stack(rows_hi))
    return out


class ButterflyHadamard(BlockHadamard):
    """Same matrix as ``BlockHadamard(k, seed)``, stored as ``Q_p (x) H_2 (x) ... (x) H_2``.

    Sylvester's ``H_(2^m)`` is the Kronecker product of ``m`` copies of ``H_2``, so this keeps
    4 numbers per power of 2 instead of ``a^2 + b^2`` (e.g. 20 instead of 80 for width 32).
    :meth:`forward` still runs ``BlockHadamard``'s two Hadamard passes (``H_a``, ``H_b``,
    rebuilt from the stored factors once per device and dtype) rather than one pass per
    ``H_2``: ``m`` passes made ViDiT-Q's generation several times slower than RTN's.
    """

    def __init__(self, k: int, seed: int = 0) -> None:
        nn.Module.__init__(self)
        self.k = k
        m = (k & -k).bit_length() - 1  # largest power of 2 dividing k
        p = k >> m
        self.m = m
        factors = ([random_orthogonal(p, seed)] if p > 1 else []) + [hadamard(2)] * m
        for i, f in enumerate(factors):
            self.register_buffer(f"f{i}", f.clone())
        self._passes: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}

    def pass_factors(self) -> list[torch.Tensor]:
        """``Q_p``, ``H_a`` and ``H_b`` (``a * b = 2^m``), as in :func:`kron_factors`."""
        fs = self.factors()
        key = (fs[-1].device, fs[-1].dtype)
        if key not in self._passes:
            q, h2 = fs[: len(fs) - self.m], fs[len(fs) - self.m :]
            a = self.m // 2
            groups = [g for g in (h2[:a], h2[a:]) if g]
            self._passes[key] = q + [functools.reduce(torch.kron, g) for g in groups]
        return self._passes[key]


__all__ = [
    "ButterflyHadamard",
    "TimestepStats",
    "balance_vector",
    "channel_salience",
    "collect_timestep_stats",
    "rankdata",
    "salience_weights",
    "spearman_rho",
    "timestep_edges",
]
