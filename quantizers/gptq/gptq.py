"""GPTQ weights (Hessian error feedback) with per-token dynamic activations (methods.md §5.8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantizers.core.base import BaseQuantizer, QuantConfig, static_range
from quantizers.core.calib import collect_hessians
from quantizers.core.gptq import gptq_quantize
from quantizers.core.linear import QuantLinear, QuantVariant, QWeight
from quantizers.core.policy import LayerPlan
from vqbench.types import CalibrationSet, QuantState, QuantTarget


@dataclass(frozen=True)
class GPTQConfig(QuantConfig):
    """``damp``: fraction of ``mean(diag H)`` added to the Hessian diagonal (1%)."""

    damp: float = 0.01

    def __post_init__(self) -> None:
        if not 0 <= self.damp < 1:
            raise ValueError(f"damp: must be in [0, 1), got {self.damp}")
        super().__post_init__()


def gptq_state(
    plans: dict[str, LayerPlan],
    weights: dict[str, torch.Tensor],
    hessians: dict[str, torch.Tensor],
    damp: float,
) -> dict[str, torch.Tensor]:
    """GPTQ codes/scales/zeros per layer and variant (``<name>.v<i>.codes`` etc.)."""
    out = {}
    for name, plan in plans.items():
        for i, spec in enumerate(s for s in (plan.spec, plan.early) if s is not None):
            if spec.w_bits >= 16 or name not in hessians:
                continue
            qw = gptq_quantize(weights[name], hessians[name], spec, damp)
            out[f"{name}.v{i}.codes"], out[f"{name}.v{i}.scale"] = qw.codes, qw.scale
            out[f"{name}.v{i}.zero"] = qw.zero
    return out


def stored_qweight(name: str, i: int, state: QuantState) -> QWeight | None:
    """The GPTQ weight of variant ``i`` of ``name`` in ``state``, if any."""
    t = state.tensors
    if f"{name}.v{i}.codes" not in t:
        return None
    return QWeight(t[f"{name}.v{i}.codes"], t[f"{name}.v{i}.scale"], t[f"{name}.v{i}.zero"])


class GPTQQuantizer(BaseQuantizer):
    """GPTQ on each linear's FP-calibration Hessian; RTN-style activations."""

    name = "gptq"
    config_cls = GPTQConfig

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        state = super()._calibrate(target, calib, plans)
        names = [n for n, p in plans.items() if p.spec is not None]
        hessians = collect_hessians(target, calib, names, self.config.calib_batch_size)
        weights = {n: target.module.get_submodule(n).weight for n in names}
        state.tensors.update(gptq_state(plans, weights, hessians, self.config.damp))
        return state

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        act = static_range(name, state)
        specs = [s for s in (plan.spec, plan.early) if s is not None]
        variants = [
            QuantVariant(
                s, self.config.kernel, linear.weight, stored_qweight(name, i, state), None, act
            )
            for i, s in enumerate(specs)
        ]
        return QuantLinear(linear, variants, early_steps=self.config.early_steps)
