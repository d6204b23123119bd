"""keep_heap_memory: large tensors come from the reusable heap instead of a fresh mmap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, torch
from vqbench.cpu_alloc import keep_heap_memory
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(f, ctypes.c_size_t) for f in FIELDS.split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
applied = keep_heap_memory()
before = libc.mallinfo2().hblkhd
t = torch.empty(64 << 20)  # 256 MB of float32: far above glibc's 32 MiB mmap threshold
info = libc.mallinfo2()
print(json.dumps({"applied": applied, "mmapped": info.hblkhd - before, "heap": info.arena}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "VQBENCH_CPU_MALLOC": mode}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_large_tensors_come_from_the_heap():
    heap, system = _probe("heap"), _probe("system")
    assert heap["applied"] and not system["applied"]
    assert system["mmapped"] >= 256 << 20  # a fresh mapping, unmapped again on free
    assert heap["mmapped"] == 0 and heap["heap"] >= 256 << 20
