"""Serve large CPU tensors from the malloc heap and keep freed memory there; native bf16?

glibc's malloc serves every block above 32 MiB with a fresh ``mmap`` and unmaps it on free.
A video transformer's activations are such blocks (a Latte-width ``[8192, 4608]`` float
tensor is 151 MB), so they are page-faulted in again on every call, which costs a large
fraction of an int8 GEMM of the same shape. :func:`keep_heap_memory` turns ``mmap`` off for
malloc and stops it trimming the heap, so freed blocks can be reused (PyTorch's 64-byte
aligned allocations do not always fit a freed block exactly, so not every allocation
reuses one). It is the effect ``LD_PRELOAD``-ing jemalloc or tcmalloc has for PyTorch on
CPU, without the preload. It changes only speed (and keeps the peak resident set reserved),
never numerics, and applies to FP and quantized models alike; ``benchmarks/bench_step.py``
measures it (README, "Benchmarks").

``vqbench run`` calls it for CPU runs and the benchmarks call it at start. Set
``VQBENCH_CPU_MALLOC=system`` to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

import torch

logger = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
ENV = "VQBENCH_CPU_MALLOC"


@functools.cache
def keep_heap_memory() -> bool:
    """Configure glibc malloc to reuse freed heap blocks; ``True`` if it was applied.

    No-op (``False``) without glibc, or with ``VQBENCH_CPU_MALLOC=system``.
    """
    if os.environ.get(ENV, "heap") == "system":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    big = 2**31 - 1
    ok = all(
        mallopt(p, v) == 1
        for p, v in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, big), (M_TOP_PAD, 1 << 26))
    )
    logger.debug("malloc: reuse freed heap memory (%s)", "applied" if ok else "failed")
    return ok


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, at AVX-512 dispatch).

    Elsewhere (AVX2) CPU bf16 matmuls are emulated, 80-420x slower than fp32; paths that
    would pick bf16 on CPU check this and fall back to fp32 with a log line.
    """
    cap = torch.backends.cpu.get_cpu_capability()
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return cap.startswith("AVX512") and native
