"""The state a run carries between its stages: the :class:`Plan` made before any model is
loaded, the :class:`LoadedModel` with its cache keys, and one setting's :class:`Generated`
videos; :func:`timed` adds a stage's wall seconds to a timings dict."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqbench.cache import Cache
from vqbench.config import GenerationSpec, QuantSpec, RunConfig
from vqbench.prompts import Prompt
from vqbench.types import Video


@dataclass
class Plan:
    """A run resolved and validated before any model is loaded (the prepare stage)."""

    cfg: RunConfig
    run_id: str
    root: Path
    created: str
    env: dict[str, Any]
    prompts: list[Prompt]
    pairs: list[tuple[Prompt, int]]
    calib_prompts: list[Prompt]
    quantizers: list[tuple[QuantSpec, Any]]
    device: str
    lead: bool  # rank 0 (or the only process): scores and writes
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """The loaded adapter and everything keyed on the model's identity, computed once."""

    adapter: Any
    spec: GenerationSpec
    info: dict[str, Any]
    cache: Cache | None
    keys: dict[str, str]  # content keys of the FP videos and the calibration set
    ids: dict[str, str]  # the same keys without the weights digest (for `sweep --dry-run`)
    fp_bytes: int
    generation: dict[str, Any]  # the records' ``generation`` part (spec, seeds, prompts hash)
    quantized: bool = False  # quantized in place: reload before the next setting


@dataclass
class Generated:
    """The videos of one setting with their wall time and (inline) latency."""

    videos: list[Video]
    seconds: float
    latency: dict[str, Any] | None


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall seconds of the block to ``timings[stage]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
