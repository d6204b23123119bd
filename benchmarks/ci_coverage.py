"""Coverage of vqbench's confidence intervals, by simulation (metrics/README.md's table).

Three questions, each answered on data whose truth is known:

1. Paired per-prompt deltas (``vqbench.stats.mean_ci``): how often does the 95% interval of
   the mean delta hold the true mean, at n prompts, for the ``t``, ``bca`` and ``percentile``
   methods, on normal, skewed (centred exponential) and heavy-tailed (Student t, 3 dof) deltas?
2. FVD's bias-shifted set bootstrap (``vqbench.stats.bootstrap_statistic_ci`` as
   ``metrics.fvd`` calls it) on Gaussian features of dimension ``--dim``: how often does it
   hold FVD at the same N (the Monte Carlo mean of the estimator at N, what ``ci_covers``
   promises) and the bias-free distance (closed form), and how wide is it against the ideal
   width (the 2.5-97.5 % spread of the estimator at N)?
3. Settings pooled over calibration seeds (``vqbench.stats.crossed_bootstrap_ci``): on
   ``x[s, p] = a_s + b_p + e`` (seed effect, prompt effect, noise; population mean 0), how
   often does the crossed bootstrap's interval hold 0, against the t-interval of the
   per-prompt means over seeds, which sees the prompts only?

::

    .venv/bin/python benchmarks/ci_coverage.py            # the README's table
    .venv/bin/python benchmarks/ci_coverage.py --quick    # a smoke run
    .venv/bin/python benchmarks/ci_coverage.py --only crossed
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metrics.frechet import frechet_distance, frechet_distance_from_stats
from vqbench.stats import PAIRED_METHODS, bootstrap_statistic_ci, crossed_bootstrap_ci, mean_ci

DELTAS = {
    "normal": lambda rng, n: rng.normal(0.0, 1.0, n),
    "skewed": lambda rng, n: rng.exponential(1.0, n) - 1.0,
    "heavy": lambda rng, n: rng.standard_t(3, n),
}


def paired_coverage(ns: list[int], reps: int, seed: int) -> list[tuple[str, int, dict[str, float]]]:
    """``(distribution, n, {method: coverage})``; every true mean is 0."""
    rows = []
    for dist, draw in DELTAS.items():
        for n in ns:
            rng = np.random.default_rng(seed)
            hits = dict.fromkeys(PAIRED_METHODS, 0)
            for r in range(reps):
                x = draw(rng, n)
                for m in PAIRED_METHODS:
                    lo, hi = mean_ci(x, m, seed=r)
                    hits[m] += lo <= 0.0 <= hi
            rows.append((dist, n, {m: h / reps for m, h in hits.items()}))
    return rows


def fvd_coverage(
    ns: list[int], dim: int, reps: int, resamples: int, mc: int, seed: int
) -> list[tuple[int, float, float, float, float, float]]:
    """``(N, bias-free FD, FD at N, coverage of FD at N, coverage of bias-free, width ratio)``."""
    rng = np.random.default_rng(seed)
    shift = np.full(dim, 0.5)
    scale = np.linspace(0.8, 1.2, dim)
    true_fd = frechet_distance_from_stats(np.zeros(dim), np.eye(dim), shift, np.diag(scale**2))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.normal(size=(n, dim)), shift + scale * rng.normal(size=(n, dim))

    rows = []
    for n in ns:
        at_n = np.array([frechet_distance(*draw(n)) for _ in range(mc)])
        mean_n = float(at_n.mean())
        ideal = float(np.diff(np.quantile(at_n, [0.025, 0.975]))[0])
        hit_n = hit_true = 0
        widths = []
        for r in range(reps):
            a, b = draw(n)
            est = frechet_distance(a, b)
            ci = bootstrap_statistic_ci(
                (n, n),
                lambda i, j, a=a, b=b: frechet_distance(a[i], b[j]),
                n_resamples=resamples,
                seed=r,
                estimate=est,
            )
            lo, hi = max(ci[0], 0.0), max(ci[1], 0.0)
            hit_n += lo <= mean_n <= hi
            hit_true += lo <= true_fd <= hi
            widths.append(hi - lo)
        rows.append((n, true_fd, mean_n, hit_n / reps, hit_true / reps, np.mean(widths) / ideal))
    return rows


def crossed_coverage(
    seeds: list[int], prompts: int, sd_seed: list[float], reps: int, seed: int
) -> list[tuple[int, float, float, float]]:
    """``(seeds, seed sd, crossed coverage, prompt-only t coverage)``; prompt sd 1, noise
    sd 0.5, population mean 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        for sd in sd_seed:
            hits = [0, 0]
            for r in range(reps):
                x = rng.normal(0, sd, (s, 1)) + rng.normal(0, 1, (1, prompts))
                x = x + rng.normal(0, 0.5, (s, prompts))
                lo, hi = crossed_bootstrap_ci(x, n_resamples=500, seed=r)
                t_lo, t_hi = mean_ci(x.mean(0))
                hits[0] += lo <= 0 <= hi
                hits[1] += t_lo <= 0 <= t_hi
            rows.append((s, sd, hits[0] / reps, hits[1] / reps))
    return rows


def main() -> None:
    """Print both tables as markdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (a smoke run)")
    ap.add_argument("--reps", type=int, default=1000, help="intervals per paired cell")
    ap.add_argument("--fvd-reps", type=int, default=200, help="intervals per FVD row")
    ap.add_argument("--dim", type=int, default=8, help="feature dimension of the FVD runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["crossed"], help="only the crossed-bootstrap table")
    args = ap.parse_args()
    reps, fvd_reps, mc = (50, 20, 200) if args.quick else (args.reps, args.fvd_reps, 4000)
    start = time.perf_counter()
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; seed {args.seed}\n")
    creps = 50 if args.quick else 400
    print(f"Seeds x prompts (12 prompts): coverage of the mean by 95% intervals ({creps} each)\n")
    print("| seeds | seed sd / prompt sd | crossed bootstrap | t over prompts only |")
    print("|---|---|---|---|")
    for s, sd, c, t in crossed_coverage([3, 5], 12, [0.0, 0.5, 1.0], creps, args.seed):
        print(f"| {s} | {sd:.1f} | {c:.3f} | {t:.3f} |")
    if args.only == "crossed":
        print(f"\n({time.perf_counter() - start:.0f} s)")
        return
    print(f"Paired deltas: coverage of the true mean by 95% intervals ({reps} per cell)\n")
    print("| deltas | n | " + " | ".join(PAIRED_METHODS) + " |")
    print("|---|---|" + "---|" * len(PAIRED_METHODS))
    for dist, n, cov in paired_coverage([3, 4, 6, 8, 10, 16, 32], reps, args.seed):
        print(f"| {dist} | {n} | " + " | ".join(f"{cov[m]:.3f}" for m in PAIRED_METHODS) + " |")
    print(
        f"\nFVD set bootstrap (bias-shifted, 100 resamples), Gaussian features, d = {args.dim} "
        f"({fvd_reps} intervals per row, FD at N from {mc} draws)\n"
    )
    print("| N | bias-free FD | FD at N | covers FD at N | covers bias-free FD | width / ideal |")
    print("|---|---|---|---|---|---|")
    for n, true_fd, mean_n, c_n, c_true, w in fvd_coverage(
        [8, 16, 32, 64], args.dim, fvd_reps, 100, mc, args.seed
    ):
        print(f"| {n} | {true_fd:.3f} | {mean_n:.3f} | {c_n:.3f} | {c_true:.3f} | {w:.2f} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
