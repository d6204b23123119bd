"""Each shipped evaluator beats chance clearly on held-out real videos (small sample)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqbench.mini import assets
from vqbench.mini.dataset import ATTRIBUTES, EVAL_SEED_BASE, eval_prompts, render
from vqbench.mini.evaluators import videos_to_tensor

pytestmark = pytest.mark.skipif(
    not assets.available(),
    reason="mini assets not present (train them, see vqbench/mini/README.md)",
)


@pytest.fixture(scope="module")
def held_out():
    prompts = eval_prompts()
    videos = [render(p["attributes"], EVAL_SEED_BASE + 7 + i) for i, p in enumerate(prompts)]
    return prompts, videos


@pytest.mark.parametrize("loader", ["load_classifier", "load_i3d"])
def test_video_networks_beat_chance(loader, held_out) -> None:
    prompts, videos = held_out
    net = getattr(assets, loader)()
    net = getattr(net, "net", net)
    pred = net.predict(videos_to_tensor(videos))
    for key, values in ATTRIBUTES.items():
        acc = np.mean([pred[key][i] == p["attributes"][key] for i, p in enumerate(prompts)])
        assert acc >= 1.0 / len(values) + 0.3, (loader, key, acc)


def test_tagger_finds_the_scene(held_out) -> None:
    prompts, videos = held_out
    tagger = assets.load_tagger()
    hits = [
        p["scene"] in tagger.tags(v.to_tensor())[0] for p, v in zip(prompts, videos, strict=True)
    ]
    assert np.mean(hits) >= 0.8


def test_clip_prefers_the_right_caption(held_out) -> None:
    from vqbench.mini.evaluate import clip_similarity

    prompts, videos = held_out
    model, _ = assets.load_clip()
    texts = [p["text"] for p in prompts]
    own = clip_similarity(model, videos, texts)
    other = clip_similarity(model, videos, texts[1:] + texts[:1])
    assert np.mean(own > other) >= 0.75
    assert torch.is_tensor(torch.as_tensor(own))
