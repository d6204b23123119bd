"""QuaRot-style rotation: online (block) Hadamard on each linear input, ``W R`` folded in.

``R`` is a Hadamard for power-of-2 widths and a Kronecker product of a seeded random
orthogonal ``p x p`` matrix with Hadamards otherwise (:mod:`quantizers.core.transforms`).
Weights are RTN or, with ``gptq=True``, GPTQ on the rotated Hessian ``R^T H R``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from quantizers.core.base import BaseQuantizer, QuantConfig
from quantizers.core.calib import collect_hessians
from quantizers.core.linear import QuantLinear, QuantVariant
from quantizers.core.policy import LayerPlan
from quantizers.core.transforms import BlockHadamard
from quantizers.gptq.gptq import gptq_state, stored_qweight
from vqbench.types import CalibrationSet, QuantState, QuantTarget


@dataclass(frozen=True)
class QuaRotConfig(QuantConfig):
    """``gptq``: GPTQ weights on the rotated Hessian; ``damp`` its damping; ``seed`` of the
    random orthogonal factor for widths that are not a power of 2."""

    gptq: bool = False
    damp: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.a_granularity != "token":
            raise ValueError("a_granularity: quarot uses dynamic per-token activations")
        super().__post_init__()


class QuaRotQuantizer(BaseQuantizer):
    """Rotate, then per-channel weights and per-token dynamic activations."""

    name = "quarot"
    stochastic = True  # the seeded orthogonal factor of non-power-of-2 widths
    config_cls = QuaRotConfig

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        if not self.config.gptq:
            return QuantState()
        names = [n for n, p in plans.items() if p.spec is not None]
        hessians = collect_hessians(target, calib, names, self.config.calib_batch_size)
        weights, rotated = {}, {}
        for n in names:
            r = BlockHadamard(plans[n].in_features, self.config.seed).matrix()
            weights[n] = target.module.get_submodule(n).weight.detach().float() @ r
            rotated[n] = r.t() @ hessians[n] @ r
        return QuantState(tensors=gptq_state(plans, weights, rotated, self.config.damp))

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        rot = BlockHadamard(linear.in_features, self.config.seed)
        w = (linear.weight.detach().float() @ rot.matrix()).to(linear.weight.dtype)
        specs = [s for s in (plan.spec, plan.early) if s is not None]
        variants = [
            QuantVariant(s, self.config.kernel, w, stored_qweight(name, i, state))
            for i, s in enumerate(specs)
        ]
        return QuantLinear(linear, variants, rot, early_steps=self.config.early_steps)
