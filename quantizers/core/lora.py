"""QALoRA (EfficientDM) distillation: LoRA inside the weight quantizer, LSQ step sizes.

Training (methods.md §2.4, §2.9, §5.7) replaces each planned linear by a
:class:`QALoRALinear`::

    y = Q_a(x) LSQ(W + B A)^T + b  [+ side(Q_a(x))]

with ``A`` Kaiming-initialised, ``B`` zero (rank ``r``), the per-group weight step ``delta``
learnable (the zero-point stays fixed) and an optional FP ``side`` branch (Q-VDiT's TQE).
:func:`~quantizers.core.distill.distill` trains all layers end to end against the FP outputs
of a :class:`~vqbench.types.CalibrationSet` (AdamW, warm-up and cosine schedule, best
held-out state kept, never worse than the start on held-out prompts). At deployment the LoRA is
merged into the weight *before* the final quantization (:func:`lsq_qweight`), so it costs
nothing at inference. :class:`QALoRAQuantizer` packages this as a quantizer; methods override
:meth:`~QALoRAQuantizer._side_branch`, :meth:`~QALoRAQuantizer._loss` and
:meth:`~QALoRAQuantizer._make_layer`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.base import BaseQuantizer, QuantConfig
from quantizers.core.distill import DistillSettings, distill
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant, QWeight
from quantizers.core.policy import LayerPlan
from quantizers.core.quantizer import (
    EPS,
    LSQQuantizer,
    fake_quant_act,
    group_view,
    mse_clip_search,
    quantize_codes,
    weight_qparams,
)
from vqbench.types import CalibrationSet, QuantState, QuantTarget

logger = logging.getLogger(__name__)
LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def kaiming_uniform(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """``nn.Linear``'s default init (Kaiming-uniform, ``a = sqrt(5)``) of a ``[rows, cols]``
    weight: ``U(-1/sqrt(cols), 1/sqrt(cols))``, drawn from ``generator``."""
    bound = 1.0 / math.sqrt(cols)
    return (torch.rand(rows, cols, generator=generator) * 2 - 1) * bound


class QALoRALinear(nn.Module):
    """Training-time stand-in for an ``nn.Linear``: LoRA inside an LSQ weight quantizer."""

    def __init__(
        self,
        linear: nn.Linear,
        spec: LayerSpec,
        rank: int,
        generator: torch.Generator,
        mse_init: bool = True,
        act_quant: bool = False,
        side: nn.Module | None = None,
    ) -> None:
        """``act_quant``: fake-quantize inputs (dynamic per token, STE) during training;
        ``side(x_q)`` is added to the output, ``x_q`` being the (quantized) input."""
        super().__init__()
        self.linear = linear
        self.spec, self.act_quant, self.side = spec, act_quant, side
        n, k = linear.weight.shape
        r = max(1, min(rank, n, k))
        dev = linear.weight.device
        self.lora_a = nn.Parameter(kaiming_uniform(r, k, generator).to(dev))
        self.lora_b = nn.Parameter(torch.zeros(n, r, device=dev))
        self.lsq: LSQQuantizer | None = None
        self.held_weight: torch.Tensor | None = None  # set by held_weights (evaluation)
        if spec.w_bits < 16:
            w = linear.weight.detach().float()
            gran, gs, sym = spec.w_granularity, spec.group_size, spec.w_symmetric
            ratio = mse_clip_search(w, spec.w_bits, gran, gs, sym) if mse_init else 1.0
            scale, zero = weight_qparams(w, spec.w_bits, gran, gs, sym, ratio)
            self.lsq = LSQQuantizer(scale, zero, spec.w_bits, sym)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen FP weight (for code that probes ``.weight`` for dtype or device)."""
        return self.linear.weight

    def merged_weight(self) -> torch.Tensor:
        """``W + B A`` in float32 (differentiable in the LoRA factors)."""
        return self.linear.weight.float() + self.lora_b @ self.lora_a

    def quant_weight(self) -> torch.Tensor:
        """``LSQ(W + B A)`` (the merged weight itself when weights stay FP)."""
        w = self.merged_weight()
        if self.lsq is None:
            return w
        s = self.spec
        return self.lsq(group_view(w, s.w_granularity, s.group_size)).reshape(w.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if self.act_quant and s.a_bits < 16:
            x = fake_quant_act(x, s.a_bits, s.a_symmetric)
        bias = self.linear.bias
        w = self.held_weight if self.held_weight is not None else self.quant_weight()
        y = F.linear(x, w.to(x.dtype), None if bias is None else bias.to(x.dtype))
        if self.side is None:
            return y
        add_to = getattr(self.side, "add_to", None)  # a fused form, where the branch has one
        return add_to(y, x) if add_to else y + self.side(x).to(y.dtype)

    def lora_parameters(self) -> list[nn.Parameter]:
        """LoRA factors plus the side branch's parameters."""
        side = [] if self.side is None else list(self.side.parameters())
        return [self.lora_a, self.lora_b, *side]


def lsq_qweight(
    w: torch.Tensor, delta: torch.Tensor, zero: torch.Tensor, spec: LayerSpec
) -> QWeight:
    """Integer codes of ``w [N, K]`` under learned LSQ ``delta``/``zero`` (as in training)."""
    bits, sym = spec.w_bits, spec.w_symmetric
    scale = delta.detach().float().abs().clamp_min(EPS)
    zero = zero.detach().float()
    grouped = group_view(w.detach().float(), spec.w_granularity, spec.group_size)
    codes = quantize_codes(grouped, scale, zero, bits, sym)
    off = 0 if sym else 2 ** (bits - 1)
    shape = (1, 1) if spec.w_granularity == "tensor" else (w.shape[0], -1)
    return QWeight(
        (codes - off).reshape(w.shape).to(torch.int8),
        scale.reshape(shape),
        (zero - off).reshape(shape),
    )


def merge(layer: QALoRALinear) -> tuple[torch.Tensor, QWeight | None]:
    """Deployment form of a trained layer: merged weight ``W + B A`` and its LSQ codes."""
    w = layer.merged_weight().detach()
    if layer.lsq is None:
        return w, None
    return w, lsq_qweight(w, layer.lsq.delta, layer.lsq.zero, layer.spec)


def mse_loss(out: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean squared error against the FP output (EfficientDM's distillation loss)."""
    loss = F.mse_loss(out.float(), ref.float())
    return loss, {"mse": float(loss.detach())}


@dataclass(frozen=True)
class QALoRAConfig(QuantConfig):
    """Distillation settings. ``iters`` AdamW steps of ``calib_batch_size`` rows; LoRA rank
    ``lora_rank`` (capped by the layer width); ``lr_lora`` for LoRA (and side branches),
    ``lr_delta`` for the LSQ steps (the released Q-VDiT code's 1e-5 / 1e-6, methods.md
    §2.9); ``warmup_iters`` linear warm-up steps before the cosine schedule; ``holdout``:
    share of the calibration prompts kept out of training, on whose rows (at most
    ``eval_rows``) the loss is evaluated before training and every ``eval_every`` steps;
    ``keep_best``: end in the best held-out state, the start state when none beats it (off:
    the last state); ``mse_init``: weight steps start from an MSE clip search;
    ``train_act_quant``: activations fake-quantized during training; ``seed`` for the LoRA
    init, the held-out prompts and the batch order. Version 2: released learning rates,
    warm-up, held-out selection and guard."""

    calib_batch_size: int = 2
    iters: int = 400  # the mini model's held-out loss settles by ~400 (distill_curve)
    lora_rank: int = 32
    lr_lora: float = 1e-5
    lr_delta: float = 1e-6
    weight_decay: float = 0.01
    warmup_iters: int = 10
    holdout: float = 0.25
    eval_every: int = 20
    eval_rows: int = 16
    keep_best: bool = True
    mse_init: bool = True
    train_act_quant: bool = True
    seed: int = 0
    version: str = "2"

    def __post_init__(self) -> None:
        if self.a_granularity != "token":
            raise ValueError(
                "a_granularity: QALoRA distillation uses dynamic per-token activations"
            )
        if self.iters < 0 or self.lora_rank < 1:
            raise ValueError("iters must be >= 0 and lora_rank >= 1")
        for f in ("lr_lora", "lr_delta", "weight_decay", "warmup_iters"):
            if getattr(self, f) < 0:
                raise ValueError(f"{f}: must be >= 0, got {getattr(self, f)}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout: must lie in [0, 1), got {self.holdout}")
        for f in ("eval_every", "eval_rows"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f}: must be >= 1, got {getattr(self, f)}")
        super().__post_init__()

    def distill_settings(self) -> DistillSettings:
        """The loop's settings."""
        return DistillSettings(
            iters=self.iters,
            batch_size=self.calib_batch_size,
            lr_lora=self.lr_lora,
            lr_delta=self.lr_delta,
            weight_decay=self.weight_decay,
            warmup_iters=self.warmup_iters,
            holdout=self.holdout,
            eval_every=self.eval_every,
            eval_rows=self.eval_rows,
            keep_best=self.keep_best,
            seed=self.seed,
        )


class QALoRAQuantizer(BaseQuantizer):
    """Distillation-calibrated quantizer: QALoRA + LSQ trained end to end, then merged."""

    name = "qalora"
    config_cls = QALoRAConfig
    smoke_params: ClassVar[dict[str, Any]] = {"iters": 3}
    stochastic = True  # LoRA init, held-out prompts, batch order

    # ---- hooks for methods built on this ----------------------------------------------------
    def _prepare(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> dict[str, Any]:
        """Statistics gathered on the FP model before training (none here)."""
        return {}

    def _side_branch(
        self, name: str, linear: nn.Linear, plan: LayerPlan, target: QuantTarget, prep: dict
    ) -> nn.Module | None:
        """An FP branch added to the layer output (none here; Q-VDiT's TQE)."""
        return None

    def _loss(self, target: QuantTarget) -> LossFn:
        """The distillation loss (MSE here)."""
        return mse_loss

    def _train_act_quant(self) -> bool:
        return self.config.train_act_quant

    # ---- calibration -----------------------------------------------------------------------
    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        cfg = self.config
        t0 = time.perf_counter()
        prep = self._prepare(target, calib, plans)
        gen = torch.Generator().manual_seed(cfg.seed)
        layers = {}
        for name, plan in plans.items():
            linear = target.module.get_submodule(name)
            if plan.spec is None or not isinstance(linear, nn.Linear):
                continue
            side = self._side_branch(name, linear, plan, target, prep)
            layers[name] = QALoRALinear(
                linear, plan.spec, cfg.lora_rank, gen, cfg.mse_init, self._train_act_quant(), side
            )
        result = distill(
            target,
            calib,
            layers,
            self._loss(target),
            cfg.distill_settings(),
            desc=f"{self.name} W{cfg.w_bits}A{cfg.a_bits}",
        )
        tensors: dict[str, torch.Tensor] = {}
        for name, layer in layers.items():
            tensors[f"{name}.lora_a"] = layer.lora_a.detach().clone()
            tensors[f"{name}.lora_b"] = layer.lora_b.detach().clone()
            if layer.lsq is not None:
                tensors[f"{name}.w_delta"] = layer.lsq.delta.detach().clone()
                tensors[f"{name}.w_zero"] = layer.lsq.zero.detach().clone()
            if layer.side is not None:
                for k, v in layer.side.state_dict().items():
                    tensors[f"{name}.side.{k}"] = v.detach().clone()
        history = result.train
        meta: dict[str, Any] = {
            "iters": len(history),
            "calib_seconds": round(time.perf_counter() - t0, 2),
        }
        if history:
            k = max(1, len(history) // 10)
            meta["loss_first"] = _mean(history[:k])
            meta["loss_last"] = _mean(history[-k:])
            meta["distill"] = result.summary
            meta["record"] = ["distill"]  # meta keys the runner copies into the run record
        return QuantState(tensors=tensors, meta=meta)

    # ---- deployment --------------------------------------------------------------------------
    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        """Merge the LoRA into the weight, quantize with the learned steps, attach the side."""
        dev = linear.weight.device
        t = {k: v.to(dev) for k, v in state.tensors.items() if k.startswith(f"{name}.")}
        w = linear.weight.detach().float() + t[f"{name}.lora_b"] @ t[f"{name}.lora_a"]
        qw = None
        if plan.spec.w_bits < 16:
            qw = lsq_qweight(w, t[f"{name}.w_delta"], t[f"{name}.w_zero"], plan.spec)
        mode = self.config.kernel
        variants = [QuantVariant(plan.spec, mode, w.to(linear.weight.dtype), qw)]
        if plan.early is not None:  # the LoRA fits the low-bit grid: early steps get RTN of W
            variants.append(QuantVariant(plan.early, mode, linear.weight.detach()))
        prefix = f"{name}.side."
        side = {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}
        return self._make_layer(name, linear, variants, side, state)

    def _make_layer(
        self,
        name: str,
        linear: nn.Linear,
        variants: list[QuantVariant],
        side: dict[str, torch.Tensor],
        state: QuantState,
    ) -> QuantLinear:
        """The deployed layer (a plain ``QuantLinear`` here)."""
        return QuantLinear(linear, variants, early_steps=self.config.early_steps)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(sum(r[k] for r in rows) / len(rows), 6) for k in rows[0]}


__all__ = [
    "QALoRAConfig",
    "QALoRALinear",
    "QALoRAQuantizer",
    "kaiming_uniform",
    "lsq_qweight",
    "merge",
    "mse_loss",
]
