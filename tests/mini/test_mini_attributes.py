"""``attribute_accuracy`` on the mini world: the held-out classifier reads real videos of the
prompts' attributes, misses videos of other attributes, and refuses prompts without them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqbench.mini import assets
from vqbench.mini.dataset import EVAL_SEED_BASE, PROMPTS_DIR, render
from vqbench.mini.evaluators import low_level_stats
from vqbench.registry import METRICS
from vqbench.types import SampleContext, Video

pytestmark = pytest.mark.skipif(not assets.available(), reason="mini assets not present")


def _prompts(n: int = 8) -> list[dict]:
    lines = (PROMPTS_DIR / "mini_eval.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines[:n]]


def test_real_videos_score_high_and_mismatched_ones_low():
    records = _prompts()
    ctx = [SampleContext(r["text"], r["id"], 0, attributes=r["attributes"]) for r in records]
    real = [render(r["attributes"], EVAL_SEED_BASE + 1000) for r in records]
    m = METRICS.get("attribute_accuracy")()
    m.update(real, ctx)
    own = m.compute()
    assert own.value >= 90.0 and own.higher_is_better and own.n == len(records)
    assert set(own.params["per_attribute"]) == {"shape", "colour", "motion", "scene"}
    assert own.params["classifier_sha256"]
    m.reset()
    shifted = real[1:] + real[:1]  # each video scored against another prompt's attributes
    m.update(shifted, ctx)
    assert m.compute().value < own.value - 30.0


def test_prompt_without_attributes_is_refused():
    m = METRICS.get("attribute_accuracy")()
    video = render(_prompts(1)[0]["attributes"], 0)
    with pytest.raises(ValueError, match="attribute_accuracy: prompt p0 carries no"):
        m.update([video], [SampleContext("a cat", "p0", 0)])


def test_only_the_mini_classifier_exists():
    problems = METRICS.get("attribute_accuracy").preflight(
        {"classifier": "clip"}, frames=8, height=32, width=32, device="cpu"
    )
    assert problems and "must be 'mini'" in problems[0]


def test_low_level_stats_are_hand_computed():
    frames = np.zeros((2, 3, 3, 3))
    frames[1] = 10.0  # the second frame is uniformly 10 brighter
    assert low_level_stats(frames) == pytest.approx([0.0, 0.0, 10.0, 0.0])


def test_fvd_embedding_sees_noise_its_network_misses():
    record = _prompts(1)[0]
    clean = [render(record["attributes"], EVAL_SEED_BASE + 1000 + s) for s in range(4)]
    rng = np.random.default_rng(0)
    noisy = [
        Video(np.clip(v.frames + rng.normal(0, 24, v.frames.shape), 0, 255).astype(np.uint8))
        for v in clean
    ]
    det = assets.load_i3d()
    a, b = det.features(clean), det.features(noisy)
    net_shift = np.abs(a[:, :-4] - b[:, :-4]).mean() / np.abs(a[:, :-4]).mean()
    low_shift = np.abs(a[:, -4:] - b[:, -4:]).mean() / np.abs(a[:, -4:]).mean()
    assert low_shift > 5 * net_shift and det.params()["low_level"]["version"] == 1
