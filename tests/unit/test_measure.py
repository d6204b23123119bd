"""Measuring a run (vqbench.measure): timers, latency summaries, peak memory, packed bytes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from vqbench.measure import (
    StepTimer,
    WallTimer,
    compression_ratio,
    latency_summary,
    peak_memory,
    reset_peak_memory,
    weight_bytes,
)


class _Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)  # must not be counted again

    def memory_bytes(self) -> int:
        return 10


def test_weight_bytes_and_compression_ratio():
    fp = nn.Sequential(nn.Linear(4, 4), nn.Linear(8, 8))
    assert weight_bytes(fp) == (20 + 72) * 4
    q = nn.Sequential(nn.Linear(4, 4), _Packed())
    q[0].half()
    assert weight_bytes(q) == 20 * 2 + 10
    shared = nn.Sequential(fp[0], fp[0])
    assert weight_bytes(shared) == 20 * 4
    assert compression_ratio(400, 100) == 4.0
    with pytest.raises(ValueError):
        compression_ratio(0, 1)


class _Sleepy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.002)
        return x


def test_step_timer_and_latency_summary():
    m = _Sleepy()
    with StepTimer(m) as timer:
        for _ in range(5):
            m(torch.zeros(1))
    m(torch.zeros(1))  # hooks removed on exit
    assert len(timer.times) == 5 and all(t >= 0.0015 for t in timer.times)
    s = latency_summary(timer.times, warmup=2)
    assert s["n"] == 3 and s["p50"] <= s["p90"] and s["mean"] > 0
    assert latency_summary([1.0, 2.0, 3.0, 4.0]) == {"p50": 2.5, "p90": 3.7, "mean": 2.5, "n": 4}
    with pytest.raises(ValueError):
        latency_summary([1.0], warmup=1)
    with WallTimer() as w:
        time.sleep(0.001)
    assert w.seconds >= 0.001


def test_peak_memory_on_cpu():
    p = peak_memory()
    assert p["peak_allocated_bytes"] is None and p["peak_rss_bytes"] > 10 * 2**20
    reset_peak_memory()
    buf = np.ones(64 * 2**20 // 8)  # 64 MiB touched
    buf.sum()
    assert peak_memory()["peak_rss_bytes"] >= 64 * 2**20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_timer_and_allocator_peak():
    lin = nn.Linear(1024, 1024).cuda()
    x = torch.randn(256, 1024, device="cuda")
    reset_peak_memory("cuda")
    with StepTimer(lin) as timer:
        for _ in range(4):
            lin(x)
    mem = peak_memory("cuda")
    assert timer.cuda and len(timer.times) == 4 and all(t > 0 for t in timer.times)
    assert mem["peak_allocated_bytes"] >= 1024 * 1024 * 4


def test_step_timer_times_several_modules():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with StepTimer([a, b]) as timer:
        a(x)
        b(x)
        b(x)
    assert len(timer.times) == 3
    assert weight_bytes([a, b]) == 2 * weight_bytes(a) == 2 * (16 + 4) * 4
