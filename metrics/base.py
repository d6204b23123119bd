"""Base classes of the metrics: :class:`MetricBase` (the preflight hook) and
:class:`PerVideoMetric` (one score per video, averaged with a bootstrap CI)."""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vqbench.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_ci
from vqbench.types import MetricResult, SampleContext, Video


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


def constructor_params(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword parameters ``cls(...)`` accepts, following ``**kw`` up the MRO."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        sig = inspect.signature(init)
        for name, p in sig.parameters.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                out.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return out


class MetricBase:
    """What every registered metric shares: the contract's class attributes and
    :meth:`preflight`, the validate stage's check that needs no weights."""

    name: str = ""
    version: str = "1"
    higher_is_better: bool = True
    requires: frozenset[str] = frozenset()
    min_frames: int = 1
    """The fewest frames per video the metric's protocol accepts."""

    @classmethod
    def preflight(
        cls, params: dict[str, Any], *, frames: int, height: int, width: int, device: str
    ) -> list[str]:
        """One-line problems of running this metric with ``params`` on videos of
        ``frames x height x width`` (empty: fine), found without loading heavy weights.

        Checks: unknown parameter names, invalid values (the constructor's own checks; it
        loads nothing), frame counts below the protocol's, then :meth:`_preflight` (missing
        backbone files, missing optional extras).
        """
        known = constructor_params(cls)
        problems = []
        for key in sorted(set(params) - set(known)):
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {sorted(known)})"
            problems.append(f"metric_params.{cls.name}.{key}: unknown parameter{hint}")
        for key, value in sorted(params.items()):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"metric_params.{cls.name}.{key}: must be finite, got {value}")
        if problems:
            return problems
        try:
            metric = cls(**params)
        except (TypeError, ValueError) as e:
            return [f"metric_params.{cls.name}: {e}"]
        need = metric.frames_needed()
        if frames < need:
            problems.append(
                f"{cls.name}: needs at least {need} frames per video, the generation has {frames}"
            )
        return problems + metric._preflight(
            frames=frames, height=height, width=width, device=device
        )

    def frames_needed(self) -> int:
        """Frames per video this instance's protocol needs (default :attr:`min_frames`)."""
        return self.min_frames

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        """Metric-specific problems (backbone files, extras); none by default."""
        return []


class PerVideoMetric(MetricBase):
    """Accumulates one score per video; ``compute`` averages them with a bootstrap CI.

    Subclasses set the class attributes of the metric contract and implement :meth:`score`
    and :meth:`params`. ``keys`` holds ``"<prompt_id>/<seed>"`` of each score, in order.
    """

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
