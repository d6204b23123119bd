"""TMD: Q-VDiT's temporal maintenance distillation loss (methods.md §2.2, §2.9).

For frames ``S_1..S_t`` of an output, ``T_ij = cos(S_i, S_j)`` and ``D_i = softmax_j(T_i)``;
the loss is ``KL(D^FP_i || D^Q_i)`` summed over rows and divided by ``b * t * t`` (the
released code's ``kl_div(reduction='mean')``, with which ``gamma = 100`` was chosen).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_similarity(frames: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[B, F, F]`` between the frames of ``frames [B, F, ...]``."""
    p = F.normalize(frames.flatten(2).float(), dim=-1)
    return p @ p.transpose(1, 2)


def tmd_rows(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``KL(D^ref_i || D^pred_i)`` per sample and frame, ``[B, F]``, for ``[B, F, ...]`` inputs."""
    logq = torch.log_softmax(frame_similarity(pred), dim=-1)
    logp = torch.log_softmax(frame_similarity(ref), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def tmd_loss(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The TMD loss: :func:`tmd_rows` summed, divided by ``B * F * F``."""
    rows = tmd_rows(pred, ref)
    b, f = rows.shape
    return rows.sum() / (b * f * f)
