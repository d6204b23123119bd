"""The real mode's element-wise work around its integer GEMM, fused into one loop each on CPU.

Op by op, the steps around an int8 GEMM each make a pass over a whole activation or output
tensor: per-token ranges (two reductions), codes (divide, round, shift, clamp, cast), then
the int32 sums' rescale and zero-point corrections. At Latte width that work made a real
W8A8 step 1.97x faster than fp32 op by op and 2.69x fused (``benchmarks/bench_peers.py
--op-by-op``, AVX512; README). Here they are plain tensor functions:

- :func:`token_codes`: ``clamp(round(x / s) + z, qmin, qmax) + shift`` with the per-token
  (or static) scale and zero point, and optionally the codes' row sums;
- :func:`int_epilogue`: ``s_x (s_w acc - z_x s_w colsum + (k z_x - rowsum) s_w z_w) + b``
  for ``torch._int_mm``'s int32 sums;
- :func:`fbgemm_epilogue`: ``s_x (F - z_u w_corr) + b`` for fbgemm's float sums.

On CPU they run compiled by TorchInductor (``torch.compile(dynamic=True)``: one loop nest
per function, whatever the layer's shape). Inductor keeps IEEE division on CPU and
compiles without fast-math (no reciprocal, contraction or finite-math rewrites), so the
codes equal the op-by-op ones exactly and NaN propagates as it does op by op; the epilogue
sums the same terms in another order (about 1e-7 relative). Other devices, and
``VQBENCH_FUSED=off``, run the same functions op by op. A compile that fails (no C++
compiler, an unsupported build) logs one warning and the process goes on op by op;
:func:`status` says which path ran, and run records carry it (``kernel_fusion``). Each
distinct combination of the non-tensor arguments (and of None) is one compiled variant; past
dynamo's ``recompile_limit`` (8) further variants run op by op, which dynamo logs.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from quantizers.core.quantizer import qparams_from_range, qrange, token_range

logger = logging.getLogger(__name__)
ENV = "VQBENCH_FUSED"
F = TypeVar("F", bound=Callable[..., Any])
_failed: list[str] = []  # the first compile failure of this process, if any


def enabled() -> bool:
    """Whether CPU calls run compiled (``VQBENCH_FUSED``: ``auto``, the default, or ``off``)."""
    want = os.environ.get(ENV, "auto") or "auto"
    if want not in ("auto", "off"):
        raise ValueError(f"{ENV}: {want!r} is not one of auto, off")
    return want == "auto" and not _failed


def active(x: torch.Tensor) -> bool:
    """Whether calls on ``x`` run compiled (on CPU, fusion on and no compile failure)."""
    return x.device.type == "cpu" and enabled()


def status() -> str:
    """``inductor`` (CPU calls compiled), ``eager (VQBENCH_FUSED=off)`` or ``eager (compile
    failed: ...)``, for records and benchmark lines."""
    if _failed:
        return f"eager (compile failed: {_failed[0]})"
    return "inductor" if enabled() else f"eager ({ENV}=off)"


def isolate_inductor_cache() -> str:
    """Point TorchInductor's on-disk cache at a subfolder per ATen CPU capability; returns it.

    torch 2.13's cache key omits ``ATEN_CPU_CAPABILITY``: a kernel compiled in a process
    capped at AVX2 (``--emulate avx2``, tests) and then served to an uncapped AVX-512 one,
    or the reverse, computed garbage and NaN codes and corrupted the heap here. The base is
    ``TORCHINDUCTOR_CACHE_DIR`` (default ``<tmp>/torchinductor_<user>``); idempotent.
    """
    sub = "isa-" + torch.backends.cpu.get_cpu_capability().lower()
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not base:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
        base = os.path.join(tempfile.gettempdir(), f"torchinductor_{user}")
    path = base if os.path.basename(os.path.normpath(base)) == sub else os.path.join(base, sub)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return path


def _cpu_compiled(fn: F) -> F:
    """``fn`` compiled on first CPU use; op by op elsewhere, when off, or after a failure."""
    compiled: list[Callable[..., Any]] = []  # made on first use: importing dynamo costs ~1 s

    @functools.wraps(fn)
    def run(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not active(x):
            return fn(x, *args, **kwargs)
        try:
            if not compiled:
                isolate_inductor_cache()
                compiled.append(torch.compile(fn, dynamic=True))
            return compiled[0](x, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure: fall back, say so once
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            _failed.append(reason)
            logger.warning("fused kernels: torch.compile failed (%s); running op by op", reason)
            return fn(x, *args, **kwargs)

    return run  # type: ignore[return-value]


@_cpu_compiled
def token_codes(
    x: torch.Tensor,
    bits: int,
    symmetric: bool,
    shift: int,
    dtype: torch.dtype,
    scale: torch.Tensor | None = None,
    zero: torch.Tensor | None = None,
    rowsum: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes ``clamp(round(x / s) + z, qmin, qmax) + shift`` of ``x [M, K]`` as ``dtype``.

    ``s``, ``z``: per token from ``x``'s range (as :func:`~quantizers.core.quantizer.
    qparams_from_range`) unless a static ``scale``/``zero`` is given. Returns ``(codes,
    scale [M or 1, 1], zero + shift, row sums of the codes [M] or None)``; the row sums
    are float32, exact for ``K < 2^17``.
    """
    if scale is None or zero is None:
        lo, hi = token_range(x)
        scale, zero = qparams_from_range(lo, hi, bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    q = torch.div(x, scale)  # in place on one buffer: few passes when run op by op
    q.round_().add_(zero + shift).clamp_(qmin + shift, qmax + shift)
    return q.to(dtype), scale, zero + shift, q.sum(-1) if rowsum else None


@_cpu_compiled
def int_epilogue(
    acc: torch.Tensor,
    w_scale: torch.Tensor,
    sx: torch.Tensor,
    zx: torch.Tensor | None,
    colsum: torch.Tensor,
    w_zero: torch.Tensor | None,
    rowsum: torch.Tensor | None,
    k: int,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Float output of exact int32 sums ``acc [M, N] = q @ c^T`` of one weight group.

    ``sum_k (q - z_x)(c - z_w) = acc - z_x colsum - z_w (rowsum - k z_x)``, scaled by
    ``s_x [M, 1]`` and ``s_w [N]``, plus ``bias [N]``. ``zx`` is None for symmetric
    activations, ``w_zero`` and ``rowsum`` None for symmetric weights.
    """
    ws = w_scale
    y = acc * ws
    if zx is not None:
        y = y - zx * (ws * colsum)
    if w_zero is not None:  # rowsum is required then: None fails here, never skips the term
        r = rowsum.unsqueeze(-1)
        y = y + (-r if zx is None else k * zx - r) * (ws * w_zero)
    y = y * sx
    return y if bias is None else y + bias


@_cpu_compiled
def fbgemm_epilogue(
    out: torch.Tensor,
    sx: torch.Tensor,
    zu: torch.Tensor,
    w_corr: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """``s_x (F - z_u w_corr) + b`` for fbgemm's float sums ``F [M, N]``."""
    y = (out - zu * w_corr) * sx
    return y if bias is None else y + bias
