"""Round-to-nearest min-max quantization (the "naive PTQ" baseline, methods.md §5.1)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quantizers.core.base import BaseQuantizer, QuantConfig, static_range
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant, quantize_weight
from quantizers.core.policy import LayerPlan
from quantizers.core.quantizer import mse_clip_search
from vqbench.types import QuantState

ACT_MODES = ("dynamic", "static")


@dataclass(frozen=True)
class RTNConfig(QuantConfig):
    """``act``: ``dynamic`` per-token or ``static`` calibrated per-tensor activation ranges
    (sets ``a_granularity``); ``mse_clip``: per-row clip-ratio grid search for weights."""

    act: str = "dynamic"
    mse_clip: bool = False

    def __post_init__(self) -> None:
        if self.act not in ACT_MODES:
            raise ValueError(f"act: must be one of {ACT_MODES}, got {self.act!r}")
        object.__setattr__(self, "a_granularity", "tensor" if self.act == "static" else "token")
        super().__post_init__()


class RTNQuantizer(BaseQuantizer):
    """Per-channel (or group/tensor) min-max weights, dynamic or static activations."""

    name = "rtn"
    config_cls = RTNConfig

    def _variant(self, spec: LayerSpec, linear: nn.Linear, act: tuple | None) -> QuantVariant:
        qw = None
        if self.config.mse_clip and spec.w_bits < 16:
            ratio = mse_clip_search(
                linear.weight, spec.w_bits, spec.w_granularity, spec.group_size, spec.w_symmetric
            )
            qw = quantize_weight(linear.weight, spec, ratio)
        return QuantVariant(spec, self.config.kernel, linear.weight, qw, act_range=act)

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        act = static_range(name, state)
        variants = [self._variant(plan.spec, linear, act)]
        if plan.early is not None:
            variants.append(self._variant(plan.early, linear, act))
        return QuantLinear(linear, variants, early_steps=self.config.early_steps)
