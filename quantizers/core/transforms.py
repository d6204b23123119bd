"""Orthogonal input transforms: Hadamard and block Hadamard rotations, smoothing scales.

A rotation ``R`` (orthogonal, ``R R^T = I``) is applied online to a linear's input and
folded into its weight: ``y = (x R)(W R)^T = x W^T``. For widths that are not a power of 2,
``K = p * 2^m`` is handled as a Kronecker product ``Q_p (x) H_a (x) H_b`` of a seeded random
orthogonal ``p x p`` matrix and two Sylvester Hadamards (``a * b = 2^m``), applied factor by
factor on ``x`` reshaped to ``[M, p, a, b]`` (cost ``M*K*(p+a+b)`` instead of ``M*K^2``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def hadamard(n: int) -> torch.Tensor:
    """Normalised Sylvester Hadamard matrix of size ``n`` (a power of 2)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"hadamard: {n} is not a power of 2")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def random_orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    """A seeded random orthogonal ``n x n`` matrix (QR of a Gaussian, sign-fixed)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float().contiguous()


def kron_factors(k: int, seed: int = 0) -> list[torch.Tensor]:
    """Orthogonal factors whose Kronecker product rotates width ``k``."""
    m = (k & -k).bit_length() - 1  # largest power of 2 dividing k
    p = k >> m
    factors = [random_orthogonal(p, seed)] if p > 1 else []
    a = 1 << (m // 2)
    factors += [hadamard(d) for d in (a, (1 << m) // a) if d > 1]
    return factors


class BlockHadamard(nn.Module):
    """Online rotation ``x -> x R`` with ``R`` = Kronecker product of small orthogonal factors."""

    def __init__(self, k: int, seed: int = 0) -> None:
        super().__init__()
        self.k = k
        for i, f in enumerate(kron_factors(k, seed)):
            self.register_buffer(f"f{i}", f)

    def factors(self) -> list[torch.Tensor]:
        return list(self.buffers())

    def pass_factors(self) -> list[torch.Tensor]:
        """The factors :meth:`forward` multiplies by, one pass over ``x`` each."""
        return self.factors()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        fs = self.pass_factors()
        y = x.reshape(-1, *(f.shape[0] for f in fs))
        for axis, f in enumerate(fs, start=1):
            y = torch.movedim(torch.movedim(y, axis, -1) @ f.to(y.dtype), -1, axis)
        return y.reshape(shape)

    def matrix(self) -> torch.Tensor:
        """The dense ``K x K`` rotation (for folding into weights and Hessians)."""
        r = torch.ones(1, 1)
        for f in self.factors():
            r = torch.kron(r, f)
        return r


def smoothing_scale(
    act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float, eps: float = 1e-5
) -> torch.Tensor:
    """SmoothQuant's ``c_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha)`` per input channel."""
    w_absmax = weight.detach().abs().amax(0).float().clamp_min(eps)
    return (act_absmax.float().clamp_min(eps).pow(alpha) / w_absmax.pow(1 - alpha)).clamp_min(eps)
