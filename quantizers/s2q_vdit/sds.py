"""Hessian-aware Salient Data Selection (S2Q-VDiT §3.2, Eq.3-8; methods.md §3.2).

Over a pool of calibration *units* (a row, or a cond/uncond pair of one prompt and step):

- ``C_diff(x_t) = ||x_t - x_{t-1}||^2 / ||x_t||^2`` with ``x_{t-1}`` the next captured latent
  of the same trajectory (the last captured step uses the previous one: backward difference);
- ``C_quant(x_t) = ||x_t^T x_t||`` (spectral norm = ``sigma_max(x_t)^2``, or Frobenius) of the
  token matrix ``x_t [n, d]``: the latent as tokens, or the hidden states entering the first
  block;
- both min-max normalised over the pool, multiplied, top-K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vqbench.types import CalibrationSet, QuantTarget

SDS_MODES = ("hessian", "stratified", "diffusion", "quant", "random", "uniform")


@dataclass
class Selection:
    """Pool units, their saliences and the chosen ones (all indices into the pool rows)."""

    unit_rows: torch.Tensor  # [U, 2] row ids of each unit (-1: none)
    c_diff: torch.Tensor  # [U]
    c_quant: torch.Tensor  # [U]
    score: torch.Tensor  # [U]
    units: torch.Tensor  # [K] chosen unit ids, best first
    rows: torch.Tensor  # chosen row ids, ascending


def minmax(x: torch.Tensor) -> torch.Tensor:
    """``(x - min) / (max - min)``; all zeros when the range is empty."""
    span = x.max() - x.min()
    return torch.zeros_like(x) if span <= 0 else (x - x.min()) / span


def gram_norm(x: torch.Tensor, norm: str = "spectral") -> torch.Tensor:
    """``||x^T x||`` of each token matrix ``x [N, n, d]`` (float64): spectral or Frobenius."""
    x = x.double()
    g = x.transpose(-1, -2) @ x
    if norm == "spectral":
        return torch.linalg.eigvalsh(g)[..., -1]
    if norm == "frobenius":
        return torch.linalg.matrix_norm(g, "fro")
    raise ValueError(f"sds_norm: must be 'spectral' or 'frobenius', got {norm!r}")


def diffusion_salience(calib: CalibrationSet) -> torch.Tensor:
    """``C_diff`` per row: relative squared change to the next latent of its trajectory."""
    x = calib.latents.reshape(len(calib), -1).double()
    out = torch.zeros(len(calib), dtype=torch.float64)
    keys = torch.stack([calib.prompt_index.long(), calib.is_uncond.long()], 1)
    for key in keys.unique(dim=0):
        rows = torch.nonzero((keys == key).all(1)).flatten()
        rows = rows[torch.argsort(calib.step_index[rows], stable=True)]
        for i, r in enumerate(rows.tolist()):
            if len(rows) < 2:
                break
            other = rows[i + 1] if i + 1 < len(rows) else rows[i - 1]
            out[r] = (x[r] - x[other]).square().sum() / x[r].square().sum().clamp_min(1e-30)
    return out


def token_matrices(
    target: QuantTarget, calib: CalibrationSet, feature: str, batch_size: int
) -> list[torch.Tensor]:
    """Per-row token matrices ``[n, d]``: the latent as tokens or the first block's input."""
    if feature == "latent":
        lat = calib.latents
        if target.output_to_frames is not None:
            tok = target.output_to_frames(lat)
            return list(tok.reshape(len(calib), -1, tok.shape[-1]))
        return list(lat.reshape(len(calib), -1, lat.shape[-1]))
    if feature != "block_input":
        raise ValueError(f"sds_feature: must be 'latent' or 'block_input', got {feature!r}")
    if not target.blocks:
        raise ValueError("sds_feature: 'block_input' needs target.blocks")
    block = target.module.get_submodule(target.blocks[0])
    seen: list[torch.Tensor] = []

    def hook(_m: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        seen.append(h.detach().float())
        raise _Reached  # the rest of the forward is not needed

    out: list[torch.Tensor] = []
    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in calib.batches(batch_size):
                seen.clear()
                try:
                    target.forward(batch)
                except _Reached:
                    pass
                rows = len(batch["latents"])
                out += list(seen[0].reshape(rows, -1, seen[0].shape[-1]))
    finally:
        handle.remove()
    return out


class _Reached(Exception):
    """Raised by the first block's pre-hook to stop a forward early."""


def pool_units(calib: CalibrationSet, cfg_pairs: str) -> torch.Tensor:
    """``[U, 2]`` row ids: one row per unit (``separate``) or cond+uncond of a step (``joint``)."""
    n = len(calib)
    if cfg_pairs == "separate":
        return torch.stack([torch.arange(n), torch.full((n,), -1)], 1)
    if cfg_pairs != "joint":
        raise ValueError(f"sds_cfg_pairs: must be 'joint' or 'separate', got {cfg_pairs!r}")
    units: dict[tuple[int, int], list[int]] = {}
    for r in range(n):
        key = (int(calib.prompt_index[r]), int(calib.step_index[r]))
        units.setdefault(key, []).append(r)
    return torch.tensor([(rs + [-1])[:2] for rs in units.values()], dtype=torch.long)


def _unit_mean(values: torch.Tensor, unit_rows: torch.Tensor) -> torch.Tensor:
    valid = unit_rows >= 0
    v = values[unit_rows.clamp_min(0)] * valid
    return v.sum(1) / valid.sum(1)


def select(
    target: QuantTarget,
    calib: CalibrationSet,
    k: int,
    mode: str = "hessian",
    feature: str = "block_input",
    norm: str = "spectral",
    cfg_pairs: str = "joint",
    seed: int = 0,
    batch_size: int = 4,
    bins: int = 4,
) -> Selection:
    """Score the pool and pick ``k`` units (all of them when the pool is smaller).

    ``stratified`` scores as ``hessian`` but takes the top units within each of ``bins``
    contiguous ranges of the sampling steps (``k`` shared as evenly as the bins allow)."""
    if mode not in SDS_MODES:
        raise ValueError(f"sds: must be one of {SDS_MODES}, got {mode!r}")
    unit_rows = pool_units(calib, cfg_pairs)
    c_diff = _unit_mean(diffusion_salience(calib), unit_rows)
    tokens = token_matrices(target, calib, feature, batch_size)
    c_quant = _unit_mean(torch.stack([gram_norm(t, norm) for t in tokens]), unit_rows)
    score = {
        "hessian": minmax(c_diff) * minmax(c_quant),
        "stratified": minmax(c_diff) * minmax(c_quant),
        "diffusion": minmax(c_diff),
        "quant": minmax(c_quant),
    }.get(mode, torch.zeros_like(c_diff))
    u, k = len(unit_rows), min(k, len(unit_rows))
    if mode == "random":
        units = torch.randperm(u, generator=torch.Generator().manual_seed(seed))[:k]
    elif mode == "uniform":  # evenly spaced over (step, prompt) order
        steps = calib.step_index[unit_rows[:, 0]].long()
        order = torch.argsort(steps * u + torch.arange(u), stable=True)
        units = order[torch.linspace(0, u - 1, k).round().long()]
    elif mode == "stratified":
        units = stratified_top(score, calib.step_index[unit_rows[:, 0]].long(), k, bins)
    else:
        units = torch.argsort(score, descending=True, stable=True)[:k]
    rows = unit_rows[units].flatten()
    rows = rows[rows >= 0].sort().values
    return Selection(unit_rows, c_diff.float(), c_quant.float(), score.float(), units, rows)


def stratified_top(score: torch.Tensor, steps: torch.Tensor, k: int, bins: int) -> torch.Tensor:
    """The top-scoring units within each of ``bins`` contiguous step ranges (the distinct
    steps split as evenly as possible), ``k`` shared out evenly, earlier bins taking the
    remainder; a bin with fewer units than its share gives the rest to the next bins."""
    distinct = steps.unique(sorted=True)
    groups = [g for g in torch.tensor_split(distinct, min(bins, len(distinct))) if len(g)]
    chosen: list[torch.Tensor] = []
    left = k
    for i, g in enumerate(groups):
        quota = -(-left // (len(groups) - i))  # ceil: the remainder goes to earlier bins
        members = torch.nonzero(torch.isin(steps, g)).flatten()
        best = members[torch.argsort(score[members], descending=True, stable=True)][:quota]
        chosen.append(best)
        left -= len(best)
    out = torch.cat(chosen)
    return out[torch.argsort(score[out], descending=True, stable=True)]
