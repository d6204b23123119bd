"""Integer kernels of the real mode: nibble packing and int8 GEMMs.

Two GEMM backends (chosen in :mod:`quantizers.core.backends`): ``torch._int_mm`` and
fbgemm's prepacked int8 linear (:func:`fbgemm_pack`, :func:`fbgemm_linear`), which takes
unsigned activation codes as exact integers in a float tensor. The activation codes and
the epilogue around the GEMMs are in :mod:`quantizers.core.fused`.

``torch._int_mm(a int8 [M,K], b int8 [K,N]) -> int32 [M,N]`` is exact. On CPU (torch 2.13)
it accepts every shape; on CUDA it needs ``M > 16`` and ``K``, ``N`` multiples of 8, so
:func:`int_mm` zero-pads there (zeros add nothing to the sums). On CPU the int32 result goes
into a per-thread reusable workspace: glibc serves blocks above 32 MiB with a fresh
``mmap``, so a fresh ``[M, N]`` buffer is page-faulted in on every call, which costs as
much as a third of the GEMM at Latte width. The result is only valid until the next call
on the same thread; callers use it at once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack signed 4-bit codes ``int8 [N, K]`` (values in [-8, 7]) two per byte along K.

    Returns ``uint8 [N, ceil(K/2)]``; column ``2j`` is the low nibble of byte ``j``.
    """
    if codes.shape[-1] % 2:
        codes = F.pad(codes, (0, 1))
    c = codes.to(torch.int16) & 0xF
    return (c[..., 0::2] | (c[..., 1::2] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: ``int8 [N, k]`` with sign-extended nibbles."""
    p = packed.view(torch.int8)
    lo = (p << 4) >> 4  # arithmetic shift sign-extends the low nibble
    hi = p >> 4
    out = torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], -1)
    return out[..., :k]


_LOCAL = threading.local()


def _workspace(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A per-thread reusable CPU buffer of ``shape`` (one per dtype, grown on demand)."""
    bufs = _LOCAL.__dict__.setdefault("bufs", {})
    numel = math.prod(shape)
    buf = bufs.get(dtype)
    if buf is None or buf.numel() < numel:
        buf = bufs[dtype] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)


def int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``int8 [M,K] @ int8 [K,N] -> int32 [M,N]`` via ``torch._int_mm``.

    On CPU the result lives in a reused workspace (valid until the next call).
    """
    if a.device.type != "cuda":
        m, n = a.shape[0], b.shape[1]
        return torch._int_mm(a, b, out=_workspace((m, n), torch.int32))
    m, k = a.shape
    n = b.shape[1]
    pm, pk, pn = max(17 - m, 0), (-k) % 8, (-n) % 8
    if pm or pk:
        a = F.pad(a, (0, pk, 0, pm))
    if pk or pn:
        b = F.pad(b, (0, pn, 0, pk))
    return torch._int_mm(a.contiguous(), b)[:m, :n]


def row_sums(q: torch.Tensor) -> torch.Tensor:
    """Exact int32 row sums of int8 codes ``q [M, K]``: one thin int8 GEMM against ones.

    ``q.sum(-1, dtype=torch.int32)`` widens all of ``q`` to int32 first, which on CPU costs
    more than a tenth of the whole GEMM at Latte width; the GEMM reads ``q`` once.
    """
    ones = torch.ones(q.shape[1], 8, dtype=torch.int8, device=q.device)
    if q.device.type == "cpu":  # not the workspace: the caller may still hold int_mm's result
        return torch._int_mm(q, ones)[:, 0]
    return int_mm(q, ones)[:, 0]


@contextlib.contextmanager
def _quantized_engine(name: str) -> Iterator[None]:
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = prev


def fbgemm_pack(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> object:
    """Prepack signed int8 weight codes ``[N, K]`` for :func:`fbgemm_linear`.

    Row ``n`` stands for ``(codes[n] - zero[n]) * scale[n]`` (``scale``, ``zero``: ``[N]``,
    ``zero`` integer-valued in [-128, 127]). Returns fbgemm's packed-weight object.
    """
    n = codes.shape[0]
    scale = scale.double().expand(n).contiguous()
    zero = zero.round().long().expand(n).contiguous()
    with warnings.catch_warnings():  # quantized tensors are deprecated, fbgemm's API needs one
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
        qw = torch._make_per_channel_quantized_tensor(codes.contiguous(), scale, zero, 0)
        with _quantized_engine("fbgemm"):
            return torch.ops.quantized.linear_prepack(qw, None)


def fbgemm_linear(u: torch.Tensor, packed: object) -> torch.Tensor:
    """``sum_k u[m, k] (codes[n, k] - zero[n]) scale[n]`` for integer codes ``u`` in [0, 255].

    ``u [M, K]`` is float; unit input scale and zero point make fbgemm's own quantization of
    it exact, so the int32 sums are exact (see :mod:`quantizers.core.backends` for the one
    exception, saturation on CPUs without VNNI). Returns float32 ``[M, N]``.
    """
    op = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
    return op(u.contiguous(), 1.0, 0, packed)


@functools.cache
def fbgemm_saturates() -> bool:
    """Whether this process's fbgemm sums ``u8 x s8`` product pairs in saturating int16.

    True on CPUs without VNNI (AVX2, AVX-512 without VNNI, or ``FBGEMM_ENABLE_INSTRUCTIONS``
    capping fbgemm below VNNI); probed once with one dot product of 64 maximal codes.
    """
    codes = torch.full((1, 64), 127, dtype=torch.int8)
    packed = fbgemm_pack(codes, torch.ones(1), torch.zeros(1))
    out = fbgemm_linear(torch.full((1, 64), 255.0), packed)
    return int(out[0, 0].item()) != 255 * 127 * 64


def fbgemm_linear_split(u: torch.Tensor, packed: object) -> torch.Tensor:
    """:func:`fbgemm_linear` that cannot saturate: ``u = 128 h + l`` with ``l < 128``.

    Two GEMMs over the same packed weight, ``F(l) + 128 F(h)``: every int16 pair sum stays
    within ``2 * 127 * 128 = 32512``, so the result is exact on every CPU.
    """
    high = torch.floor(u * (1 / 128))
    low = u.sub(high, alpha=128)
    return fbgemm_linear(low, packed).add_(fbgemm_linear(high, packed), alpha=128)
