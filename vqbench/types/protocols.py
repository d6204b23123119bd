"""The contracts, exactly as the runner calls them (see ``vqbench/runner.py``).

``ModelAdapter`` (the base class in ``vqbench/adapters/base.py``), ``BaseQuantizer``
(``quantizers/core/base.py``) and the metrics of ``metrics/`` implement them; the
conformance tests check every registered entry against them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from vqbench.types.media import MetricResult, SampleContext, Video
from vqbench.types.model import CalibrationSet, QuantState, QuantTarget


@runtime_checkable
class AdapterContract(Protocol):
    """What the runner calls on a model adapter."""

    device: torch.device

    def load(self, device: str = "cpu", dtype: str = "float32") -> None: ...

    def resolve(self, spec: Any) -> Any: ...

    def model_info(self) -> dict[str, Any]: ...

    def denoisers(self) -> dict[str, nn.Module]: ...

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: Any,
        progress: Callable[[int], None] | None = None,
    ) -> list[Video]: ...

    def capture(
        self, prompts: list[str], seeds: list[int], spec: Any, every_k_steps: int = 1
    ) -> CalibrationSet: ...

    def quant_targets(self, spec: Any) -> list[QuantTarget]: ...

    def calibration_for(self, name: str, calib: CalibrationSet) -> CalibrationSet: ...

    def metric_defaults(self) -> dict[str, dict[str, Any]]: ...

    def reference_videos(self, samples: list[SampleContext]) -> list[Video] | None: ...


@runtime_checkable
class QuantizerContract(Protocol):
    """What the runner calls on a quantizer (built by the class method ``from_spec``)."""

    name: str
    config: Any  # a frozen config dataclass with ``hash()`` and ``version``

    @classmethod
    def from_spec(
        cls, w_bits: int, a_bits: int, kernel: str = "fake", params: dict[str, Any] | None = None
    ) -> QuantizerContract: ...

    def calibrate(self, target: QuantTarget, calib: CalibrationSet) -> QuantState: ...

    def quantize(self, target: QuantTarget, state: QuantState) -> nn.Module: ...

    def describe(self) -> dict[str, Any]: ...

    def effective_bits(self, target: QuantTarget) -> dict[str, Any]: ...


METRIC_REQUIREMENTS = frozenset(
    {"fp_video", "prompt", "scene", "timings", "reference", "attributes"}
)
"""What a metric may declare in ``requires``."""


@runtime_checkable
class Metric(Protocol):
    """What the runner calls on a metric (torchmetrics shape); built as ``cls(**params)``.

    ``requires`` is a subset of :data:`METRIC_REQUIREMENTS`; metrics that require
    ``reference`` are also :class:`ReferenceMetric`; those that require ``attributes`` name
    the prompt attributes they read in ``attribute_keys`` and say which a prompt lacks with
    ``missing_attributes(attributes)``.
    """

    name: str
    version: str
    higher_is_better: bool
    requires: frozenset[str]

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None: ...

    def compute(self) -> MetricResult: ...

    def reset(self) -> None: ...


@runtime_checkable
class ReferenceMetric(Metric, Protocol):
    """A metric against a reference set (FVD): the runner calls ``set_reference(videos)``
    with the adapter's real videos before ``update``, unless its params name a
    ``reference_dir``."""

    def set_reference(self, videos: list[Video]) -> None: ...
