"""Range observers for static activation quantization and smoothing statistics.

Observers reduce every dim of ``x [..., C]`` but the last (per channel) or all dims (per
tensor). :class:`TimeRangeObserver` keeps one observer per timestep bucket, so statistics
are timestep-aware (ViDiT-Q's time ranges, methods.md §5.2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class MinMaxObserver:
    """Running min and max over every update."""

    def __init__(self, per_channel: bool = False) -> None:
        self.per_channel = per_channel
        self.lo: torch.Tensor | None = None
        self.hi: torch.Tensor | None = None
        self.count = 0

    def _reduce(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().float()
        if self.per_channel:
            x = x.reshape(-1, x.shape[-1])
            return x.amin(0), x.amax(0)
        x = x.reshape(1, -1)
        return x.amin(1), x.amax(1)

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch into the running statistics."""
        lo, hi = self._reduce(x)
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
        self.count += 1

    @property
    def absmax(self) -> torch.Tensor:
        """``max(|lo|, |hi|)``; raises if nothing was observed."""
        if self.lo is None or self.hi is None:
            raise RuntimeError("observer has seen no data")
        return torch.maximum(self.lo.abs(), self.hi.abs())


class EMAObserver(MinMaxObserver):
    """Exponential moving average of per-batch min and max (momentum as in ViDiT-Q: 0.95)."""

    def __init__(self, per_channel: bool = False, momentum: float = 0.95) -> None:
        super().__init__(per_channel)
        self.momentum = momentum

    def update(self, x: torch.Tensor) -> None:
        lo, hi = self._reduce(x)
        if self.lo is None:
            self.lo, self.hi = lo, hi
        else:
            m = self.momentum
            self.lo = m * self.lo + (1 - m) * lo
            self.hi = m * self.hi + (1 - m) * hi
        self.count += 1


class TimeRangeObserver:
    """One observer per timestep bucket; ``edges`` are the inner bucket boundaries (ascending)."""

    def __init__(self, edges: tuple[float, ...], factory: Callable[[], MinMaxObserver]) -> None:
        self.edges = tuple(float(e) for e in edges)
        self.observers = [factory() for _ in range(len(self.edges) + 1)]

    def bucket(self, t: float) -> int:
        """Index of the bucket holding timestep ``t``."""
        return bucket_of(t, self.edges)

    def update(self, x: torch.Tensor, t: float) -> None:
        self.observers[self.bucket(t)].update(x)


def bucket_of(t: float, edges: tuple[float, ...]) -> int:
    """Number of ``edges`` that are <= ``t`` (bucket index for ascending edges)."""
    return sum(1 for e in edges if t >= e)


def time_range_edges(timesteps: torch.Tensor, n_ranges: int) -> tuple[float, ...]:
    """Inner edges splitting ``[min t, max t]`` into ``n_ranges`` equal-width ranges."""
    if n_ranges <= 1 or timesteps.numel() == 0:
        return ()
    lo, hi = float(timesteps.min()), float(timesteps.max())
    width = (hi - lo) / n_ranges
    return tuple(lo + width * i for i in range(1, n_ranges))
