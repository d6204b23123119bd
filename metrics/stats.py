"""Statistics shared by all metrics: bootstrap CIs, paired per-prompt deltas, result helpers.

Every bootstrap uses a fixed seed (``DEFAULT_SEED``), so the same per-sample values always give
the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vqbench.types import MetricResult

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CI_LEVEL = 0.95


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values``.

    Returns ``None`` for fewer than 2 values (no interval can be estimated) and a degenerate
    interval ``(v, v)`` when all values are equal. Non-finite values raise ``ValueError``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        return None
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci: values contain NaN or inf")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_statistic_ci(
    sizes: Sequence[int],
    statistic: Callable[..., float],
    n_resamples: int = 100,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
    estimate: float | None = None,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a set-level statistic (e.g. FVD).

    Each resample draws, for every set ``i``, ``sizes[i]`` indices with replacement and calls
    ``statistic(idx_0, idx_1, ...)``. Resamples whose statistic raises ``ValueError`` or is
    non-finite are skipped; returns ``None`` if fewer than 10 remain or a set has < 2 items.

    With ``estimate`` (the statistic on the full sets) the interval is shifted by the
    bootstrap bias ``mean(resamples) - estimate``. A Fréchet distance is inflated on
    resamples (duplicated items shrink the covariances), so on a dozen videos the plain
    percentile interval can lie entirely above the estimate.
    """
    if n_resamples <= 0 or min(sizes) < 2:
        return None
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_resamples):
        idx = [rng.integers(0, n, size=n) for n in sizes]
        try:
            s = float(statistic(*idx))
        except ValueError:
            continue
        if math.isfinite(s):
            stats.append(s)
    if len(stats) < 10:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(stats), [alpha, 1.0 - alpha])
    bias = 0.0 if estimate is None else float(np.mean(stats)) - estimate
    return float(lo - bias), float(hi - bias)


@dataclass
class PairedDelta:
    """Per-key deltas ``quant - fp`` with their mean and bootstrap CI."""

    mean: float
    n: int
    ci: tuple[float, float] | None
    deltas: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "n": self.n,
            "ci": list(self.ci) if self.ci is not None else None,
            "deltas": dict(self.deltas),
        }


def paired_deltas(
    quant: Mapping[str, float],
    fp: Mapping[str, float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedDelta:
    """Paired per-prompt deltas of a quantized setting against FP.

    ``quant`` and ``fp`` map a sample key (e.g. ``"<prompt_id>/<seed>"``) to its per-sample
    value; only keys present in both are paired. Raises ``ValueError`` if none are shared.
    """
    keys = sorted(set(quant) & set(fp))
    if not keys:
        raise ValueError("paired_deltas: no sample key is shared by the two settings")
    deltas = {k: float(quant[k]) - float(fp[k]) for k in keys}
    arr = np.fromiter(deltas.values(), dtype=np.float64)
    return PairedDelta(
        mean=float(arr.mean()),
        n=len(keys),
        ci=bootstrap_ci(arr, n_resamples=n_resamples, seed=seed),
        deltas=deltas,
    )


def sample_key(prompt_id: str, seed: int) -> str:
    """The key that pairs a quantized sample with its FP sample."""
    return f"{prompt_id}/{seed}"


def result_from_samples(
    name: str,
    values: Sequence[float],
    *,
    version: str,
    higher_is_better: bool,
    params: Mapping[str, Any] | None = None,
    value: float | None = None,
    scale: float = 1.0,
) -> MetricResult:
    """A :class:`MetricResult` whose value is the mean of ``values`` (times ``scale``).

    ``value`` overrides the aggregate (e.g. a frame-weighted mean) while the CI is still the
    bootstrap CI of the per-sample mean. Raises ``ValueError`` on an empty list.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"{name}: no samples; call update() before compute()")
    ci = bootstrap_ci(x)
    agg = float(x.mean()) if value is None else float(value)
    p = dict(params or {})
    p.setdefault("ci_method", f"bootstrap_percentile_{DEFAULT_RESAMPLES}_seed{DEFAULT_SEED}")
    return MetricResult(
        name=name,
        value=agg * scale,
        n=int(x.size),
        version=version,
        higher_is_better=higher_is_better,
        ci=None if ci is None else (ci[0] * scale, ci[1] * scale),
        per_sample=[float(v) * scale for v in x],
        params=p,
    )
