"""The benchmarks' ISA line and the emulation of an AVX2-only CPU on a newer x86 CPU.

``--emulate avx2`` re-executes the script with the libraries capped at AVX2:

- ``ATEN_CPU_CAPABILITY=avx2``: torch's own vectorised kernels (and what
  ``get_cpu_capability()`` reports, so the backend table picks as it would on AVX2);
- ``MKL_ENABLE_INSTRUCTIONS=AVX2``: MKL's fp32 GEMM (``nn.Linear`` in fp32);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (bf16 matmul, convolutions);
- ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``: fbgemm, whose int8 multiply-add then saturates as on
  AVX2 hardware (``quantizers.core.kernels.fbgemm_saturates`` probes it).

``torch._int_mm`` is the one path the caps do not reproduce: capped oneDNN returns wrong
int8 sums (8160 for 64 products of 127 x 127), so torch cannot be using it on AVX2
machines, where ``_int_mm`` measured 40-90x slower than fp32. In the emulated process
``torch.backends.mkldnn.enabled`` is therefore off, which sends ``_int_mm`` to torch's
non-oneDNN loop (60 ms for 512^3 here vs 110 ms on the AVX2 machine). Clock speed, caches
and the AMD microarchitecture are not emulated.
"""

from __future__ import annotations

import os
import sys

import torch

from quantizers.core import fused
from quantizers.core.backends import fbgemm_available
from quantizers.core.kernels import fbgemm_saturates
from vqbench.environment import cpu_info

AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
MARK = "VQBENCH_EMULATED_ISA"


def emulate(isa: str | None) -> None:
    """Re-execute this script under the AVX2 caps (once), or apply them in the child."""
    if isa is None:
        return
    if isa != "avx2":
        raise SystemExit(f"--emulate: only 'avx2' is supported, got {isa!r}")
    if os.environ.get(MARK) != isa:
        env = {**os.environ, **AVX2_CAPS, MARK: isa}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    torch.backends.mkldnn.enabled = False


def isa_line() -> dict[str, object]:
    """What every benchmark line names: capability, CPU model, emulation, fbgemm's mode."""
    info: dict[str, object] = dict(cpu_info())
    emulated = os.environ.get(MARK)
    if emulated:
        info["emulated"] = f"{emulated} (ATEN/MKL/oneDNN/fbgemm capped; not clock or caches)"
    info["fbgemm_saturating"] = fbgemm_saturates() if fbgemm_available() else None
    info["threads"] = torch.get_num_threads()
    info["kernel_fusion"] = fused.status()
    return info
