"""Stats, fidelity (PSNR/SSIM vs FP) and efficiency helpers on hand-made tensors."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from metrics.base import result_from_samples
from metrics.efficiency import (
    StepTimer,
    WallTimer,
    compression_ratio,
    latency_summary,
    measure_peak_memory,
    peak_memory,
    weight_bytes,
)
from metrics.fidelity import PSNRvsFP, SSIMvsFP, psnr, ssim
from vqbench.stats import bootstrap_ci, bootstrap_statistic_ci, mean_ci, paired_deltas
from vqbench.types import SampleContext, Video


def _video(seed: int, t: int = 4, h: int = 24, w: int = 24) -> Video:
    rng = np.random.default_rng(seed)
    return Video(rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8))


def _ctx(i: int, fp: Video | None) -> SampleContext:
    return SampleContext(prompt=f"p{i}", prompt_id=f"id{i}", seed=0, fp_video=fp)


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=200)
    ci = bootstrap_ci(x)
    assert ci == bootstrap_ci(x)
    assert ci[0] < x.mean() < ci[1]
    assert ci[1] - ci[0] == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.25)
    assert bootstrap_ci([1.0]) is None
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, float("nan")])


def test_statistic_ci_shifts_by_the_bootstrap_bias():
    """Duplicates per resample: 0 on the full set, ~4.4 of 12 on a resample (an inflated
    statistic, like FVD); the bias-corrected interval holds the estimate again."""

    def dups(i: np.ndarray) -> float:
        return float(len(i) - len(np.unique(i)))

    plain = bootstrap_statistic_ci((12,), dups, n_resamples=200)
    fixed = bootstrap_statistic_ci((12,), dups, n_resamples=200, estimate=0.0)
    assert plain[0] > 0.0  # the plain percentile interval misses the estimate
    assert fixed[0] <= 0.0 <= fixed[1]
    shift = plain[0] - fixed[0]
    assert 3.5 < shift < 5.5 and plain[1] - fixed[1] == pytest.approx(shift)


def test_paired_deltas_use_shared_keys_only():
    d = paired_deltas({"a/0": 3.0, "b/0": 5.0, "c/0": 1.0}, {"a/0": 1.0, "b/0": 4.0})
    assert d.n == 2 and d.mean == pytest.approx(1.5)
    assert d.deltas == {"a/0": 2.0, "b/0": 1.0}
    # t-interval, n = 2: 1.5 -/+ t_{1, .975} (12.7062) * 0.7071 / sqrt(2)
    assert d.method == "t" and d.ci == (
        pytest.approx(-4.8531, abs=1e-4),
        pytest.approx(7.8531, abs=1e-4),
    )
    p = paired_deltas({"a/0": 3.0, "b/0": 5.0}, {"a/0": 1.0, "b/0": 4.0}, method="percentile")
    assert p.ci == (pytest.approx(1.0), pytest.approx(2.0))
    with pytest.raises(ValueError):
        paired_deltas({"a/0": 1.0}, {"b/0": 1.0})


def test_mean_ci_methods_hand_computed():
    x = [1.0, 2.0, 3.0, 4.0]  # mean 2.5, s = 1.29099; t_{3, .975} = 3.18245 -> half 2.05426
    assert mean_ci(x, "t") == (pytest.approx(0.44574, abs=1e-5), pytest.approx(4.55426, abs=1e-5))
    lo, hi = mean_ci(x, "bca")
    assert 1.0 <= lo < 2.5 < hi <= 4.0 and mean_ci(x, "bca") == (lo, hi)  # seeded
    assert mean_ci(x, "percentile") == bootstrap_ci(x)
    assert mean_ci([2.0, 2.0], "bca") == (2.0, 2.0) and mean_ci([1.0], "t") is None
    with pytest.raises(ValueError, match="method must be one of"):
        mean_ci(x, "normal")


def test_result_from_samples():
    r = result_from_samples("m", [0.1, 0.3], version="2", higher_is_better=False, scale=100)
    assert r.value == pytest.approx(20.0) and r.n == 2 and r.version == "2"
    assert r.per_sample == [pytest.approx(10.0), pytest.approx(30.0)]
    assert 10.0 <= r.ci[0] <= r.ci[1] <= 30.0
    with pytest.raises(ValueError):
        result_from_samples("m", [], version="1", higher_is_better=True)


def test_psnr_known_values():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = np.full_like(a, 1)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255.0))
    assert psnr(a, a) == 100.0
    assert psnr(a, a, max_db=60.0) == 60.0


def test_ssim_identity_and_degradation():
    v = _video(0, h=32, w=32).frames
    assert ssim(v, v) == pytest.approx(1.0)
    assert ssim(v, v, channel="rgb") == pytest.approx(1.0)
    noisy = np.clip(v.astype(int) + np.random.default_rng(1).integers(-40, 41, v.shape), 0, 255)
    s_noisy = ssim(v, noisy.astype(np.uint8))
    s_other = ssim(v, _video(5, h=32, w=32).frames)
    assert 1.0 > s_noisy > s_other
    assert abs(s_other) < 0.1  # independent noise images are uncorrelated
    assert ssim(v[:, :5, :5], v[:, :5, :5]) == pytest.approx(1.0)  # window shrinks to fit


def test_ssim_matches_closed_form_for_constant_frames():
    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = np.full((1, 16, 16, 3), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_fidelity_metrics_against_fp():
    fps = [_video(i) for i in range(4)]
    quant = [fps[0], fps[1], _video(10), _video(11)]
    ctx = [_ctx(i, fps[i]) for i in range(4)]
    m = PSNRvsFP()
    m.update(quant[:2], ctx[:2])
    m.update(quant[2:], ctx[2:])
    r = m.compute()
    assert r.n == 4 and r.per_sample[:2] == [100.0, 100.0]
    assert r.per_sample[2] < 15 and r.ci is not None and r.params["max_db"] == 100.0
    assert m.keys == ["id0/0", "id1/0", "id2/0", "id3/0"]
    s = SSIMvsFP(channel="rgb")
    s.update(quant, ctx)
    rs = s.compute()
    assert rs.per_sample[0] == pytest.approx(1.0) and rs.per_sample[3] < 0.2
    assert rs.params["channel"] == "rgb" and rs.name == "ssim_fp"
    s.reset()
    with pytest.raises(ValueError):
        s.compute()


def test_fidelity_errors():
    m = PSNRvsFP()
    with pytest.raises(ValueError, match="fp_video"):
        m.update([_video(0)], [_ctx(0, None)])
    with pytest.raises(ValueError, match="shape"):
        m.update([_video(0, t=3)], [_ctx(0, _video(0))])
    with pytest.raises(ValueError):
        m.update([_video(0)], [])


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
    with measure_peak_memory() as mem:
        buf = np.ones(64 * 2**20 // 8)  # 64 MiB touched
        buf.sum()
    assert mem["peak_rss_bytes"] >= 64 * 2**20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_timer_and_allocator_peak():
    lin = nn.Linear(1024, 1024).cuda()
    x = torch.randn(256, 1024, device="cuda")
    with measure_peak_memory("cuda") as mem, StepTimer(lin) as timer:
        for _ in range(4):
            lin(x)
    assert timer.cuda and len(timer.times) == 4 and all(t > 0 for t in timer.times)
    assert mem["peak_allocated_bytes"] >= 1024 * 1024 * 4
