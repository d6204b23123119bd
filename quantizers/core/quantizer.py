"""Uniform quantizer primitives shared by every method.

Conventions (``research/methods.md`` §1.1):

- asymmetric: ``s = (u - l) / (2^N - 1)``, ``z = round(-l / s)``, codes in ``[0, 2^N - 1]``,
  with the range widened to contain 0 (``l = min(x_min, 0)``, ``u = max(x_max, 0)``);
- symmetric: ``s = max|x| / (2^(N-1) - 1)``, ``z = 0``, codes in ``[-2^(N-1), 2^(N-1) - 1]``;
- dequantized value ``x_hat = (q - z) * s``.

Every function computes integer *codes* the same way, so the fake (quant-dequant) path and
the real (integer GEMM) path of :class:`~quantizers.core.linear.QuantLinear` see identical
integers and differ only by floating-point summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

EPS = 1e-8
GRANULARITIES_W = ("tensor", "channel", "group")
GRANULARITIES_A = ("token", "tensor")


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer code range ``(qmin, qmax)`` for ``bits`` bits."""
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest with a straight-through gradient (a plain round when no gradient
    is recorded)."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


def token_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``(min, max)`` over the last dim, kept as ``[..., 1]``.

    Two reductions, because ``torch.aminmax`` along the last dim is about 10x slower on CPU.
    """
    return x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)


def qparams_from_range(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point (float tensors holding integers) for the range ``[lo, hi]``."""
    if symmetric:
        amax = torch.maximum(lo.abs(), hi.abs())
        scale = (amax / (2 ** (bits - 1) - 1)).clamp_min(EPS)
        return scale, torch.zeros_like(scale)
    lo = lo.clamp(max=0)
    hi = hi.clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).clamp_min(EPS)
    zero = torch.round(-lo / scale)
    return scale, zero


def quantize_codes(
    x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool
) -> torch.Tensor:
    """Integer codes (as float) ``clamp(round(x / s) + z, qmin, qmax)``."""
    qmin, qmax = qrange(bits, symmetric)
    return torch.clamp(torch.round(x / scale) + zero, qmin, qmax)


def fake_quant(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bits: int,
    symmetric: bool,
    ste: bool = False,
) -> torch.Tensor:
    """Quantize-dequantize ``x``; with ``ste`` the rounding passes gradients straight through.

    Without autograd the ops run in place on one buffer: fewer large temporaries, which on
    CPU otherwise cost as much system time (page faults) as the arithmetic.
    """
    qmin, qmax = qrange(bits, symmetric)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, scale, zero))):
        q = torch.div(x, scale)
        return q.round_().add_(zero).clamp_(qmin, qmax).sub_(zero).mul_(scale)
    if ste and not zero.requires_grad:
        return _FakeQuantSTE.apply(x, scale, zero, qmin, qmax)
    r = round_ste(x / scale) if ste else torch.round(x / scale)
    return (torch.clamp(r + zero, qmin, qmax) - zero) * scale


class _FakeQuantSTE(torch.autograd.Function):
    """``(clamp(round_ste(x / s) + z, qmin, qmax) - z) * s`` as one autograd node.

    The same forward values as the op-by-op chain, computed on one buffer, and its gradients
    in closed form: ``x`` gets ``g`` where the code is not clamped (straight-through), ``s``
    gets ``sum g * (round(x/s) - x/s)`` there and ``sum g * (clamped code - z)`` elsewhere
    (LSQ's step-size gradient); ``z`` gets none. On wide tensors the chain's eight nodes
    take up to twice as long (``benchmarks/bench_fake_quant.py``).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int
    ) -> torch.Tensor:
        q = torch.div(x, scale)
        code = torch.round(q).add_(zero)
        inside = (code >= qmin).logical_and_(code <= qmax)
        c = code.clamp_(qmin, qmax).sub_(zero)  # the clamped code minus z
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(inside, torch.sub(c, q.mul_(inside)))
        else:
            ctx.save_for_backward(inside)
        ctx.scale_shape = scale.shape
        return c.mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inside = ctx.saved_tensors[0]
        gx = grad * inside if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            gs = (grad * ctx.saved_tensors[1]).sum_to_size(ctx.scale_shape)
        return gx, gs, None, None, None


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------
def group_view(w: torch.Tensor, granularity: str, group_size: int) -> torch.Tensor:
    """Reshape ``w [out, in]`` so the last dim is one quantization group.

    ``tensor`` -> ``[1, out*in]``, ``channel`` -> ``[out, in]``, ``group`` -> ``[out, in/g, g]``.
    """
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        return w
    if granularity == "group":
        if w.shape[1] % group_size:
            raise ValueError(
                f"w_granularity 'group': in_features {w.shape[1]} is not a multiple of "
                f"group_size {group_size}"
            )
        return w.reshape(w.shape[0], w.shape[1] // group_size, group_size)
    raise ValueError(f"w_granularity must be one of {GRANULARITIES_W}, got {granularity!r}")


def weight_qparams(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = False,
    clip_ratio: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max scale and zero of ``w [out, in]``, shaped to broadcast over :func:`group_view`.

    ``clip_ratio`` shrinks the range (scalar, or one value per group row).
    """
    g = group_view(w.detach().float(), granularity, group_size)
    lo = g.amin(dim=-1, keepdim=True)
    hi = g.amax(dim=-1, keepdim=True)
    if isinstance(clip_ratio, torch.Tensor):
        clip_ratio = clip_ratio.reshape(lo.shape)
    return qparams_from_range(lo * clip_ratio, hi * clip_ratio, bits, symmetric)


def fake_quant_weight(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = False,
    scale: torch.Tensor | None = None,
    zero: torch.Tensor | None = None,
) -> torch.Tensor:
    """Quantize-dequantize a weight matrix (min-max unless ``scale``/``zero`` are given)."""
    if scale is None or zero is None:
        scale, zero = weight_qparams(w, bits, granularity, group_size, symmetric)
    g = group_view(w, granularity, group_size)
    return fake_quant(g, scale, zero, bits, symmetric).reshape(w.shape).to(w.dtype)


def mse_clip_search(
    w: torch.Tensor,
    bits: int,
    granularity: str = "channel",
    group_size: int = 128,
    symmetric: bool = False,
    grid: int = 50,
    min_ratio: float = 0.5,
    p: float = 2.0,
) -> torch.Tensor:
    """Per-row clip ratio in ``[min_ratio, 1]`` minimising the ``L_p`` quantization error.

    Q-VDiT's ``grid_search_lp`` uses ``{0, 0.02, ..., 0.98}``; we search ``grid`` evenly
    spaced ratios including 1.0 (see methods.md §2.14). Returns ratios shaped like the
    scale of :func:`weight_qparams`.
    """
    g = group_view(w.detach().float(), granularity, group_size)
    lo = g.amin(dim=-1, keepdim=True)
    hi = g.amax(dim=-1, keepdim=True)
    best_err = torch.full_like(lo, float("inf"))
    best_r = torch.ones_like(lo)
    for r in torch.linspace(min_ratio, 1.0, grid).tolist():
        s, z = qparams_from_range(lo * r, hi * r, bits, symmetric)
        err = (fake_quant(g, s, z, bits, symmetric) - g).abs().pow(p).sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_r = torch.where(better, torch.full_like(best_r, r), best_r)
    return best_r


# --------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------
def act_qparams_per_token(
    x: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-token (last dim reduced) scale and zero of ``x [..., C]``."""
    lo, hi = token_range(x.detach())
    return qparams_from_range(lo.float(), hi.float(), bits, symmetric)


def fake_quant_act(
    x: torch.Tensor,
    bits: int,
    symmetric: bool = False,
    scale: torch.Tensor | None = None,
    zero: torch.Tensor | None = None,
    ste: bool = True,
) -> torch.Tensor:
    """Activation quant-dequant: dynamic per token, or static when ``scale``/``zero`` given."""
    if scale is None or zero is None:
        scale, zero = act_qparams_per_token(x, bits, symmetric)
    return fake_quant(x.float(), scale, zero, bits, symmetric, ste=ste).to(x.dtype)


class LSQQuantizer(nn.Module):
    """Uniform quantizer with a learnable step size (LSQ, Esser et al. 2020).

    ``delta`` is an ``nn.Parameter`` shaped to broadcast over the input (e.g. ``[out, 1]``
    for per-channel weights); the zero-point stays fixed. Gradients reach ``delta`` through
    :func:`round_ste`, as in Q-VDiT's code (methods.md §1.1).
    """

    def __init__(self, delta: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool):
        super().__init__()
        self.bits = bits
        self.symmetric = symmetric
        self.delta = nn.Parameter(delta.detach().clone().float())
        self.register_buffer("zero", zero.detach().clone().float())

    @classmethod
    def from_weight(
        cls, w: torch.Tensor, bits: int, symmetric: bool = False, mse: bool = False
    ) -> LSQQuantizer:
        """Per-output-channel initialisation from ``w [out, in]`` (optionally MSE-clipped)."""
        ratio = mse_clip_search(w, bits, symmetric=symmetric) if mse else 1.0
        s, z = weight_qparams(w, bits, "channel", symmetric=symmetric, clip_ratio=ratio)
        return cls(s, z, bits, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.delta.abs().clamp_min(EPS)
        return fake_quant(x, delta, self.zero, self.bits, self.symmetric, ste=True)


@contextlib.contextmanager
def held_weights(layers: Iterable[nn.Module]) -> Iterator[None]:
    """An evaluation pass without autograd in which each training layer (one with
    ``quant_weight()`` and a ``held_weight`` attribute) uses its quantized weight computed
    once on entry, not once per forward: the same values, released on exit."""
    layers = list(layers)
    with torch.no_grad():
        try:
            for layer in layers:
                layer.held_weight = layer.quant_weight()
            yield
        finally:
            for layer in layers:
                layer.held_weight = None
