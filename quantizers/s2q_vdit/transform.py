"""FlatQuant-style learnable transforms: channel scale, Kronecker affine map, clipping.

For a linear ``y = x W^T + b`` with input width ``K = a * b``::

    y = (x diag(c)^-1 P) (W diag(c) P^-T)^T + b,    P = P0 (x) P1 (Kronecker, invertible)

``W diag(c) P^-T`` folds exactly into the weight; ``x diag(c)^-1 P`` runs online
(:class:`OnlineTransform`, a ``QuantLinear`` input transform), followed by a per-token clamp
to ``r_a`` times the token's range (the learned activation clipping). ``x P`` costs
``M * K * (a + b)``: ``x`` is viewed as ``[M, a, b]`` and multiplied by ``P0^T`` and ``P1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quantizers.core.quantizer import fake_quant, qparams_from_range, token_range
from quantizers.core.transforms import hadamard, random_orthogonal


def kron_dims(k: int) -> tuple[int, int]:
    """``(a, b)`` with ``a * b = k`` and ``a`` the largest divisor of ``k`` not above sqrt(k)."""
    a = max(d for d in range(1, math.isqrt(k) + 1) if k % d == 0)
    return a, k // a


def init_factor(n: int, kind: str, seed: int = 0) -> torch.Tensor:
    """``identity``, or ``rotation``: a Hadamard (power-of-2 ``n``) or a seeded orthogonal."""
    if kind == "identity" or n == 1:
        return torch.eye(n)
    if kind != "rotation":
        raise ValueError(f"transform_init: must be 'rotation' or 'identity', got {kind!r}")
    return hadamard(n) if n & (n - 1) == 0 else random_orthogonal(n, seed)


def kron_apply(x: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    """``x [..., a*b] @ (f0 (x) f1)`` without forming the Kronecker product."""
    shape = x.shape
    y = x.reshape(-1, f0.shape[0], f1.shape[0])
    y = f0.t().to(y.dtype) @ y @ f1.to(y.dtype)
    return y.reshape(shape)


def fold_weight(
    w: torch.Tensor, c: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor
) -> torch.Tensor:
    """``W diag(c) P^-T`` (computed in float64, returned in ``w``'s dtype)."""
    inv0, inv1 = (torch.linalg.inv(f.double()).t() for f in (f0, f1))
    return kron_apply(w.double() * c.double(), inv0, inv1).to(w.dtype)


def transform_hessian(
    h: torch.Tensor, c: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor
) -> torch.Tensor:
    """Hessian of the transformed input ``x' = x diag(c)^-1 P``: ``P^T D^-1 H D^-1 P``."""
    p = torch.kron(f0.double(), f1.double())
    d = 1.0 / c.double()
    return (p.t() @ (d[:, None] * h.double() * d[None, :]) @ p).float()


def clip_tokens(x: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Clamp each token (last dim) to ``ratio`` times its ``[min, max]``."""
    lo, hi = token_range(x)
    return torch.minimum(torch.maximum(x, lo * ratio), hi * ratio)


class OnlineTransform(nn.Module):
    """Activation side ``x -> clip(x diag(c)^-1 P)`` of a folded linear (inference)."""

    def __init__(
        self,
        c: torch.Tensor,
        f0: torch.Tensor,
        f1: torch.Tensor,
        act_clip: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("inv_c", 1.0 / c.detach().float())
        self.register_buffer("f0", f0.detach().float().clone())
        self.register_buffer("f1", f1.detach().float().clone())
        clip = None if act_clip is None else act_clip.detach().float().reshape(())
        self.register_buffer("act_clip", clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = kron_apply(x * self.inv_c.to(x.dtype), self.f0, self.f1)
        return y if self.act_clip is None else clip_tokens(y, self.act_clip.to(y.dtype))


def _ste_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int, sym: bool):
    scale, zero = qparams_from_range(lo, hi, bits, sym)
    return fake_quant(x, scale, zero, bits, sym, ste=True)


class TrainableLinear(nn.Module):
    """Differentiable stand-in for an ``nn.Linear`` during block reconstruction.

    Learns ``log c``, the Kronecker factors ``P0``, ``P1``, per-output-channel weight clip
    logits and one activation clip logit (ratios = sigmoid); quantizes with round-STE.
    """

    def __init__(
        self,
        linear: nn.Linear,
        w_bits: int,
        a_bits: int,
        w_sym: bool,
        a_sym: bool,
        init: str = "rotation",
        clip_init: float = 4.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.linear = linear
        self.w_bits, self.a_bits, self.w_sym, self.a_sym = w_bits, a_bits, w_sym, a_sym
        k = linear.in_features
        a, b = kron_dims(k)
        self.log_c = nn.Parameter(torch.zeros(k))
        self.f0 = nn.Parameter(init_factor(a, init, seed))
        self.f1 = nn.Parameter(init_factor(b, init, seed + 1))
        self.w_clip = nn.Parameter(torch.full((linear.out_features, 1), clip_init))
        self.a_clip = nn.Parameter(torch.tensor(clip_init))
        self.held_weight: torch.Tensor | None = None  # set by core's held_weights

    def transform_params(self) -> list[nn.Parameter]:
        return [self.log_c, self.f0, self.f1]

    def clip_params(self) -> list[nn.Parameter]:
        return [self.w_clip, self.a_clip]

    def export(self) -> dict[str, torch.Tensor]:
        """Learned values for the state: ``c``, ``f0``, ``f1``, ``w_clip [N]``, ``a_clip []``."""
        return {
            "c": self.log_c.detach().exp(),
            "f0": self.f0.detach().clone(),
            "f1": self.f1.detach().clone(),
            "w_clip": torch.sigmoid(self.w_clip.detach()).flatten(),
            "a_clip": torch.sigmoid(self.a_clip.detach()),
        }

    def quant_weight(self) -> torch.Tensor:
        """The folded weight ``W diag(c) P^-T``, clipped and fake-quantized (round-STE)."""
        c = self.log_c.exp()
        inv0, inv1 = torch.linalg.inv(self.f0).t(), torch.linalg.inv(self.f1).t()
        wt = kron_apply(self.linear.weight * c, inv0, inv1)
        if self.w_bits < 16:
            r = torch.sigmoid(self.w_clip)
            lo, hi = wt.detach().amin(1, keepdim=True), wt.detach().amax(1, keepdim=True)
            wt = _ste_quant(wt, lo * r, hi * r, self.w_bits, self.w_sym)
        return wt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.log_c.exp()
        xt = kron_apply(x / c.to(x.dtype), self.f0, self.f1)
        if self.a_bits < 16:
            lo, hi = token_range(xt.detach())
            r = torch.sigmoid(self.a_clip)
            xt = _ste_quant(xt, lo * r, hi * r, self.a_bits, self.a_sym)
        wt = self.held_weight if self.held_weight is not None else self.quant_weight()
        return nn.functional.linear(xt, wt.to(xt.dtype), self.linear.bias)
