"""A base class for metrics that score each video on its own and average the scores."""

from __future__ import annotations

from typing import Any

from metrics.stats import result_from_samples, sample_key
from vqbench.types import MetricResult, SampleContext, Video


def check_batch(name: str, videos: list[Video], ctx: list[SampleContext]) -> None:
    """Raise ``ValueError`` unless ``videos`` and ``ctx`` pair up one to one."""
    if len(videos) != len(ctx):
        raise ValueError(f"{name}: {len(videos)} videos but {len(ctx)} contexts")


def require_fp(name: str, c: SampleContext) -> Video:
    """``c.fp_video`` or a ``ValueError`` naming the sample."""
    if c.fp_video is None:
        raise ValueError(
            f"{name}: sample {sample_key(c.prompt_id, c.seed)} has no fp_video "
            "(this metric compares against the FP model's video of the same prompt and seed)"
        )
    return c.fp_video


class PerVideoMetric:
    """Accumulates one score per video; ``compute`` averages them with a bootstrap CI.

    Subclasses set the class attributes of the metric contract and implement :meth:`score`
    and :meth:`params`. ``keys`` holds ``"<prompt_id>/<seed>"`` of each score, in order.
    """

    name: str = ""
    version: str = "1"
    higher_is_better: bool = True
    requires: frozenset[str] = frozenset()
    scale: float = 1.0

    def __init__(self) -> None:
        self.values: list[float] = []
        self.keys: list[str] = []

    def score(self, video: Video, ctx: SampleContext) -> float:
        """The metric of one video."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Protocol knobs recorded in ``MetricResult.params``."""
        return {}

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        for v, c in zip(videos, ctx, strict=True):
            self.values.append(float(self.score(v, c)))
            self.keys.append(sample_key(c.prompt_id, c.seed))

    def compute(self) -> MetricResult:
        return result_from_samples(
            self.name,
            self.values,
            version=self.version,
            higher_is_better=self.higher_is_better,
            params=self.params(),
            scale=self.scale,
        )

    def reset(self) -> None:
        self.values.clear()
        self.keys.clear()
