"""S2Q-VDiT (Feng et al., NeurIPS 2025): SDS data selection + STD-weighted block reconstruction.

Calibration (methods.md §3.7):

1. SDS picks ``num_samples`` pool units (:mod:`quantizers.s2q_vdit.sds`); the pool, the
   saliences and the selection are stored in the state (``sds.*`` tensors, ``meta["sds"]``);
2. FP block inputs/outputs of the selected rows are captured; STD token weights come from the
   FP attention column sums, once per block call (:mod:`quantizers.s2q_vdit.std`);
3. per block (FP inputs, as FlatQuant), every quantized linear learns a channel scale, a
   Kronecker affine transform and weight/activation clip ratios (AdamW, cosine) against the
   STD-weighted block-output MSE (:mod:`quantizers.s2q_vdit.transform`);
4. GPTQ on the folded weights ``W diag(c) P^-T`` with the transformed Hessian.

At inference each linear runs ``clip(x diag(c)^-1 P)`` online, then symmetric per-token
activation and per-channel weight quantization.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from quantizers.core.attention import self_attention_modules
from quantizers.core.base import BaseQuantizer, QuantConfig
from quantizers.core.calib import capture_block_io, collect_hessians
from quantizers.core.gptq import gptq_quantize
from quantizers.core.linear import QuantLinear, QuantVariant, quantize_weight
from quantizers.core.policy import LayerPlan
from quantizers.core.quantizer import held_weights
from quantizers.gptq.gptq import stored_qweight
from quantizers.s2q_vdit.sds import SDS_MODES, Selection, select
from quantizers.s2q_vdit.std import block_token_weights, output_tensors
from quantizers.s2q_vdit.transform import (
    OnlineTransform,
    TrainableLinear,
    fold_weight,
    init_factor,
    kron_dims,
    transform_hessian,
)
from vqbench.types import CalibrationSet, QuantState, QuantTarget, TokenLayout

logger = logging.getLogger(__name__)
PARAMS = ("c", "f0", "f1", "w_clip", "a_clip")


@dataclass(frozen=True)
class S2QConfig(QuantConfig):
    """S2Q-VDiT settings (README.md explains each choice).

    SDS: ``sds`` (hessian | stratified | diffusion | quant | random | uniform), ``sds_bins``
    (step ranges of ``stratified``: top K / bins units in each), ``num_samples`` K,
    ``sds_feature`` (x_t for C_quant: block_input | latent), ``sds_norm`` (spectral |
    frobenius), ``sds_cfg_pairs`` (joint: a cond/uncond pair is one sample; separate).
    STD: ``std`` (False: lambda = 1), ``lambda_min``, ``attn_chunk`` (queries per chunk).
    Reconstruction: ``epochs`` over the captured block calls, ``lr`` (scale + transform),
    ``clip_lr``, ``transform_init`` (rotation | identity), ``clip_init`` (logit),
    ``max_block_bytes`` for captured block I/O; ``gptq``/``damp``; ``hessians``: GPTQ's
    Hessians from the whole calibration ``pool`` (the data the GPTQ baseline uses) or the
    ``selected`` rows only (version 1); ``keep_best``: each block ends in its best
    evaluated state (before training or after an epoch; off: the last); ``seed``.
    Version 2: pool Hessians and ``keep_best``.
    """

    w_symmetric: bool = True
    a_symmetric: bool = True
    sds: str = "hessian"
    sds_bins: int = 4
    num_samples: int = 40
    sds_feature: str = "block_input"
    sds_norm: str = "spectral"
    sds_cfg_pairs: str = "joint"
    std: bool = True
    lambda_min: float = 0.5
    attn_chunk: int = 1024
    epochs: int = 3
    lr: float = 5e-3
    clip_lr: float = 5e-2
    transform_init: str = "rotation"
    clip_init: float = 4.0
    max_block_bytes: int = 1024 * 2**20
    keep_best: bool = True
    gptq: bool = True
    hessians: str = "pool"
    damp: float = 0.01
    seed: int = 0
    version: str = "2"

    def __post_init__(self) -> None:
        if self.a_granularity != "token":
            raise ValueError("a_granularity: s2q_vdit uses dynamic per-token activations")
        if self.w_granularity != "channel":
            raise ValueError("w_granularity: s2q_vdit uses per-channel weights")
        choices = {
            "sds": SDS_MODES,
            "sds_feature": ("block_input", "latent"),
            "sds_norm": ("spectral", "frobenius"),
            "sds_cfg_pairs": ("joint", "separate"),
            "transform_init": ("rotation", "identity"),
            "hessians": ("pool", "selected"),
        }
        for f, allowed in choices.items():
            if getattr(self, f) not in allowed:
                raise ValueError(f"{f}: must be one of {allowed}, got {getattr(self, f)!r}")
        if not 0 <= self.lambda_min <= 1:
            raise ValueError(f"lambda_min: must lie in [0, 1], got {self.lambda_min}")
        if self.num_samples < 1 or self.attn_chunk < 1 or self.sds_bins < 1 or self.epochs < 0:
            raise ValueError("num_samples, attn_chunk, sds_bins must be >= 1; epochs >= 0")
        if self.lr <= 0 or self.clip_lr <= 0 or not 0 <= self.damp < 1:
            raise ValueError("lr, clip_lr must be > 0; damp in [0, 1)")
        super().__post_init__()


def std_loss(
    q: list[torch.Tensor], fp: list[torch.Tensor], weights: list[torch.Tensor | None]
) -> torch.Tensor:
    """``sum_outputs mean_j lambda_j * mean_c (q - fp)^2`` (lambda = 1 where None)."""
    total = q[0].new_zeros((), dtype=torch.float32)
    for a, b, w in zip(q, fp, weights, strict=True):
        err = (a.float() - b.float()).square().mean(-1)
        total = total + (err.mean() if w is None else (w * err).mean())
    return total


def query_layouts(target: QuantTarget, attn: dict[str, nn.Module]) -> dict[str, TokenLayout]:
    """Layout of each attention module's query-projection input."""
    out = {}
    for name in attn:
        q = next(f"{name}.{p}" for p in ("to_q", "q") if f"{name}.{p}" in target.roles)
        out[name] = target.layouts.get(q, TokenLayout("none"))
    return out


class S2QVDiTQuantizer(BaseQuantizer):
    """SDS + STD + FlatQuant-style block reconstruction + GPTQ (W4A6 and W4A4 included)."""

    name = "s2q_vdit"
    config_cls = S2QConfig
    smoke_params: ClassVar[dict[str, Any]] = {"epochs": 1, "num_samples": 4}
    stochastic = True  # batch order, random orthogonal factors of non-power-of-2 widths

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        cfg = self.config
        sel = select(
            target,
            calib,
            cfg.num_samples,
            cfg.sds,
            cfg.sds_feature,
            cfg.sds_norm,
            cfg.sds_cfg_pairs,
            cfg.seed,
            cfg.calib_batch_size,
            cfg.sds_bins,
        )
        sub = calib.subset(sel.rows)
        tensors, meta = _selection_record(sel, calib)
        names = [n for n, p in plans.items() if p.spec is not None]
        learned = self._reconstruct(target, sub, plans, names, meta)
        if cfg.keep_best and cfg.epochs and meta.get("recon"):  # the epoch each block ended in
            meta["recon_kept_epoch"] = {b: r.get("kept_epoch") for b, r in meta["recon"].items()}
            meta["record"].append("recon_kept_epoch")
        h_rows = calib if cfg.hessians == "pool" else sub  # pool: the data plain GPTQ uses
        hessians = collect_hessians(target, h_rows, names, cfg.calib_batch_size) if cfg.gptq else {}
        for n in names:
            params = learned.get(n) or self._default_params(plans[n])
            tensors.update({f"{n}.s2q.{k}": v.float() for k, v in params.items()})
            if n not in hessians:
                continue
            w = fold_weight(target.module.get_submodule(n).weight.detach().float(), *_cff(params))
            h = transform_hessian(hessians[n], *_cff(params))
            for i, spec in enumerate(s for s in (plans[n].spec, plans[n].early) if s is not None):
                if spec.w_bits >= 16:
                    continue
                clip = params["w_clip"][:, None] if i == 0 else 1.0
                qw = gptq_quantize(w, h, spec, cfg.damp, clip)
                tensors[f"{n}.v{i}.codes"], tensors[f"{n}.v{i}.scale"] = qw.codes, qw.scale
                tensors[f"{n}.v{i}.zero"] = qw.zero
        return QuantState(tensors=tensors, meta=meta)

    def _default_params(self, plan: LayerPlan) -> dict[str, torch.Tensor]:
        """Untrained transform (layers outside ``target.blocks``): c = 1, initial P, no clip."""
        a, b = kron_dims(plan.in_features)
        init, seed = self.config.transform_init, self.config.seed
        return {
            "c": torch.ones(plan.in_features),
            "f0": init_factor(a, init, seed),
            "f1": init_factor(b, init, seed + 1),
            "w_clip": torch.ones(plan.out_features),
            "a_clip": torch.tensor(1.0),
        }

    def _reconstruct(
        self,
        target: QuantTarget,
        calib: CalibrationSet,
        plans: dict[str, LayerPlan],
        names: list[str],
        meta: dict[str, Any],
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Train the transforms block by block; returns ``name -> learned params``."""
        cfg = self.config
        blocks = [b for b in target.blocks if any(n.startswith(b + ".") for n in names)]
        if not blocks:
            return {}
        io = capture_block_io(
            target, calib, blocks, cfg.max_block_bytes, cfg.calib_batch_size, cfg.seed
        )
        flags = {p: p.requires_grad for p in target.module.parameters()}
        target.module.requires_grad_(False)
        learned: dict[str, dict[str, torch.Tensor]] = {}
        meta["recon"] = {}
        try:
            for b in blocks:
                lin = [n for n in names if n.startswith(b + ".")]
                learned.update(self._train_block(target, b, lin, plans, io[b], meta["recon"]))
        finally:
            for p, f in flags.items():
                p.requires_grad_(f)
        return learned

    def _train_block(
        self,
        target: QuantTarget,
        block_name: str,
        lin: list[str],
        plans: dict[str, LayerPlan],
        io: Any,
        record: dict[str, Any],
    ) -> dict[str, dict[str, torch.Tensor]]:
        cfg = self.config
        block = target.module.get_submodule(block_name)
        calls = list(zip(io.args, io.kwargs, io.outputs, strict=True))
        weights: list[list[torch.Tensor | None]] = []
        attn = self_attention_modules(target, block_name) if cfg.std else {}
        lays = query_layouts(target, attn)
        for args, kwargs, out in calls:
            if attn:
                w = block_token_weights(
                    block, attn, lays, args, kwargs, cfg.lambda_min, cfg.attn_chunk
                )
            else:
                w = [None] * len(output_tensors(out))
            weights.append(w)
        originals = {n: target.module.get_submodule(n) for n in lin}
        wrappers = {}
        for i, n in enumerate(lin):
            s = plans[n].spec
            wrappers[n] = TrainableLinear(
                originals[n], s.w_bits, s.a_bits, s.w_symmetric, s.a_symmetric,
                cfg.transform_init, cfg.clip_init, cfg.seed + 2 * i,
            )  # fmt: skip
            target.module.set_submodule(n, wrappers[n])
        try:
            losses = self._optimise(block, list(wrappers.values()), calls, weights)
        finally:
            for n, m in originals.items():
                target.module.set_submodule(n, m)
        matched = sum(x is not None for w in weights for x in w)
        record[block_name] = {
            "calls": len(calls),
            "attention_modules": sorted(attn),
            "std_weighted_outputs": [matched, sum(len(w) for w in weights)],
            **losses,
        }
        return {n: m.export() for n, m in wrappers.items()}

    def _optimise(
        self,
        block: nn.Module,
        wrappers: list[TrainableLinear],
        calls: list[tuple],
        weights: list[list[torch.Tensor | None]],
    ) -> dict[str, Any]:
        """AdamW + cosine over ``epochs`` passes of the block calls. With ``keep_best`` the
        block loss over all calls is evaluated before training and after every epoch, and
        the block ends in the best evaluated state (the initial one when training never
        beats it). Returns the per-epoch training and evaluated losses and the kept epoch."""
        cfg = self.config
        params = [p for m in wrappers for p in m.transform_params() + m.clip_params()]
        groups = [
            {"params": [p for m in wrappers for p in m.transform_params()], "lr": cfg.lr},
            {"params": [p for m in wrappers for p in m.clip_params()], "lr": cfg.clip_lr},
        ]
        opt = torch.optim.AdamW(groups, weight_decay=0.0, fused=True)  # one kernel per step
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.epochs * len(calls), 1))
        gen = torch.Generator().manual_seed(cfg.seed)

        def block_loss() -> float:
            with held_weights(wrappers):
                total = sum(
                    float(std_loss(output_tensors(block(*a, **k)), output_tensors(o), weights[j]))
                    for j, (a, k, o) in enumerate(calls)
                )
            return total / max(len(calls), 1)

        history: list[float] = []
        evals = [block_loss()] if cfg.keep_best and cfg.epochs else []
        best = (evals[0], 0, [p.detach().clone() for p in params]) if evals else None
        with torch.enable_grad():
            for epoch in range(cfg.epochs):
                total = 0.0
                for j in torch.randperm(len(calls), generator=gen).tolist():
                    args, kwargs, out = calls[j]
                    q = output_tensors(block(*args, **kwargs))
                    loss = std_loss(q, output_tensors(out), weights[j])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach())
                history.append(total / max(len(calls), 1))
                if best is not None:
                    evals.append(block_loss())
                    if evals[-1] < best[0]:
                        best = (evals[-1], epoch + 1, [p.detach().clone() for p in params])
        if not history:
            return {}
        out: dict[str, Any] = {
            "loss_first_epoch": history[0],
            "loss_last_epoch": history[-1],
            "loss": history,
        }
        if best is not None:
            with torch.no_grad():
                for p, v in zip(params, best[2], strict=True):
                    p.copy_(v)
            out.update(eval_loss=evals, kept_epoch=best[1])
        return out

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        t = state.tensors
        params = {k: t[f"{name}.s2q.{k}"] for k in PARAMS}
        act_clip = params["a_clip"] if plan.spec.a_bits < 16 else None
        transform = OnlineTransform(*_cff(params), act_clip)
        w = fold_weight(linear.weight.detach().float(), *_cff(params)).to(linear.weight.dtype)
        variants = []
        for i, spec in enumerate(s for s in (plan.spec, plan.early) if s is not None):
            qw = stored_qweight(name, i, state)
            if qw is None and spec.w_bits < 16:
                qw = quantize_weight(w, spec, params["w_clip"][:, None] if i == 0 else 1.0)
            variants.append(QuantVariant(spec, self.config.kernel, w, qw))
        return QuantLinear(linear, variants, transform, early_steps=self.config.early_steps)


def _cff(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return params["c"], params["f0"], params["f1"]


def _selection_record(
    sel: Selection, calib: CalibrationSet
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State tensors and JSON meta describing the SDS pool and the chosen samples."""
    tensors = {
        "sds.unit_rows": sel.unit_rows,
        "sds.c_diff": sel.c_diff,
        "sds.c_quant": sel.c_quant,
        "sds.score": sel.score,
        "sds.selected_units": sel.units,
        "sds.selected_rows": sel.rows,
    }
    chosen = [
        {
            "row": r,
            "prompt_index": int(calib.prompt_index[r]),
            "step_index": int(calib.step_index[r]),
            "timestep": float(calib.timesteps[r]),
            "uncond": bool(calib.is_uncond[r]),
        }
        for r in sel.rows.tolist()
    ]
    steps: dict[str, int] = {}
    for c in chosen:
        steps[str(c["step_index"])] = steps.get(str(c["step_index"]), 0) + 1
    meta = {
        "sds": {"pool_rows": len(calib), "pool_units": len(sel.unit_rows), "selected": chosen},
        "sds_steps": dict(sorted(steps.items(), key=lambda kv: int(kv[0]))),
        "record": ["sds_steps"],  # selected rows per sampling step, copied into the run record
    }
    return tensors, meta
