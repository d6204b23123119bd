"""QVD calibration bookkeeping: prompt folds, per-fold channel ranges, row samples."""

from __future__ import annotations

import random

import torch

from quantizers.core.observers import MinMaxObserver
from vqbench.types import CalibrationSet


def spread(n: int, k: int) -> list[int]:
    """At most ``k`` evenly spread indices of ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def prompt_folds(calib: CalibrationSet) -> list[CalibrationSet]:
    """Two halves of the calibration set split by prompt (alternating), or the whole set."""
    prompts = calib.prompt_index.unique().tolist()
    if len(prompts) < 2:
        return [calib]
    odd = torch.isin(calib.prompt_index, torch.tensor(prompts[1::2]))
    return [calib.subset(torch.nonzero(~odd)[:, 0]), calib.subset(torch.nonzero(odd)[:, 0])]


Ranges = list[tuple[torch.Tensor | None, torch.Tensor | None]]


def merge_ranges(obs: list[list[MinMaxObserver]]) -> list[Ranges]:
    """Per-channel ranges per time range: one list per fold, then the union of the folds.

    A time range a fold never saw borrows that fold's nearest seen range; a fold that saw
    nothing at all borrows the union.
    """

    def fill(pairs: Ranges) -> Ranges:
        seen = [p for p in pairs if p[0] is not None]
        if not seen:
            return pairs
        return [p if p[0] is not None else seen[min(r, len(seen) - 1)] for r, p in enumerate(pairs)]

    per_fold = [[(o.lo, o.hi) for o in fold] for fold in obs]
    union = []
    for r in range(len(per_fold[0])):
        seen = [f[r] for f in per_fold if f[r][0] is not None]
        lo = torch.stack([p[0] for p in seen]).amin(0) if seen else None
        hi = torch.stack([p[1] for p in seen]).amax(0) if seen else None
        union.append((lo, hi))
    union = fill(union)
    folds = [fill(f) for f in per_fold]
    folds = [f if f[0][0] is not None else union for f in folds]
    return [*folds, union]


def subsample_rows(
    rows: list[tuple[torch.Tensor, tuple[int, int]]], k: int, rng: random.Random
) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """At most ``k`` rows in total drawn uniformly from the stored chunks, grouped by key."""
    flat = [(x[i : i + 1], key) for x, key in rows for i in range(x.shape[0])]
    picked = rng.sample(flat, min(k, len(flat)))
    by_key: dict[tuple[int, int], list[torch.Tensor]] = {}
    for x, key in picked:
        by_key.setdefault(key, []).append(x)
    return [(torch.cat(xs), key) for key, xs in sorted(by_key.items())]
