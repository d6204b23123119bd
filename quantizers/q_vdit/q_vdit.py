"""Q-VDiT (Feng et al., ICML 2025): TQE + TMD on top of QALoRA distillation (methods.md §2).

Calibration is EfficientDM's end-to-end distillation (:mod:`quantizers.core.lora`) with two
additions: every quantized linear gets a TQE branch (:mod:`quantizers.q_vdit.tqe`), and the
loss is ``MSE + gamma * TMD`` (:mod:`quantizers.q_vdit.tmd`) on the true frames of the
denoiser output (``QuantTarget.output_to_frames``). ``mode`` picks the paper's equations or
the released code's choices; the README lists every difference.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.calib import run_calibration
from quantizers.core.linear import QuantLinear, QuantVariant
from quantizers.core.lora import LossFn, QALoRAConfig, QALoRAQuantizer, kaiming_uniform, mse_loss
from quantizers.core.policy import LayerPlan, resolve_plans
from quantizers.q_vdit.tmd import tmd_loss
from quantizers.q_vdit.tqe import FrameStats, TQEBranch, TQEQuantLinear
from vqbench.types import CalibrationSet, QuantState, QuantTarget, TokenLayout

logger = logging.getLogger(__name__)
MODES = ("paper", "code")
TMD_FRAMES = ("true", "chunks")


def output_frames(target: QuantTarget, out: torch.Tensor, how: str = "true") -> torch.Tensor:
    """Frames ``[B, F, ...]`` of a denoiser output for TMD: the adapter's true frames, or
    (``chunks``, the released code's quirk) the raw tensor cut into ``F`` contiguous pieces."""
    if target.output_to_frames is None:
        raise ValueError("TMD needs QuantTarget.output_to_frames")
    frames = target.output_to_frames(out)
    return frames if how == "true" else out.reshape(out.shape[0], frames.shape[1], -1)


@dataclass(frozen=True)
class QVDiTConfig(QALoRAConfig):
    """Q-VDiT settings on top of :class:`~quantizers.core.lora.QALoRAConfig`.

    - ``mode``: ``paper`` (M on every layer with frames, Eq.9 init, ``M_i`` scaling,
      activations quantized in training) or ``code`` (M on temporal attention only, ones
      init, ``1 + M_i`` scaling, FP activations in training);
    - ``tqe`` / ``frame_scale`` / ``tmd``: ablation switches (TQE branch, its M, the TMD
      loss); ``gamma``: TMD weight; ``tmd_frames``: ``true`` frames, or ``chunks`` (the
      code's reshape of the raw output into equal contiguous pieces);
    - ``mlp_w8a8``: the anchors' mixed precision, MLP linears at W8A8;
    - ``m_init_samples``: calibration rows for the Eq.9 statistics;
    - ``train_act_quant``: ``None`` follows the mode.
    """

    mode: str = "paper"
    tqe: bool = True
    frame_scale: bool = True
    tmd: bool = True
    gamma: float = 100.0
    tmd_frames: str = "true"
    mlp_w8a8: bool = False
    m_init_samples: int = 32
    train_act_quant: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {self.mode!r}")
        if self.tmd_frames not in TMD_FRAMES:
            raise ValueError(f"tmd_frames: must be one of {TMD_FRAMES}, got {self.tmd_frames!r}")
        if self.gamma < 0 or self.m_init_samples < 1:
            raise ValueError("gamma must be >= 0 and m_init_samples >= 1")
        super().__post_init__()


class QVDiTQuantizer(QALoRAQuantizer):
    """QALoRA + LSQ distillation with TQE branches and the MSE + gamma * TMD loss."""

    name = "q_vdit"
    config_cls = QVDiTConfig

    def plans(self, target: QuantTarget) -> dict[str, LayerPlan]:
        """The policy, with MLP linears at W8A8 first when ``mlp_w8a8`` (later rules win)."""
        cfg = self.config
        if cfg.mlp_w8a8:
            cfg = dataclasses.replace(cfg, role_bits=(("mlp", 8, 8), *cfg.role_bits))
        return resolve_plans(target, cfg)

    def _train_act_quant(self) -> bool:
        cfg = self.config
        return cfg.mode == "paper" if cfg.train_act_quant is None else cfg.train_act_quant

    def _m_layout(self, name: str, plan: LayerPlan, target: QuantTarget) -> TokenLayout | None:
        """The input layout of a layer that gets a per-frame scale M, else None."""
        cfg = self.config
        layout = target.layouts.get(name)
        if not (cfg.tqe and cfg.frame_scale) or layout is None or not layout.has_frames:
            return None
        return layout if cfg.mode == "paper" or plan.role == "temporal_attn" else None

    # ---- calibration -------------------------------------------------------------------
    def _prepare(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> dict[str, Any]:
        """Eq.9 statistics (paper mode) on FP inputs of every layer that gets an M."""
        cfg = self.config
        layouts = {
            n: lay
            for n, p in plans.items()
            if p.spec is not None and (lay := self._m_layout(n, p, target)) is not None
        }
        if cfg.mode != "paper" or not layouts:
            return {"m_layouts": layouts}
        stats = {
            n: FrameStats(lay, plans[n].spec.a_bits, plans[n].spec.a_symmetric)
            for n, lay in layouts.items()
        }
        k = min(cfg.m_init_samples, len(calib))
        rows = torch.linspace(0, len(calib) - 1, k).round().long().unique()
        run_calibration(
            target,
            calib.subset(rows),
            list(stats),
            lambda n, x, _b: stats[n].update(x),
            batch_size=cfg.calib_batch_size,
        )
        return {"m_layouts": layouts, "m_init": {n: s.m_init() for n, s in stats.items()}}

    def _side_branch(
        self, name: str, linear: nn.Linear, plan: LayerPlan, target: QuantTarget, prep: dict
    ) -> nn.Module | None:
        """A TQE branch (alpha Kaiming, beta zero, M from Eq.9 or ones) when ``tqe`` is on."""
        if not self.config.tqe:
            return None
        if "gen" not in prep:
            prep["gen"] = torch.Generator().manual_seed(self.config.seed + 1)
        n, k = linear.weight.shape
        alpha = kaiming_uniform(1, k, prep["gen"])[0]
        layout = prep["m_layouts"].get(name)
        m = None
        if layout is not None:
            m = prep.get("m_init", {}).get(name, torch.ones(layout.frames))
        branch = TQEBranch(alpha, torch.zeros(n), m, layout, residual=self.config.mode == "code")
        return branch.to(linear.weight.device)

    def _loss(self, target: QuantTarget) -> LossFn:
        """MSE + gamma * TMD on the output's true frames (MSE alone when TMD is off)."""
        cfg = self.config
        if not cfg.tmd or cfg.gamma == 0:
            self._tmd_status = "off"
            return mse_loss
        to_frames = target.output_to_frames
        if to_frames is None:
            logger.warning("q_vdit: target has no output_to_frames; TMD is off")
            self._tmd_status = "off: target has no output_to_frames"
            return mse_loss
        self._tmd_status = f"on ({cfg.tmd_frames} frames)"

        def loss(out: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            mse = F.mse_loss(out.float(), ref.float())
            how = cfg.tmd_frames
            tmd = tmd_loss(output_frames(target, out, how), output_frames(target, ref, how))
            return mse + cfg.gamma * tmd, {"mse": float(mse.detach()), "tmd": float(tmd.detach())}

        return loss

    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        state = super()._calibrate(target, calib, plans)
        layouts = {
            n: [lay.kind, lay.frames, lay.tokens_per_frame, lay.prefix]
            for n, p in plans.items()
            if p.spec is not None and (lay := self._m_layout(n, p, target)) is not None
        }
        state.meta.update(tmd=self._tmd_status, mode=self.config.mode, m_layouts=layouts)
        return state

    # ---- deployment ----------------------------------------------------------------------
    def _make_layer(
        self,
        name: str,
        linear: nn.Linear,
        variants: list[QuantVariant],
        side: dict[str, torch.Tensor],
        state: QuantState,
    ) -> QuantLinear:
        """A ``TQEQuantLinear`` carrying the trained branch (plain ``QuantLinear`` without)."""
        if not side:
            return super()._make_layer(name, linear, variants, side, state)
        layout = None
        if "m" in side:
            kind, frames, tokens, prefix = state.meta["m_layouts"][name]
            layout = TokenLayout(kind, frames, tokens, prefix)
        branch = TQEBranch(
            side["alpha"], side["beta"], side.get("m"), layout, self.config.mode == "code"
        ).to(linear.weight.device)
        for p in branch.parameters():
            p.requires_grad_(False)
        return TQEQuantLinear(linear, variants, branch, early_steps=self.config.early_steps)
