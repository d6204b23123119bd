"""Native ``imaging_quality``: Immerkær's noise estimate and Crété-Roffet's blur effect on
hand-sized frames, and the metric's contract."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.imaging import blur_effect, frame_quality, luminance, noise_sigma
from vqbench.registry import METRICS
from vqbench.types import SampleContext, Video


def test_noise_sigma_of_an_impulse_is_hand_computed():
    lum = np.zeros((1, 3, 3))
    lum[0, 1, 1] = 10.0  # one output pixel: the kernel's centre weight 4 times 10
    assert noise_sigma(lum) == pytest.approx([np.sqrt(np.pi / 2) * 40 / 6])
    assert noise_sigma(np.full((2, 5, 5), 7.0)) == pytest.approx([0.0, 0.0])


def test_noise_sigma_tracks_gaussian_noise():
    rng = np.random.default_rng(0)
    lum = 100.0 + rng.normal(0.0, 8.0, (4, 64, 64))
    assert noise_sigma(lum).mean() == pytest.approx(8.0, rel=0.05)


def test_blur_effect_of_a_step_is_hand_computed():
    # a row [0, 0, 9, 9] (no vertical differences): the 3-tap mean gives [0, 3, 6, 9]
    # (reflected edges), so D_F = [0, 9, 0], D_B = [3, 3, 3], V = [0, 6, 0]: (9 - 6) / 9
    lum = np.tile(np.array([0.0, 0.0, 9.0, 9.0]), (1, 3, 1))
    assert blur_effect(lum, h=3) == pytest.approx([1 / 3])
    assert blur_effect(np.zeros((1, 4, 4)), h=3) == pytest.approx([1.0])  # flat: blurred


def test_frame_quality_combines_blur_and_noise():
    frames = np.repeat(np.tile(np.array([0, 0, 9, 9], np.uint8), (1, 3, 1))[..., None], 3, -1)
    assert luminance(frames) == pytest.approx(frames[..., 0].astype(float))
    # the step has no Immerkær response (each column is constant): sigma 0
    assert frame_quality(frames, sigma0=10.0, h=3) == pytest.approx([100 * (2 / 3)])


def test_metric_ranks_clean_above_noisy_and_blurred():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:32, 0:32]
    disc = 40 + 3 * x + 150 * (((x - 14) ** 2 + (y - 16) ** 2) < 60)  # a disc on a ramp
    clean = np.repeat(disc[None, ..., None], 3, -1)
    clean = np.repeat(clean, 4, 0).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 24, clean.shape), 0, 255).astype(np.uint8)
    pad = np.pad(clean.astype(float), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    blurred = (sum(pad[:, i : i + 32, j : j + 32] for i in range(3) for j in range(3)) / 9).round()
    m = METRICS.get("imaging_quality")()
    ctx = [SampleContext(prompt="p", prompt_id=f"id{i}", seed=0) for i in range(3)]
    m.update([Video(v.astype(np.uint8)) for v in (clean, noisy, blurred)], ctx)
    r = m.compute()
    assert r.per_sample[0] > r.per_sample[1] and r.per_sample[0] > r.per_sample[2]
    assert r.name == "imaging_quality" and r.higher_is_better and r.params["native"]


@pytest.mark.parametrize("params", [{"sigma0": 0.0}, {"sigma0": float("nan")}, {"blur_window": 1}])
def test_bad_params_are_refused_by_preflight(params):
    problems = METRICS.get("imaging_quality").preflight(
        params, frames=8, height=32, width=32, device="cpu"
    )
    assert problems and "imaging_quality" in problems[0]
