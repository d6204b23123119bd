"""Statistics shared by metrics and reports: bootstrap CIs and paired per-prompt deltas, and
the crossed (seeds x prompts) bootstrap of settings run with several calibration seeds.

A leaf module (numpy and scipy only): ``metrics`` and ``vqbench.report`` both import it.
Every bootstrap uses a fixed seed (``DEFAULT_SEED``), so the same per-sample values always give
the same interval. ``benchmarks/ci_coverage.py`` measures the coverage of these intervals
(table in metrics/README.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


PAIRED_METHODS = ("t", "bca", "percentile")
DEFAULT_PAIRED_METHOD = "t"


@dataclass
class PairedDelta:
    """Per-key deltas ``quant - fp`` with their mean and 95% CI (``method`` names how)."""

    mean: float
    n: int
    ci: tuple[float, float] | None
    deltas: dict[str, float] = field(default_factory=dict)
    method: str = DEFAULT_PAIRED_METHOD
    seeds: int = 1  # calibration seeds behind the deltas (more than 1: crossed bootstrap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "n": self.n,
            "ci": list(self.ci) if self.ci is not None else None,
            "method": self.method,
            "seeds": self.seeds,
            "deltas": dict(self.deltas),
        }


def mean_ci(
    values: Sequence[float] | np.ndarray,
    method: str = DEFAULT_PAIRED_METHOD,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float] | None:
    """Interval of the mean of ``values`` by ``method``.

    - ``t``: Student-t interval ``mean -/+ t_{n-1} s / sqrt(n)`` (exact for normal deltas;
      the best coverage at n <= 10 in ``benchmarks/ci_coverage.py``);
    - ``bca``: bias-corrected and accelerated bootstrap (``scipy.stats.bootstrap``; the
      percentile interval where BCa is undefined);
    - ``percentile``: :func:`bootstrap_ci`.

    ``None`` for fewer than 2 values, ``(v, v)`` when all are equal.
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"method must be one of {PAIRED_METHODS}, got {method!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        return None
    if not np.all(np.isfinite(x)):
        raise ValueError("mean_ci: values contain NaN or inf")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    if method == "percentile":
        return bootstrap_ci(x, n_resamples, seed, level)
    from scipy import stats as st

    if method == "t":
        half = st.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        return float(x.mean() - half), float(x.mean() + half)
    res = st.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="BCa",
        random_state=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa undefined (e.g. n = 2)
        return bootstrap_ci(x, n_resamples, seed, level)
    return lo, hi


def paired_deltas(
    quant: Mapping[str, float],
    fp: Mapping[str, float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    method: str = DEFAULT_PAIRED_METHOD,
) -> PairedDelta:
    """Paired per-prompt deltas of a quantized setting against FP, with a :func:`mean_ci`.

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
        ci=mean_ci(arr, method, n_resamples=n_resamples, seed=seed),
        deltas=deltas,
        method=method,
    )


CROSSED_METHOD = "crossed-bootstrap"


def crossed_bootstrap_ci(
    a: Sequence[Sequence[float]] | np.ndarray,
    b: Sequence[Sequence[float]] | np.ndarray | None = None,
    paired_seeds: bool = False,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = CI_LEVEL,
) -> tuple[float, float] | None:
    """Percentile interval of ``mean(a)`` (or of ``mean(a) - mean(b)``) for ``seeds x prompts``
    matrices, resampling the seeds and the prompts independently (a crossed, "pigeonhole"
    bootstrap: the interval covers the calibration-seed and the prompt variation).

    The prompts (columns) are shared by ``a`` and ``b`` and resampled jointly; the seeds
    (rows) are resampled jointly when ``paired_seeds`` (``a`` and ``b`` ran the same seeds),
    else each matrix's own. A one-row ``b`` (a setting without seeds) is the same in every
    resample. ``None`` when there is nothing to resample; ``ValueError`` for NaN or inf,
    or for matrices whose prompts (or paired seeds) differ.
    """
    x = np.atleast_2d(np.asarray(a, dtype=np.float64))
    y = None if b is None else np.atleast_2d(np.asarray(b, dtype=np.float64))
    if not np.all(np.isfinite(x)) or (y is not None and not np.all(np.isfinite(y))):
        raise ValueError("crossed_bootstrap_ci: values contain NaN or inf")
    if y is not None and y.shape[1] != x.shape[1]:
        raise ValueError(f"crossed_bootstrap_ci: {x.shape[1]} prompts against {y.shape[1]}")
    if paired_seeds and (y is None or y.shape[0] != x.shape[0]):
        raise ValueError("crossed_bootstrap_ci: paired seeds need as many seeds on both sides")
    if y is not None and (paired_seeds or len(y) == 1):  # one matrix of per-cell deltas
        x, y = x - y, None
    s, p = x.shape
    if s * p < 2:
        return None
    rng = np.random.default_rng(seed)

    def counts(n: int) -> np.ndarray:  # [R, n] how often each index is drawn
        idx = rng.integers(0, n, size=(n_resamples, n))
        return np.stack([np.bincount(i, minlength=n) for i in idx]).astype(np.float64)

    cp, cs = counts(p), counts(s)
    stat = np.einsum("rs,sp,rp->r", cs, x, cp) / (s * p)
    if y is not None:
        stat = stat - np.einsum("rs,sp,rp->r", counts(len(y)), y, cp) / (len(y) * p)
    if np.all(stat == stat[0]):
        return float(stat[0]), float(stat[0])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stat, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
