"""Stats and fidelity (PSNR/SSIM vs FP) on hand-made tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.base import result_from_samples
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
