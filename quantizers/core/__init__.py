"""The shared quantization substrate: primitives, observers, QuantLinear, calibration, policy.

See ``base.py`` for the API the runner calls and ``context.py`` for how the harness
announces the sampling step to time-dependent layers.
"""

from quantizers.core.base import BaseQuantizer, QuantConfig
from quantizers.core.context import current_step, sampling_step
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant, QWeight, quantize_weight

__all__ = [
    "BaseQuantizer",
    "LayerSpec",
    "QWeight",
    "QuantConfig",
    "QuantLinear",
    "QuantVariant",
    "current_step",
    "quantize_weight",
    "sampling_step",
]
