"""PTQ4DiT (Wu et al., NeurIPS 2024): CSB balancing calibrated by SSC (methods.md §5.6).

Per linear with input channels ``j`` and distinct calibration timesteps ``t``:

- salience ``s_t(X_j) = max |X_j|`` over the tokens seen at ``t``, ``s(W_j) = max_i |W_ij|``;
- SSC: ``rho_t`` = Spearman's rank correlation of the vectors ``s_t(X)`` and ``s(W)``;
  ``eta_t = softmax_t(-rho_t)`` weights the timesteps where activation and weight salience
  are most complementary; ``s(X_j) = sum_t eta_t s_t(X_j)``;
- CSB: ``b_j = sqrt(s(X_j) / s(W_j))``; the layer computes ``(X / b)(W diag(b))^T``, so
  both operands end with the balanced salience ``sqrt(s(X_j) s(W_j))``.

Then per-channel weights (MSE clip search by default, as Q-Diffusion's weight init) and
activations per token (``act: dynamic``, the default) or per tensor with a static range
(``act: static``, the paper's setting). ``1/b`` runs online in ``QuantLinear`` (no adaLN fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from quantizers.core.balance import (
    TimestepStats,
    balance_vector,
    channel_salience,
    collect_timestep_stats,
    salience_weights,
    spearman_rho,
)
from quantizers.core.base import BaseQuantizer, QuantConfig, static_range
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant, quantize_weight
from quantizers.core.policy import LayerPlan
from quantizers.core.quantizer import mse_clip_search
from vqbench.types import CalibrationSet, QuantState, QuantTarget

ACT_MODES = ("static", "dynamic")


@dataclass(frozen=True)
class PTQ4DiTConfig(QuantConfig):
    """``act``: ``dynamic`` per-token (default, as every baseline here) or ``static``
    calibrated per-tensor activation ranges (the paper's setting; sets ``a_granularity``);
    ``ssc``: weight timesteps by ``softmax(-rho_t)`` (False: plain CSB on the max over all
    calibration data); ``mse_clip``: per-row weight clip-ratio search (Q-Diffusion's MSE
    weight-range init)."""

    act: str = "dynamic"
    ssc: bool = True
    mse_clip: bool = True

    def __post_init__(self) -> None:
        if self.act not in ACT_MODES:
            raise ValueError(f"act: must be one of {ACT_MODES}, got {self.act!r}")
        object.__setattr__(self, "a_granularity", "tensor" if self.act == "static" else "token")
        super().__post_init__()


def csb_ssc(
    stats: TimestepStats, weight: torch.Tensor, ssc: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Balancing vector ``b [C]``, Spearman ``rho [T]`` and timestep weights ``eta [T]``.

    Timesteps a layer never saw get ``rho = nan`` and ``eta = 0``. Without ``ssc`` the
    activation salience is the max over all timesteps and ``eta`` is uniform over seen ones.
    """
    w_sal = channel_salience(weight)
    seen = stats.seen
    sal = stats.absmax
    rho = torch.full((len(stats.timesteps),), float("nan"), dtype=torch.float64)
    eta = torch.zeros(len(stats.timesteps), dtype=torch.float64)
    if not bool(seen.any()):
        return torch.ones_like(w_sal), rho, eta
    for t in torch.nonzero(seen).reshape(-1).tolist():
        rho[t] = spearman_rho(sal[t], w_sal)
    if ssc:
        eta[seen] = salience_weights(rho[seen])
        act_sal = (eta[seen, None] * sal[seen].double()).sum(0).float()
    else:
        eta[seen] = 1.0 / int(seen.sum())
        act_sal = sal[seen].amax(0)
    return balance_vector(act_sal, w_sal), rho, eta


def balanced_range(stats: TimestepStats, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-tensor ``(min, max)`` of ``X / b`` over the calibration data (``b > 0``)."""
    seen = stats.seen
    lo = (stats.lo[seen] / b).amin()
    hi = (stats.hi[seen] / b).amax()
    return lo.reshape(1), hi.reshape(1)


class PTQ4DiTQuantizer(BaseQuantizer):
    """Salience balancing (CSB) calibrated across timesteps (SSC), then RTN-style quantizers."""

    name = "ptq4dit"
    config_cls = PTQ4DiTConfig

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        names = [n for n, p in plans.items() if p.spec is not None]
        stats = collect_timestep_stats(target, calib, names, self.config.calib_batch_size)
        tensors: dict[str, torch.Tensor] = {}
        for n in names:
            weight = target.module.get_submodule(n).weight
            b, rho, eta = csb_ssc(stats[n], weight, self.config.ssc)
            tensors[f"{n}.balance"] = b
            tensors[f"{n}.rho"], tensors[f"{n}.eta"] = rho.float(), eta.float()
            if self.config.act == "static":  # a layer never called gets an empty range
                seen = bool(stats[n].seen.any())
                lo, hi = balanced_range(stats[n], b) if seen else (torch.zeros(1),) * 2
                tensors[f"{n}.act_lo"], tensors[f"{n}.act_hi"] = lo, hi
        timesteps = next(iter(stats.values())).timesteps if stats else ()
        return QuantState(tensors=tensors, meta={"timesteps": list(timesteps)})

    def _variant(
        self, spec: LayerSpec, w: torch.Tensor, b: torch.Tensor, act: tuple | None
    ) -> QuantVariant:
        qw = None
        if self.config.mse_clip and spec.w_bits < 16:
            ratio = mse_clip_search(
                w, spec.w_bits, spec.w_granularity, spec.group_size, spec.w_symmetric
            )
            qw = quantize_weight(w, spec, ratio)
        return QuantVariant(spec, self.config.kernel, w, qw, smooth=b, act_range=act)

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        w = linear.weight.detach()
        b = state.tensors[f"{name}.balance"].to(w.device)
        wb = w * b.to(w.dtype)
        act = static_range(name, state)
        specs = [s for s in (plan.spec, plan.early) if s is not None]
        variants = [self._variant(s, wb, b, act) for s in specs]
        return QuantLinear(linear, variants, early_steps=self.config.early_steps)
