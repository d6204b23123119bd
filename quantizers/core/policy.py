"""Mixed-precision policy: which bits each role-carrying linear gets, and the average bits.

Rules, applied in order (later wins): the config's default ``(w_bits, a_bits)``; per-role
overrides ``role_bits`` (e.g. ``(("mlp", 8, 8),)``: "MLP at 8 bits"); per-name fnmatch
overrides ``layer_bits``. Layers matching a skip pattern (the adapter's ``target.skip``
plus the config's ``skip``) or resolving to ``(16, 16)`` stay in full precision.
``early_steps = k`` adds an ``early`` variant at ``max(bits, early_bits)`` for the first k
sampling steps (read from :mod:`quantizers.core.context`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from quantizers.core.linear import LayerSpec, QuantLinear
from vqbench.types import QuantTarget, match_any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerPlan:
    """The resolved precision of one layer (``spec`` None = kept in full precision)."""

    name: str
    role: str
    in_features: int
    out_features: int
    spec: LayerSpec | None
    early: LayerSpec | None = None


def role_layers(target: QuantTarget) -> dict[str, tuple[int, int]]:
    """``name -> (in_features, out_features)`` of role-carrying linears (quantized or not)."""
    mods = dict(target.module.named_modules())
    out = {}
    for name in target.roles:
        m = mods.get(name)
        if isinstance(m, nn.Linear | QuantLinear):
            out[name] = (m.in_features, m.out_features)
    return out


def resolve_plans(target: QuantTarget, cfg: Any) -> dict[str, LayerPlan]:
    """One :class:`LayerPlan` per role-carrying linear of ``target`` under config ``cfg``."""
    skip = tuple(target.skip) + tuple(cfg.skip)
    plans = {}
    for name, (k, n) in role_layers(target).items():
        role = target.roles[name]
        w, a = cfg.w_bits, cfg.a_bits
        for r, rw, ra in cfg.role_bits:
            if r == role:
                w, a = rw, ra
        for pat, lw, la in cfg.layer_bits:
            if match_any(name, [pat]):
                w, a = lw, la
        if match_any(name, skip) or (w, a) == (16, 16):
            plans[name] = LayerPlan(name, role, k, n, None)
            continue
        gran = cfg.w_granularity
        if gran == "group" and k % cfg.group_size:
            logger.info("%s: in %d not a multiple of %d: per-channel", name, k, cfg.group_size)
            gran = "channel"
        spec = LayerSpec(
            w, a, gran, cfg.group_size, cfg.w_symmetric, cfg.a_granularity, cfg.a_symmetric
        )
        early = None
        if cfg.early_steps > 0:
            ew, ea = cfg.early_bits
            early = LayerSpec(max(w, ew), max(a, ea), *_tail(spec))
        plans[name] = LayerPlan(name, role, k, n, spec, early)
    return plans


def _tail(spec: LayerSpec) -> tuple:
    return (
        spec.w_granularity,
        spec.group_size,
        spec.w_symmetric,
        spec.a_granularity,
        spec.a_symmetric,
    )


def effective_bits(
    plans: dict[str, LayerPlan], early_steps: int = 0, num_steps: int | None = None
) -> dict[str, Any]:
    """Average bits over all role-carrying linears, weighted by ``in * out`` (FP = 16).

    With an early-step policy and ``num_steps`` known, bits are also averaged over steps;
    otherwise they describe the late (majority) steps and ``early_steps`` is reported.
    """
    frac = min(early_steps / num_steps, 1.0) if early_steps and num_steps else 0.0
    tw = ta = total = 0.0
    counts = {"quantized_layers": 0, "fp_layers": 0, "w8_layers": 0}
    for p in plans.values():
        size = p.in_features * p.out_features
        total += size
        if p.spec is None:
            counts["fp_layers"] += 1
            tw += 16 * size
            ta += 16 * size
            continue
        counts["quantized_layers"] += 1
        counts["w8_layers"] += int(p.spec.w_bits == 8)
        early = p.early or p.spec
        tw += size * ((1 - frac) * p.spec.w_bits + frac * early.w_bits)
        ta += size * ((1 - frac) * p.spec.a_bits + frac * early.a_bits)
    out: dict[str, Any] = {
        "w_bits": round(tw / total, 4) if total else 16.0,
        "a_bits": round(ta / total, 4) if total else 16.0,
        **counts,
    }
    if early_steps:
        out["early_steps"] = early_steps
        out["steps_averaged"] = bool(num_steps)
    return out
