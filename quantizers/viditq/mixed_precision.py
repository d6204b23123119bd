"""ViDiT-Q's metric-decoupled mixed precision, with model-agnostic proxy metrics.

ViDiT-Q measures each layer group's sensitivity with the generation metric that group
affects (cross-attention: CLIPScore; temporal attention: FlowScore; spatial attention and
MLP: VQA), then gives the bit budget to the most sensitive layers. A quantizer cannot run
video metrics, so each group gets a proxy on the denoiser output ``y`` against FP ``y*``
(``e(a, b) = ||a - b||^2 / ||b||^2``):

- ``visual`` (spatial attention, MLP, any other role): ``e(y, y*)``;
- ``temporal`` (temporal attention): ``e`` of the frame differences ``y[f+1] - y[f]``
  (motion), through ``target.output_to_frames``;
- ``text`` (cross attention): ``e`` of the guidance direction ``y_cond - y_uncond`` of
  the same prompt and step (text alignment).

A proxy falls back to ``e(y, y*)`` when its structure is missing (no frames, no
cond/uncond pairs). Allocation: the group's share is its plain output error when the whole
group alone is quantized ("allocate across groups by MSE to FP"); a layer's score is its
group share times its share of the group's proxy sensitivity; layers are raised greedily by
score until ``fraction`` of the quantized weight parameters is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from quantizers.core.context import sampling_step
from quantizers.core.policy import LayerPlan
from vqbench.types import CalibrationSet, QuantTarget

logger = logging.getLogger(__name__)
GROUPS = {"cross_attn": "text", "temporal_attn": "temporal"}
EPS = 1e-12


def group_of(role: str) -> str:
    """Metric group of a layer role (``visual`` unless cross or temporal attention)."""
    return GROUPS.get(role, "visual")


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """``||y - ref||^2 / ||ref||^2``."""
    y, ref = y.double(), ref.double()
    return float(((y - ref) ** 2).sum() / (ref**2).sum().clamp_min(EPS))


def temporal_err(
    y: torch.Tensor, ref: torch.Tensor, to_frames: Callable[[torch.Tensor], torch.Tensor] | None
) -> float:
    """Relative error of frame-to-frame differences (``rel_err`` without frame structure)."""
    if to_frames is None:
        return rel_err(y, ref)
    fy, fr = to_frames(y), to_frames(ref)
    if fy.dim() < 2 or fy.shape[1] < 2:
        return rel_err(y, ref)
    return rel_err(fy.diff(dim=1), fr.diff(dim=1))


def guidance_pairs(calib: CalibrationSet) -> list[tuple[int, int]]:
    """``(cond_row, uncond_row)`` pairs of the same prompt and sampling step."""
    cond, uncond = {}, {}
    for i in range(len(calib)):
        key = (int(calib.prompt_index[i]), int(calib.step_index[i]))
        (uncond if bool(calib.is_uncond[i]) else cond).setdefault(key, i)
    return [(cond[k], uncond[k]) for k in sorted(cond) if k in uncond]


def guidance_err(y: torch.Tensor, ref: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Relative error of the guidance direction ``y_cond - y_uncond``."""
    if not pairs:
        return rel_err(y, ref)
    c = torch.tensor([p[0] for p in pairs])
    u = torch.tensor([p[1] for p in pairs])
    return rel_err(y[c] - y[u], ref[c] - ref[u])


def select_rows(calib: CalibrationSet, n: int) -> list[int]:
    """About ``n`` rows spread evenly over (prompt, step) groups, keeping cond/uncond together."""
    keys: dict[tuple[int, int], list[int]] = {}
    for i in range(len(calib)):
        keys.setdefault((int(calib.prompt_index[i]), int(calib.step_index[i])), []).append(i)
    groups = list(keys.values())
    per = max(len(g) for g in groups) if groups else 1
    k = min(len(groups), max(1, n // per))
    picks = torch.linspace(0, len(groups) - 1, k).round().long().unique().tolist()
    return sorted(i for j in picks for i in groups[j])


def forward_rows(target: QuantTarget, calib: CalibrationSet, batch_size: int) -> torch.Tensor:
    """Outputs on every row, each call inside ``sampling_step`` of its own step and timestep
    (so time-range and early-step variants behave as during sampling)."""
    outs: list[torch.Tensor | None] = [None] * len(calib)
    key = [(int(s), float(t)) for s, t in zip(calib.step_index, calib.timesteps, strict=True)]
    with torch.no_grad():
        for k in sorted(set(key)):
            rows = [i for i, kk in enumerate(key) if kk == k]
            sub = calib.subset(rows)
            with sampling_step(k[0], calib.num_steps, k[1]):
                got = torch.cat([target.forward(b).detach() for b in sub.batches(batch_size)])
            for r, o in zip(rows, got, strict=True):
                outs[r] = o
    return torch.stack(outs)


def decoupled_selection(
    target: QuantTarget,
    calib: CalibrationSet,
    plans: dict[str, LayerPlan],
    build: Callable[[str, nn.Linear, LayerPlan], nn.Module],
    fraction: float,
    bits: tuple[int, int],
    n_rows: int = 8,
    batch_size: int = 4,
) -> tuple[list[str], dict[str, float]]:
    """Layers to raise to ``bits`` and every candidate's score (see the module docstring)."""
    quantized = {n: p for n, p in plans.items() if p.spec is not None}
    cand = {
        n: p for n, p in quantized.items() if p.spec.w_bits < bits[0] or p.spec.a_bits < bits[1]
    }
    if fraction <= 0 or not cand:
        return [], {}
    sub = calib.subset(select_rows(calib, n_rows))
    ref = forward_rows(target, sub, batch_size)
    pairs = guidance_pairs(sub)
    metric = {
        "visual": lambda y: rel_err(y, ref),
        "temporal": lambda y: temporal_err(y, ref, target.output_to_frames),
        "text": lambda y: guidance_err(y, ref, pairs),
    }

    def quantized_output(names: list[str]) -> torch.Tensor:
        originals = {n: target.module.get_submodule(n) for n in names}
        try:
            for n, lin in originals.items():
                target.module.set_submodule(n, build(n, lin, quantized[n]))
            return forward_rows(target, sub, batch_size)
        finally:
            for n, lin in originals.items():
                target.module.set_submodule(n, lin)

    sens = {n: metric[group_of(p.role)](quantized_output([n])) for n, p in cand.items()}
    groups: dict[str, list[str]] = {}
    for n, p in cand.items():
        groups.setdefault(group_of(p.role), []).append(n)
    scores = {}
    for names in groups.values():
        share = rel_err(quantized_output(names), ref)
        total = sum(sens[n] for n in names)
        for n in names:
            scores[n] = share * (sens[n] / total if total > 0 else 1.0 / len(names))
    size = {n: p.in_features * p.out_features for n, p in quantized.items()}
    budget = fraction * sum(size.values())
    chosen, used = [], 0
    for n in sorted(scores, key=lambda n: (-scores[n], n)):
        if used + size[n] <= budget:
            chosen.append(n)
            used += size[n]
    logger.info("mixed precision: %d of %d layers to W%dA%d", len(chosen), len(cand), *bits)
    return sorted(chosen), scores
