"""Attention-guided Sparse Token Distillation weights (S2Q-VDiT §3.3, Eq.9-11; methods.md §3.3).

For each block call, the FP self-attention column sums ``S_j`` (summed over heads, queries
and the block's self-attention modules) are min-max normalised per sample over all its
tokens into ``lambda_j = lambda_min + (1 - lambda_min) * norm(S)_j``. Token layouts bring the
sums of spatial (``[B*F, S]``), temporal (``[B*S, F]``) and joint (``[B, P + F*S]``)
attention to one per-sample frame form, and back to the shape of each block output.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from quantizers.core.attention import AttentionProbe
from vqbench.types import TokenLayout

logger = logging.getLogger(__name__)


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a block output (a tensor, or the tensors of a tuple/list)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [o for o in out if isinstance(o, torch.Tensor)]
    raise TypeError(f"unsupported block output {type(out).__name__}")


def _frame_form(s: torch.Tensor, lay: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, L]`` sums -> (video ``[B, F, S]``, prefix ``[B, P]``)."""
    if lay.kind == "none":
        return s[:, None, :], s[:, :0]
    video = lay.to_frames(s[..., None])[..., 0]
    prefix = s[:, : lay.prefix] if lay.kind == "joint" else s[:, :0]
    return video, prefix


def normalise(
    video: torch.Tensor, prefix: torch.Tensor, lambda_min: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample min-max of ``cat(prefix, video)`` mapped to ``[lambda_min, 1]``."""
    b = video.shape[0]
    flat = torch.cat([prefix.reshape(b, -1), video.reshape(b, -1)], 1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    norm = torch.where(hi > lo, (flat - lo) / (hi - lo).clamp_min(1e-30), torch.ones_like(flat))
    lam = lambda_min + (1.0 - lambda_min) * norm
    p = prefix.shape[1]
    return lam[:, p:].reshape(video.shape), lam[:, :p]


def _candidates(
    video: torch.Tensor, prefix: torch.Tensor, layouts: list[TokenLayout]
) -> list[torch.Tensor]:
    b, f, s = video.shape
    out = [video]
    for lay in layouts:
        if lay.kind == "spatial":
            out.append(video.reshape(b * f, s))
        elif lay.kind == "temporal":
            out.append(video.transpose(1, 2).reshape(b * s, f))
        elif lay.kind == "joint":
            out += [torch.cat([prefix, video.reshape(b, f * s)], 1), video.reshape(b, f * s)]
        else:
            out.append(video[:, 0])
    if prefix.shape[1]:
        out.append(prefix)
    return out


def token_weights(
    sums: dict[str, torch.Tensor],
    layouts: dict[str, TokenLayout],
    outputs: list[torch.Tensor],
    lambda_min: float,
) -> list[torch.Tensor | None]:
    """Per-token weights ``[*o.shape[:-1]]`` for each block output (None: no match, λ = 1)."""
    video = prefix = None
    for name, s in sums.items():
        v, p = _frame_form(s, layouts[name])
        if video is None:
            video, prefix = v, p
        elif v.shape == video.shape and p.shape == prefix.shape:
            video, prefix = video + v, prefix + p
        else:
            logger.debug("%s: attention geometry differs from the block's first; skipped", name)
    if video is None:
        return [None] * len(outputs)
    video, prefix = normalise(video, prefix, lambda_min)
    cands = _candidates(video, prefix, [layouts[n] for n in sums])
    out: list[torch.Tensor | None] = []
    for o in outputs:
        match = next((c for c in cands if c.shape == o.shape[:-1]), None)
        if match is None:
            logger.debug("no token weights fit a block output of shape %s", tuple(o.shape))
        out.append(match)
    return out


def block_token_weights(
    block: nn.Module,
    attn: dict[str, nn.Module],
    layouts: dict[str, TokenLayout],
    args: tuple,
    kwargs: dict[str, Any],
    lambda_min: float,
    chunk: int = 1024,
) -> list[torch.Tensor | None]:
    """Run the FP ``block`` once on a captured call and return its STD token weights.

    ``attn``: the block's self-attention modules by name; ``layouts``: name -> layout of
    their query input.
    """
    with torch.no_grad(), AttentionProbe(attn, chunk) as probe:
        out = block(*args, **kwargs)
    sums = {n: torch.stack(v).sum(0) for n, v in probe.sums.items() if v}
    return token_weights(sums, layouts, output_tensors(out), lambda_min)
