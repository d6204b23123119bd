"""ViDiT-Q (Zhao et al., ICLR 2025): static-dynamic channel balancing, mixed precision.

Per linear and time range ``r`` (methods.md §5.3-5.4, code ``ViDiTQuantizedLinear``):

1. static balancing: ``c_r,j = max|X_j|_r^alpha_r / max_i|W_ij|^(1-alpha_r)`` from calibration
   statistics (one range = the static scale of the ICLR'25 code; several = the timestep-aware
   channel balancing of the earlier code line);
2. dynamic balancing: an orthogonal (block) Hadamard rotation ``R`` after the scaling;
3. the layer computes ``Q_a((X / c_r) R) Q_w(W diag(c_r) R)^T`` with per-channel weights and
   dynamic per-token activations; ``W diag(c_r) R`` is folded offline (one weight variant per
   time range), ``/ c_r`` and ``R`` run online.

Mixed precision: the policy fields of :class:`~quantizers.core.base.QuantConfig` (MLP at
8 bits, the first k steps at 8 bits) plus ``mp_fraction``: metric-decoupled sensitivity
analysis (:mod:`quantizers.viditq.mixed_precision`) raises the most sensitive layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from quantizers.core.balance import ButterflyHadamard
from quantizers.core.base import BITS, BaseQuantizer, SmoothingConfig
from quantizers.core.calib import time_range_absmax
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.observers import time_range_edges
from quantizers.core.policy import LayerPlan
from quantizers.core.transforms import smoothing_scale
from quantizers.viditq.mixed_precision import decoupled_selection
from vqbench.types import CalibrationSet, QuantState, QuantTarget


@dataclass(frozen=True)
class ViDiTQConfig(SmoothingConfig):
    """Channel balancing: ``alpha`` (SmoothQuant convention: the exponent of the activation
    maximum; ViDiT-Q's code writes ``1 - alpha``) or one per time range in ``alphas``,
    ``time_ranges`` equal-width timestep ranges with their own statistics, ``momentum`` of
    the EMA of channel maxima, ``rotate`` (the dynamic part) with ``seed`` for the odd
    factor of non-power-of-2 widths.

    Mixed precision: ``mp_fraction`` of the quantized weight parameters (by size) raised to
    at least ``mp_bits = (w, a)``, chosen on ``mp_rows`` calibration rows (0 = off)."""

    method: ClassVar[str] = "viditq"
    rotate: bool = True
    seed: int = 0
    mp_fraction: float = 0.0
    mp_bits: tuple[int, int] = (8, 8)
    mp_rows: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.mp_fraction <= 1:
            raise ValueError(f"mp_fraction: must lie in [0, 1], got {self.mp_fraction}")
        if len(self.mp_bits) != 2 or any(b not in BITS for b in self.mp_bits):
            raise ValueError(f"mp_bits: must be (w_bits, a_bits) in {BITS}")
        if self.mp_rows < 1:
            raise ValueError(f"mp_rows: must be >= 1, got {self.mp_rows}")
        super().__post_init__()


def _raise(spec: LayerSpec | None, bits: tuple[int, int]) -> LayerSpec | None:
    if spec is None:
        return None
    return dataclasses.replace(
        spec, w_bits=max(spec.w_bits, bits[0]), a_bits=max(spec.a_bits, bits[1])
    )


class ViDiTQQuantizer(BaseQuantizer):
    """Smoothing then rotation, per-channel W / per-token A, metric-decoupled MP."""

    name = "viditq"
    stochastic = True  # the seeded orthogonal factor of non-power-of-2 widths
    config_cls = ViDiTQConfig

    def __init__(self, config: ViDiTQConfig | None = None) -> None:
        super().__init__(config)
        self._mp_layers: tuple[str, ...] = ()  # from the last calibrate() or quantize()

    def plans(self, target: QuantTarget) -> dict[str, LayerPlan]:
        """The config's plans with the layers chosen by mixed precision raised to ``mp_bits``."""
        plans = super().plans(target)
        bits = self.config.mp_bits
        for n in self._mp_layers:
            p = plans.get(n)
            if p is not None and p.spec is not None:
                plans[n] = dataclasses.replace(
                    p, spec=_raise(p.spec, bits), early=_raise(p.early, bits)
                )
        return plans

    def calibrate(self, target: QuantTarget, calib: CalibrationSet) -> QuantState:
        self._mp_layers = ()
        return super().calibrate(target, calib)

    def quantize(self, target: QuantTarget, state: QuantState) -> nn.Module:
        self._mp_layers = tuple(state.meta.get("mp_layers", ()))
        return super().quantize(target, state)

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        cfg = self.config
        edges = time_range_edges(calib.timesteps, cfg.time_ranges)
        names = [n for n, p in plans.items() if p.spec is not None]
        tensors = time_range_absmax(target, calib, names, edges, cfg.momentum, cfg.calib_batch_size)
        state = QuantState(tensors=tensors, meta={"t_edges": list(edges), "mp_layers": []})
        if cfg.mp_fraction > 0:
            chosen, scores = decoupled_selection(
                target,
                calib,
                plans,
                lambda n, lin, p: self._build_layer(n, lin, p, state),
                cfg.mp_fraction,
                tuple(cfg.mp_bits),
                cfg.mp_rows,
                cfg.calib_batch_size,
            )
            state.meta["mp_layers"] = chosen
            state.meta["mp_scores"] = {n: float(s) for n, s in sorted(scores.items())}
            self._mp_layers = tuple(chosen)
        return state

    def balancing(self, name: str, weight: torch.Tensor, state: QuantState) -> list[torch.Tensor]:
        """The smoothing vector ``c_r`` of each time range ``r``."""
        n_ranges = len(state.meta["t_edges"]) + 1
        return [
            smoothing_scale(
                state.tensors[f"{name}.act_absmax.{r}"].to(weight.device),
                weight,
                self.config.alpha_of(r),
            )
            for r in range(n_ranges)
        ]

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        edges = tuple(state.meta["t_edges"])
        mode, w = self.config.kernel, linear.weight.detach()
        rot = r_mat = None
        if self.config.rotate:
            rot = ButterflyHadamard(linear.in_features, self.config.seed)
            r_mat = rot.matrix().to(w.device)  # built on CPU, then moved with the layer
            rot = rot.to(w.device)
        smooth = [c.to(w.device) for c in self.balancing(name, w, state)]

        def folded(c: torch.Tensor) -> torch.Tensor:
            wc = w.float() * c
            return (wc if r_mat is None else wc @ r_mat).to(w.dtype)

        variants = [QuantVariant(plan.spec, mode, folded(c), smooth=c) for c in smooth]
        if plan.early is not None:  # early steps are the noisiest: the highest-t range
            variants.append(QuantVariant(plan.early, mode, folded(smooth[-1]), smooth=smooth[-1]))
        return QuantLinear(
            linear, variants, rot, early_steps=self.config.early_steps, t_edges=edges
        )
