"""The end-to-end distillation loop of the QALoRA methods (EfficientDM, Q-VDiT), guarded.

:func:`distill` trains the LoRA factors, side branches and LSQ weight steps of
:class:`~quantizers.core.lora.QALoRALinear` layers against the FP outputs of a
:class:`~vqbench.types.CalibrationSet` with AdamW under a linear warm-up and a cosine
schedule (:func:`lr_factor`). A share of the calibration prompts is held out of training
(:func:`split_holdout`); the distillation loss on (at most ``eval_rows`` of) those rows is
evaluated before training, every ``eval_every`` iterations and at the end, with the layers as
they deploy (activations quantized). The best evaluated state is restored at the end; when
no state beats the one training started from, that start state is kept (the guard), so
distillation never ends worse on held-out data than it began. With nothing held out
(``holdout = 0``, or a set of one row) the same selection runs on the training rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from quantizers.core.quantizer import held_weights
from vqbench.types import CalibrationSet, QuantTarget

if TYPE_CHECKING:
    from quantizers.core.lora import LossFn, QALoRALinear


@dataclass(frozen=True)
class DistillSettings:
    """Loop settings (see :class:`~quantizers.core.lora.QALoRAConfig` for their meaning)."""

    iters: int
    batch_size: int
    lr_lora: float
    lr_delta: float
    weight_decay: float = 0.01
    warmup_iters: int = 0
    holdout: float = 0.0
    eval_every: int = 20
    eval_rows: int = 16
    keep_best: bool = True
    seed: int = 0


@dataclass
class DistillResult:
    """Per-iteration training losses, the held-out curve ``[(iteration, loss)]`` (iteration 0
    is the start state) and the JSON-able summary that goes into ``QuantState.meta``
    (``curve``: held-out; ``train_curve``: mean training loss of each evaluation window;
    ``train_parts_mean``: each loss part's mean over training, unweighted)."""

    train: list[dict[str, float]] = field(default_factory=list)
    heldout: list[tuple[int, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def lr_factor(step: int, iters: int, warmup: int) -> float:
    """Learning-rate multiplier of the 0-based ``step``: ``(step + 1) / warmup`` for the first
    ``warmup`` steps, then a cosine from 1 to 0 over the remaining ``iters - warmup`` steps
    (``warmup = 0`` is ``CosineAnnealingLR(T_max=iters, eta_min=0)``)."""
    warmup = min(warmup, iters)
    if step >= iters:  # the scheduler's call after the last step
        return 0.0
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (iters - warmup)))


def split_holdout(
    calib: CalibrationSet, holdout: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``(train, held_out)``: ``round(holdout * prompts)`` prompts (at least one,
    and at least one left to train on), drawn with ``seed``, are held out with all their
    rows. A set of one prompt is split by rows instead; ``holdout = 0`` or a set that cannot
    be split holds nothing out."""
    rows = torch.arange(len(calib))
    keys = calib.prompt_index.long()
    groups = keys.unique()
    if len(groups) < 2:
        keys, groups = rows, rows
    if holdout <= 0 or len(groups) < 2:
        return rows, rows[:0]
    n = min(len(groups) - 1, max(1, round(holdout * len(groups))))
    perm = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed))
    held = torch.isin(keys, groups[perm[:n]])
    return rows[~held], rows[held]


def evenly(idx: torch.Tensor, k: int) -> torch.Tensor:
    """At most ``k`` evenly spaced entries of ``idx`` (all of them when it has ``<= k``)."""
    if len(idx) <= k:
        return idx
    return idx[torch.linspace(0, len(idx) - 1, k).round().long().unique()]


def evaluate(
    target: QuantTarget,
    rows: CalibrationSet,
    loss_fn: LossFn,
    layers: dict[str, QALoRALinear],
    batch_size: int,
) -> float:
    """Row-weighted mean distillation loss over ``rows`` with the (swapped-in) ``layers`` as
    they deploy: activations quantized whatever the training setting."""
    flags = {n: layer.act_quant for n, layer in layers.items()}
    total, count = 0.0, 0
    try:
        for layer in layers.values():
            layer.act_quant = True
        with held_weights(layers.values()):
            for batch in rows.batches(batch_size):
                out = target.forward(batch)
                loss, _ = loss_fn(out, batch["outputs"].to(out.device, out.dtype))
                b = int(batch["latents"].shape[0])
                total, count = total + float(loss) * b, count + b
    finally:
        for n, layer in layers.items():
            layer.act_quant = flags[n]
    return total / max(count, 1)


def distill(
    target: QuantTarget,
    calib: CalibrationSet,
    layers: dict[str, QALoRALinear],
    loss_fn: LossFn,
    cfg: DistillSettings,
    desc: str = "distill",
) -> DistillResult:
    """Train ``layers`` (swapped into ``target.module`` meanwhile) end to end.

    Each iteration draws ``batch_size`` random training rows, runs ``target.forward`` and
    minimises ``loss_fn(out, fp_out)`` with AdamW (LoRA and side parameters at ``lr_lora``,
    LSQ steps at ``lr_delta``) under :func:`lr_factor`. The held-out loss decides which
    state the layers end in (best, or start when none is better; the last one when
    ``keep_best`` is off). Every other parameter is frozen and the original linears are
    restored afterwards.
    """
    result = DistillResult()
    if cfg.iters <= 0 or not layers:
        return result
    module = target.module
    frozen = {p: p.requires_grad for p in module.parameters()}
    originals = {n: module.get_submodule(n) for n in layers}
    train_idx, held_idx = split_holdout(calib, cfg.holdout, cfg.seed)
    eval_idx = evenly(held_idx if len(held_idx) else train_idx, cfg.eval_rows)
    eval_rows = calib.subset(eval_idx)
    lora = [p for layer in layers.values() for p in layer.lora_parameters()]
    deltas = [layer.lsq.delta for layer in layers.values() if layer.lsq is not None]
    params = lora + deltas
    try:
        for p in frozen:
            p.requires_grad_(False)
        for n, layer in layers.items():
            module.set_submodule(n, layer)
        for p in params:
            p.requires_grad_(True)
        groups = [{"params": lora, "lr": cfg.lr_lora}]
        if deltas:
            groups.append({"params": deltas, "lr": cfg.lr_delta})
        opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay, fused=True)  # 1 kernel
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: lr_factor(i, cfg.iters, cfg.warmup_iters)
        )

        def held_out() -> float:
            return evaluate(target, eval_rows, loss_fn, layers, cfg.batch_size)

        start = [p.detach().clone() for p in params]
        result.heldout.append((0, held_out()))
        best, best_iter, best_loss = start, 0, result.heldout[0][1]
        gen = torch.Generator().manual_seed(cfg.seed)
        bs = min(cfg.batch_size, len(train_idx))
        bar = tqdm(range(cfg.iters), desc=desc, disable=None, leave=False)
        diverged = None
        with torch.enable_grad(), bar:
            for it in bar:
                idx = train_idx[torch.randperm(len(train_idx), generator=gen)[:bs]]
                batch = next(calib.subset(idx).batches(bs))
                out = target.forward(batch)
                loss, parts = loss_fn(out, batch["outputs"].to(out.device, out.dtype))
                if not math.isfinite(float(loss.detach())):  # nothing left to learn from
                    diverged = it + 1
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                result.train.append({"loss": float(loss.detach()), **parts})
                bar.set_postfix(loss=f"{result.train[-1]['loss']:.3g}")
                if (it + 1) % cfg.eval_every == 0 or it + 1 == cfg.iters:
                    result.heldout.append((it + 1, held_out()))
                    if result.heldout[-1][1] < best_loss:
                        best_iter, best_loss = result.heldout[-1]
                        best = [p.detach().clone() for p in params]
        guard = best_iter == 0
        if cfg.keep_best:
            with torch.no_grad():
                for p, v in zip(params, best, strict=True):
                    p.copy_(v)
    finally:
        for n, lin in originals.items():
            module.set_submodule(n, lin)
        for p, flag in frozen.items():
            p.requires_grad_(flag)
    result.summary = {
        "start_loss": _finite(result.heldout[0][1]),
        "best_loss": _finite(best_loss),
        "best_iter": best_iter,
        "final_loss": None if diverged else _finite(result.heldout[-1][1]),
        "diverged_at": diverged,
        "guard_fired": guard and cfg.keep_best,
        "restored": ("start" if guard else "best") if cfg.keep_best else "last",
        "train_rows": len(train_idx),
        "heldout_rows": len(held_idx),
        "eval_rows": len(eval_idx),
        "curve": [[i, _finite(v)] for i, v in result.heldout],
        "train_curve": _windows(result.train, [i for i, _ in result.heldout]),
        "train_parts_mean": _parts_mean(result.train),
    }
    return result


def _parts_mean(train: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean over the training iterations of each loss part (e.g. Q-VDiT's ``mse``, ``tmd``)."""
    keys = [k for k in (train[0] if train else {}) if k != "loss"]
    return {k: _finite(sum(r[k] for r in train) / len(train)) for k in keys}


def _finite(v: float) -> float | None:
    """``v`` to 6 significant digits for JSON, ``None`` when not finite."""
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _windows(train: list[dict[str, float]], ends: list[int]) -> list[list[float | None]]:
    """``[end, mean training loss of the iterations since the previous end]`` per end > 0."""
    out: list[list[float | None]] = []
    for lo, hi in zip(ends, ends[1:], strict=False):
        rows = [r["loss"] for r in train[lo:hi]]
        out.append([hi, _finite(sum(rows) / len(rows)) if rows else None])
    return out
