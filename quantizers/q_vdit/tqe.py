"""TQE: Q-VDiT's token-aware quantization estimator (methods.md §2.2, §2.4).

A rank-1 FP branch ``(Q_a(X) alpha) beta^T`` added to a quantized linear (Eq.7), with an
optional per-frame scale ``M`` (Eq.8): the branch output of frame ``i``'s tokens is scaled by
``M_i`` (paper form) or ``1 + M_i`` (the released code's form, where ``M`` multiplies an
*extra* copy of the branch). Frames come from the layer's :class:`~vqbench.types.TokenLayout`,
never from a fixed reshape; tokens outside any frame (e.g. a text prefix) get scale 1.
``M`` starts at ones (code) or at Eq.9: ``M_i = eta_i / omega_i`` with
``eta = softmax_i(1 - rho(X_i, Q_a(X)_i))`` and ``omega_i`` frame ``i``'s share of ``sum |X|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.linear import QuantLinear, QuantVariant
from quantizers.core.quantizer import fake_quant_act
from vqbench.types import TokenLayout


def seq_len(layout: TokenLayout) -> int:
    """Tokens per sequence ``L`` of a layer input with this layout."""
    if layout.kind == "spatial":
        return layout.tokens_per_frame
    if layout.kind == "temporal":
        return layout.frames
    if layout.kind == "joint":
        return layout.prefix + layout.frames * layout.tokens_per_frame
    raise ValueError("layout 'none' has no frames")


def as_sequences(x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``x [..., C]`` viewed as ``[N, L, C]`` for ``layout`` (``ValueError`` if it does not fit)."""
    seq = x if x.dim() == 3 else x.reshape(-1, seq_len(layout), x.shape[-1])
    layout.to_frames(seq[..., :1])  # validates N, L against the layout
    return seq


def frame_scale(
    x: torch.Tensor, layout: TokenLayout, m: torch.Tensor, residual: bool = False
) -> torch.Tensor:
    """Per-token multiplier ``[..., 1]`` for ``x [..., C]``: ``M[frame]`` (``1 + M[frame]`` if
    ``residual``) on frame tokens, 1 on tokens outside any frame."""
    seq = as_sequences(x, layout)
    ids = layout.frame_index(seq)
    scale = m[ids.clamp_min(0)]
    if residual:
        scale = 1 + scale
    scale = torch.where(ids >= 0, scale, torch.ones_like(scale))
    return scale.reshape(*x.shape[:-1], 1)


class TQEBranch(nn.Module):
    """``(M ⊙ Q_a(X)) alpha beta^T``: rank-1 error estimate, optionally scaled per frame."""

    def __init__(
        self,
        alpha: torch.Tensor,
        beta: torch.Tensor,
        m: torch.Tensor | None = None,
        layout: TokenLayout | None = None,
        residual: bool = False,
    ) -> None:
        """``alpha [in]``, ``beta [out]``, ``m [frames]`` with the layer's input ``layout``;
        ``residual``: the code's ``(1 + M_i)`` form."""
        super().__init__()
        if m is not None and (layout is None or not layout.has_frames):
            raise ValueError("TQE: a per-frame scale needs a layout with frames")
        if m is not None and m.numel() != layout.frames:
            raise ValueError(f"TQE: M has {m.numel()} entries, layout has {layout.frames} frames")
        self.alpha = nn.Parameter(alpha.detach().clone().float())
        self.beta = nn.Parameter(beta.detach().clone().float())
        self.m = None if m is None else nn.Parameter(m.detach().clone().float())
        self.layout, self.residual = layout, residual

    def _estimate(self, xq: torch.Tensor) -> torch.Tensor:
        """``(M ⊙ Q_a(X)) alpha`` as ``[..., 1]``."""
        d = (xq.float() @ self.alpha).unsqueeze(-1)
        if self.m is not None:
            d = d * frame_scale(xq, self.layout, self.m, self.residual)
        return d

    def forward(self, xq: torch.Tensor) -> torch.Tensor:
        """Branch output ``[..., out]`` for the (quantized) layer input ``xq [..., in]``."""
        return self._estimate(xq) * self.beta

    def add_to(self, y: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        """``y + forward(xq)`` as one rank-1 GEMM (training): about half the time of the
        broadcast product and sum with their backward, equal up to rounding."""
        d = self._estimate(xq).reshape(-1, 1).to(y.dtype)
        out = torch.addmm(y.reshape(-1, y.shape[-1]), d, self.beta.unsqueeze(0).to(y.dtype))
        return out.reshape(y.shape)

    def memory_bytes(self) -> int:
        """FP storage of ``alpha``, ``beta`` and ``M``."""
        return sum(p.numel() * p.element_size() for p in self.parameters())


class TQEQuantLinear(QuantLinear):
    """A ``QuantLinear`` plus the TQE branch, an FP side path in fake and real mode alike.

    The branch reads the layer input quantized as the active variant quantizes it. It was
    trained for the low-bit variant, so the early-step (higher-precision) variant skips it.
    """

    def __init__(
        self,
        linear: nn.Linear,
        variants: list[QuantVariant],
        tqe: TQEBranch,
        early_steps: int = 0,
    ) -> None:
        super().__init__(linear, variants, early_steps=early_steps)
        self.tqe = tqe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.variant_index()
        y = super().forward(x)
        if self.early_steps and idx == len(self.variants) - 1:
            return y
        s = self.variants[idx].spec
        xq = x if s.a_bits >= 16 else fake_quant_act(x, s.a_bits, s.a_symmetric)
        return y + self.tqe(xq).to(y.dtype)

    def memory_bytes(self) -> int:
        return super().memory_bytes() + self.tqe.memory_bytes()


class FrameStats:
    """Per-frame statistics of one layer's FP inputs for the Eq.9 initialisation of ``M``."""

    def __init__(self, layout: TokenLayout, a_bits: int, a_symmetric: bool) -> None:
        self.layout, self.a_bits, self.a_symmetric = layout, a_bits, a_symmetric
        self.rho_sum = torch.zeros(layout.frames, dtype=torch.float64)
        self.mass = torch.zeros(layout.frames, dtype=torch.float64)
        self.count = 0

    def update(self, x: torch.Tensor) -> None:
        """Fold in a batch of layer inputs ``x [..., C]`` (any leading shape fitting the layout)."""
        seq = as_sequences(x.detach().float(), self.layout)
        xq = seq if self.a_bits >= 16 else fake_quant_act(seq, self.a_bits, self.a_symmetric)
        fx = self.layout.to_frames(seq).flatten(2)  # [B, F, S*C]
        fq = self.layout.to_frames(xq).flatten(2)
        self.rho_sum += F.cosine_similarity(fx, fq, dim=-1).sum(0).double()
        self.mass += fx.abs().sum((0, 2)).double()
        self.count += fx.shape[0]

    def m_init(self) -> torch.Tensor:
        """``M`` by Eq.9 from the mean per-frame similarity and the L1 mass."""
        if not self.count:
            raise RuntimeError("FrameStats saw no data")
        return eq9_m(self.rho_sum / self.count, self.mass).float()


def eq9_m(rho: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """Eq.9: ``M_i = softmax_i(1 - rho)_i / (mass_i / sum mass)``."""
    eta = torch.softmax(1 - rho, dim=0)
    omega = mass / mass.sum().clamp_min(1e-12)
    return eta / omega.clamp_min(1e-12)
