"""Shared contracts of vqbench: the small types package that ``quantizers`` and ``metrics``
import. It depends on torch and numpy only.

- :mod:`~vqbench.types.common`: bit widths, kernel modes, dtypes and the one :func:`digest`;
- :mod:`~vqbench.types.media`: :class:`Video`, :class:`SampleContext`, :class:`MetricResult`;
- :mod:`~vqbench.types.model`: layer roles, :class:`TokenLayout`, :class:`CalibrationSet`,
  :class:`QuantTarget`, :class:`QuantState`;
- :mod:`~vqbench.types.protocols`: what the runner calls on adapters, quantizers, metrics.
"""

from vqbench.types.common import (
    BITS,
    DIGEST_LENGTH,
    DTYPES,
    KERNEL_MODES,
    NonFiniteError,
    digest,
    match_any,
)
from vqbench.types.media import MetricResult, SampleContext, Video
from vqbench.types.model import (
    LAYOUT_KINDS,
    ROLES,
    CalibrationSet,
    QuantState,
    QuantTarget,
    TokenLayout,
)
from vqbench.types.protocols import (
    METRIC_REQUIREMENTS,
    AdapterContract,
    Metric,
    QuantizerContract,
    ReferenceMetric,
)

__all__ = [
    "BITS",
    "DIGEST_LENGTH",
    "DTYPES",
    "KERNEL_MODES",
    "LAYOUT_KINDS",
    "ROLES",
    "AdapterContract",
    "CalibrationSet",
    "Metric",
    "MetricResult",
    "NonFiniteError",
    "QuantState",
    "QuantTarget",
    "QuantizerContract",
    "ReferenceMetric",
    "METRIC_REQUIREMENTS",
    "SampleContext",
    "TokenLayout",
    "Video",
    "digest",
    "match_any",
]
