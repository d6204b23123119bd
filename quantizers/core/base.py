"""The quantizer API the runner calls: ``QuantConfig`` and ``BaseQuantizer``.

A method subclasses :class:`QuantConfig` (frozen, adding its fields) and
:class:`BaseQuantizer`, overriding :meth:`BaseQuantizer._calibrate` (statistics into a
:class:`~vqbench.types.QuantState`) and :meth:`BaseQuantizer._build_layer` (one
:class:`~quantizers.core.linear.QuantLinear` from an ``nn.Linear``, its plan and the state).
The base implementation of both is round-to-nearest (RTN).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from quantizers.core.calib import collect_act_stats
from quantizers.core.linear import MODES, LayerSpec, QuantLinear, QuantVariant
from quantizers.core.observers import MinMaxObserver
from quantizers.core.policy import LayerPlan, effective_bits, resolve_plans
from quantizers.core.quantizer import GRANULARITIES_A, GRANULARITIES_W
from vqbench.types import BITS, CalibrationSet, QuantState, QuantTarget, digest

SPEC_FIELDS = ("w_bits", "a_bits", "kernel", "version")
#: config fields checked by name in every method's config (see QuantConfig.__post_init__)
NONNEGATIVE = ("seed", "damp", "iters", "epochs", "weight_decay", "gamma", "early_steps")
POSITIVE = ("max_block_bytes", "lr", "lr_lora", "lr_delta", "clip_lr", "group_size")
UNIT_INTERVAL = ("momentum",)


@dataclass(frozen=True)
class QuantConfig:
    """Common quantizer settings (method configs subclass this, frozen).

    Mixed precision: ``role_bits`` = ``((role, w_bits, a_bits), ...)``, ``layer_bits`` =
    ``((fnmatch pattern, w_bits, a_bits), ...)``, ``early_steps``/``early_bits`` = the first k
    sampling steps at higher precision. ``skip`` patterns add to the adapter's ``target.skip``.
    """

    w_bits: int = 8
    a_bits: int = 8
    kernel: str = "fake"
    w_granularity: str = "channel"
    group_size: int = 128
    w_symmetric: bool = False
    a_granularity: str = "token"
    a_symmetric: bool = False
    skip: tuple[str, ...] = ()
    role_bits: tuple[tuple[str, int, int], ...] = ()
    layer_bits: tuple[tuple[str, int, int], ...] = ()
    early_steps: int = 0
    early_bits: tuple[int, int] = (8, 8)
    calib_batch_size: int = 4
    version: str = "1"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # every method's numbers: finite, and sane by name
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name}: must be a finite number, got {v}")
            if f.name in NONNEGATIVE and isinstance(v, int | float) and v < 0:
                raise ValueError(f"{f.name}: must be >= 0, got {v}")
            if f.name in POSITIVE and isinstance(v, int | float) and v <= 0:
                raise ValueError(f"{f.name}: must be > 0, got {v}")
            if f.name in UNIT_INTERVAL and isinstance(v, float) and not 0 <= v <= 1:
                raise ValueError(f"{f.name}: must lie in [0, 1], got {v}")
        for f in ("w_bits", "a_bits"):
            if getattr(self, f) not in BITS:
                raise ValueError(f"{f}: {getattr(self, f)} is not one of {BITS}")
        if self.kernel not in MODES:
            raise ValueError(f"kernel: must be one of {MODES}, got {self.kernel!r}")
        if self.w_granularity not in GRANULARITIES_W:
            raise ValueError(f"w_granularity: must be one of {GRANULARITIES_W}")
        if self.a_granularity not in GRANULARITIES_A:
            raise ValueError(f"a_granularity: must be one of {GRANULARITIES_A}")
        if self.group_size < 1 or self.early_steps < 0 or self.calib_batch_size < 1:
            raise ValueError("group_size, calib_batch_size must be >= 1; early_steps >= 0")
        for f in ("role_bits", "layer_bits"):
            for rule in getattr(self, f):
                if len(rule) != 3 or rule[1] not in BITS or rule[2] not in BITS:
                    raise ValueError(f"{f}: rule {rule!r} must be (name, w_bits, a_bits) in {BITS}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`; lists become tuples, mappings of rules are accepted."""
        hints = typing.get_type_hints(cls)
        return cls(**{k: _normalize(k, v, hints.get(k)) for k, v in data.items()})

    def hash(self) -> str:
        """:func:`vqbench.types.digest` of :meth:`to_dict` (stable across sessions)."""
        return digest(self.to_dict())


def _normalize(key: str, value: Any, hint: Any) -> Any:
    if key in ("role_bits", "layer_bits") and isinstance(value, dict):
        rules = []
        for name, bits in value.items():
            if isinstance(bits, dict):
                bits = (bits.get("w_bits", 8), bits.get("a_bits", 8))
            rules.append((str(name), int(bits[0]), int(bits[1])))
        return tuple(rules)
    if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


@dataclass(frozen=True)
class SmoothingConfig(QuantConfig):
    """Shared fields of SmoothQuant-style channel smoothing: ``alpha`` (or one per time
    range in ``alphas``), ``time_ranges`` equal-width timestep ranges with their own
    statistics, ``momentum`` of the EMA of channel maxima. Dynamic per-token activations."""

    alpha: float = 0.5
    alphas: tuple[float, ...] = ()
    time_ranges: int = 1
    momentum: float = 0.95
    method: ClassVar[str] = "smoothing"

    def __post_init__(self) -> None:
        if self.a_granularity != "token":
            raise ValueError(f"a_granularity: {self.method} uses dynamic per-token activations")
        if self.time_ranges < 1:
            raise ValueError(f"time_ranges: must be >= 1, got {self.time_ranges}")
        if self.alphas and len(self.alphas) != self.time_ranges:
            raise ValueError(f"alphas: needs one value per time range ({self.time_ranges})")
        if not all(0 <= a <= 1 for a in (self.alpha, *self.alphas)):
            raise ValueError("alpha/alphas: must lie in [0, 1]")
        super().__post_init__()

    def alpha_of(self, r: int) -> float:
        """The migration strength of time range ``r``."""
        return self.alphas[r] if self.alphas else self.alpha


class BaseQuantizer:
    """Round-to-nearest quantizer and the template every method follows."""

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[QuantConfig]] = QuantConfig
    supported_bits: ClassVar[frozenset[tuple[int, int]]] = frozenset(
        (w, a) for w in BITS for a in BITS
    )
    #: whether calibration draws random numbers (its config's ``seed``): sweeps run such a
    #: method once per ``calib_seeds`` entry, and reports pool the seeds
    stochastic: ClassVar[bool] = False
    #: the cheapest parameters that still run every code path (iterations, epochs); the
    #: registry-generated conformance suite uses them so it stays fast on a CPU
    smoke_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: QuantConfig | None = None) -> None:
        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{self.name}: config must be a {self.config_cls.__name__}")
        if not self.supports(config.w_bits, config.a_bits):
            raise ValueError(
                f"w_bits/a_bits: {self.name} does not support W{config.w_bits}A{config.a_bits}"
            )
        self.config = config

    @classmethod
    def from_spec(
        cls, w_bits: int, a_bits: int, kernel: str = "fake", params: dict[str, Any] | None = None
    ) -> BaseQuantizer:
        """Build from a run's quantizer spec; unknown params raise ``ValueError`` by name."""
        fields = [f.name for f in dataclasses.fields(cls.config_cls) if f.name not in SPEC_FIELDS]
        for key in params or {}:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"quantizers.params.{key}: unknown parameter{hint}")
        for f, b in (("w_bits", w_bits), ("a_bits", a_bits)):
            if b not in BITS:
                raise ValueError(f"{f}: {b} is not one of {BITS}")
        if (w_bits, a_bits) not in cls.supported_bits:
            raise ValueError(f"w_bits/a_bits: {cls.name} does not support W{w_bits}A{a_bits}")
        if kernel == "real":  # the real mode's switches, checked before any work
            from quantizers.core import backends, fused

            backends.requested()
            fused.enabled()
        data = {"w_bits": w_bits, "a_bits": a_bits, "kernel": kernel, **(params or {})}
        return cls(cls.config_cls.from_dict(data))

    def supports(self, w_bits: int, a_bits: int) -> bool:
        """Whether this method implements ``W{w_bits}A{a_bits}``."""
        return (w_bits, a_bits) in self.supported_bits

    def plans(self, target: QuantTarget) -> dict[str, LayerPlan]:
        """Per-layer precision under this config (see :mod:`quantizers.core.policy`)."""
        return resolve_plans(target, self.config)

    # ---- the runner's calls ----------------------------------------------------------------
    def calibrate(self, target: QuantTarget, calib: CalibrationSet) -> QuantState:
        """Collect what :meth:`quantize` needs from FP calibration runs."""
        state = self._calibrate(target, calib, self.plans(target))
        state.meta.update(quantizer=self.name, version=self.config.version)
        state.meta["config_hash"] = self.config.hash()
        return state

    def quantize(self, target: QuantTarget, state: QuantState) -> nn.Module:
        """Swap every planned ``nn.Linear`` of ``target.module`` for a ``QuantLinear``."""
        if state.meta.get("config_hash") != self.config.hash():
            raise ValueError(f"{self.name}: state was calibrated with a different config")
        for name, plan in self.plans(target).items():
            linear = target.module.get_submodule(name)
            if plan.spec is None or not isinstance(linear, nn.Linear):
                continue
            target.module.set_submodule(name, self._build_layer(name, linear, plan, state))
        return target.module

    def effective_bits(self, target: QuantTarget, num_steps: int | None = None) -> dict[str, Any]:
        """Average W/A bits over all role-carrying linears (FP = 16), plus layer counts."""
        return effective_bits(self.plans(target), self.config.early_steps, num_steps)

    def describe(self) -> dict[str, Any]:
        """Name, version, config and its hash, for the run record.

        ``kernel_backend``: ``"fake"`` in fake mode, else the integer-GEMM backend of the
        real layers built last in this process (:mod:`quantizers.core.backends`; after
        :meth:`quantize`), or the one this CPU would use before any was built;
        ``kernel_fusion``: how the real mode's element-wise work ran on CPU
        (:func:`quantizers.core.fused.status`), None in fake mode.
        """
        from quantizers.core import backends, fused

        backend, fusion = "fake", None
        if self.config.kernel == "real":
            backend = backends.last_used() or backends.choose_backend("cpu")
            fusion = fused.status()
        return {
            "name": self.name,
            "version": self.config.version,
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "kernel_backend": backend,
            "kernel_fusion": fusion,
        }

    # ---- method hooks (RTN by default) -----------------------------------------------------
    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        """Static per-tensor activation ranges for layers that need them."""
        names = [n for n, p in plans.items() if needs_static_range(p)]
        tensors: dict[str, torch.Tensor] = {}
        if names:
            obs = collect_act_stats(
                target, calib, names, MinMaxObserver, batch_size=self.config.calib_batch_size
            )
            for n in names:
                o = obs[n].observers[0]
                tensors[f"{n}.act_lo"], tensors[f"{n}.act_hi"] = o.lo, o.hi
        return QuantState(tensors=tensors, meta={})

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        """RTN variants of ``linear`` (plus the early-step variant of the policy)."""
        act = static_range(name, state)
        mode = self.config.kernel
        variants = [QuantVariant(plan.spec, mode, linear.weight, act_range=act)]
        if plan.early is not None:
            variants.append(QuantVariant(plan.early, mode, linear.weight, act_range=act))
        return QuantLinear(linear, variants, early_steps=self.config.early_steps)


def needs_static_range(plan: LayerPlan) -> bool:
    """Whether a layer's activations use a calibrated per-tensor range."""
    specs = [s for s in (plan.spec, plan.early) if s is not None]
    return any(s.a_bits < 16 and s.a_granularity == "tensor" for s in specs)


def static_range(name: str, state: QuantState) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The ``(lo, hi)`` stored for ``name`` by :meth:`BaseQuantizer._calibrate`, if any."""
    lo, hi = state.tensors.get(f"{name}.act_lo"), state.tensors.get(f"{name}.act_hi")
    return None if lo is None or hi is None else (lo, hi)


__all__ = [
    "BaseQuantizer",
    "LayerSpec",
    "QuantConfig",
    "needs_static_range",
    "static_range",
]
