"""Which integer GEMM the real mode runs on: chosen per device and CPU instruction set.

Two backends compute the same integer products of the real mode (see
:mod:`quantizers.core.linear`):

- ``int_mm``: ``torch._int_mm`` (int8 x int8 -> int32). Fast on CUDA and on CPUs with
  AVX-512 VNNI or AMX, where oneDNN serves it; on an AVX2-only CPU it is 40-90x slower than
  fp32 (measured on a 2-core AMD EPYC; README, "Benchmarks").
- ``fbgemm``: fbgemm's prepacked int8 linear (the kernel ``torch.ao`` dynamic quantization
  uses), fed the per-token activation codes as exact integers with unit scale, so the
  integer products are the same as ``int_mm``'s. CPU only. On a CPU without VNNI its
  ``u8 x s8`` multiply-add sums pairs of products in saturating int16: exact when
  ``2 * max|u| * max|c| <= 32767``, i.e. weights of at most 7 bits or asymmetric
  activations of at most 7 bits; 8-bit weights with 8-bit activations can saturate on rare
  pairs of large codes (``tests/unit/test_backends.py`` bounds the effect).

:func:`choose_backend` reads the capability table :func:`cpu_backend`; the environment
variable ``VQBENCH_KERNEL_BACKEND`` (``auto`` | ``int_mm`` | ``fbgemm``) overrides it.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("int_mm", "fbgemm")
ENV = "VQBENCH_KERNEL_BACKEND"
_last_used: str | None = None


def cpu_flags() -> dict[str, bool]:
    """Integer-GEMM-relevant CPU features as torch's cpuinfo sees them (not capped by env)."""
    cpu = torch.cpu
    return {
        "avx512_vnni": bool(cpu._is_vnni_supported()),
        "amx": bool(cpu._is_amx_tile_supported()),
        "avx512_bf16": bool(cpu._is_avx512_bf16_supported()),
    }


def fbgemm_available() -> bool:
    """Whether this torch build has fbgemm's quantized engine."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def cpu_backend(capability: str, vnni: bool, amx: bool, fbgemm: bool = True) -> str:
    """The capability table: ``int_mm`` on AVX-512 CPUs with VNNI or AMX, else ``fbgemm``.

    ``capability`` is ``get_cpu_capability()`` (``ATEN_CPU_CAPABILITY=avx2`` lowers it, which
    is how an AVX2-only CPU is emulated on a newer one). Without fbgemm (non-x86 builds)
    ``int_mm`` is the only backend.
    """
    if not fbgemm or (capability.startswith("AVX512") and (vnni or amx)):
        return "int_mm"
    return "fbgemm"


def requested() -> str:
    """``VQBENCH_KERNEL_BACKEND`` (``auto`` when unset); ``ValueError`` for another value."""
    want = os.environ.get(ENV, "auto") or "auto"
    if want not in ("auto", *BACKENDS):
        raise ValueError(f"{ENV}: {want!r} is not one of auto, {', '.join(BACKENDS)}")
    return want


def choose_backend(device: torch.device | str) -> str:
    """The backend real layers on ``device`` use (``VQBENCH_KERNEL_BACKEND`` overrides)."""
    device = torch.device(device)
    want = requested()
    if device.type != "cpu":
        if want == "fbgemm":
            raise ValueError(f"{ENV}: fbgemm runs on CPU only; unset it for {device.type}")
        return "int_mm"
    if want == "fbgemm" and not fbgemm_available():
        raise ValueError(f"{ENV}: this torch build has no fbgemm; use int_mm or auto")
    if want != "auto":
        return want
    flags = cpu_flags()
    cap = torch.backends.cpu.get_cpu_capability()
    return cpu_backend(cap, flags["avx512_vnni"], flags["amx"], fbgemm_available())


def note_used(name: str) -> None:
    """Record the backend a real layer was just built with (see :func:`last_used`)."""
    global _last_used
    _last_used = name


def last_used() -> str | None:
    """The backend of the most recently built real layer in this process, if any."""
    return _last_used
