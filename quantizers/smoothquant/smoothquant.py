"""SmoothQuant with timestep-aware statistics (methods.md §5.2, ViDiT-Q's time ranges).

Per linear and time range ``r``: ``c_j = max|X_j|_r^alpha_r / max_i|W_ij|^(1-alpha_r)``;
the layer multiplies ``(X / c) (W diag(c))^T``. Folding ``1/c`` into the preceding op is
model-specific, so ``X / c`` runs online inside ``QuantLinear`` and ``W diag(c)`` is folded
into the weight (one weight variant per time range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from quantizers.core.base import BaseQuantizer, SmoothingConfig
from quantizers.core.calib import time_range_absmax
from quantizers.core.linear import QuantLinear, QuantVariant
from quantizers.core.observers import time_range_edges
from quantizers.core.policy import LayerPlan
from quantizers.core.transforms import smoothing_scale
from vqbench.types import CalibrationSet, QuantState, QuantTarget


@dataclass(frozen=True)
class SmoothQuantConfig(SmoothingConfig):
    """``alpha`` (or one per time range in ``alphas``), ``time_ranges`` equal-width timestep
    ranges with their own statistics, ``momentum`` of the EMA of per-batch channel maxima."""

    method: ClassVar[str] = "smoothquant"


class SmoothQuantQuantizer(BaseQuantizer):
    """Activation-to-weight difficulty migration, then per-channel W / per-token A."""

    name = "smoothquant"
    config_cls = SmoothQuantConfig

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        edges = time_range_edges(calib.timesteps, self.config.time_ranges)
        names = [n for n, p in plans.items() if p.spec is not None]
        cfg = self.config
        tensors = time_range_absmax(target, calib, names, edges, cfg.momentum, cfg.calib_batch_size)
        return QuantState(tensors=tensors, meta={"t_edges": list(edges)})

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        edges = tuple(state.meta["t_edges"])
        mode, w = self.config.kernel, linear.weight.detach()
        smooth = [
            smoothing_scale(state.tensors[f"{name}.act_absmax.{r}"], w, self.config.alpha_of(r))
            for r in range(len(edges) + 1)
        ]
        variants = [QuantVariant(plan.spec, mode, w * c.to(w.dtype), smooth=c) for c in smooth]
        if plan.early is not None:  # early steps are the noisiest: the highest-t range
            c = smooth[-1]
            variants.append(QuantVariant(plan.early, mode, w * c.to(w.dtype), smooth=c))
        return QuantLinear(linear, variants, early_steps=self.config.early_steps, t_edges=edges)
