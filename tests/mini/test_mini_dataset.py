"""The mini world's procedural dataset: determinism, shapes, prompt suites."""

from __future__ import annotations

import json
from collections import Counter

import torch

from vqbench.mini import dataset as ds


def test_same_seed_same_videos() -> None:
    a, ma = ds.render_batch(ds.sample_batch(6, torch.Generator().manual_seed(3), 0.5))
    b, mb = ds.render_batch(ds.sample_batch(6, torch.Generator().manual_seed(3), 0.5))
    c, _ = ds.render_batch(ds.sample_batch(6, torch.Generator().manual_seed(4), 0.5))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)
    assert a.shape == (6, 3, ds.FRAMES, ds.SIZE, ds.SIZE)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_render_is_deterministic_and_seed_dependent() -> None:
    attrs = {"colour": "red", "shape": "circle", "motion": "left", "scene": "sea"}
    v1, v2, v3 = ds.render(attrs, 5), ds.render(attrs, 5), ds.render(attrs, 6)
    assert v1.frames.shape == (ds.FRAMES, ds.SIZE, ds.SIZE, 3)
    assert (v1.frames == v2.frames).all()
    assert not (v1.frames == v3.frames).all()  # the sea's wave phase depends on the seed


def test_world_size_and_captions() -> None:
    assert len(ds.SHAPES) >= 4 and len(ds.COLOURS) >= 6
    assert len(ds.MOTIONS) >= 6 and len(ds.SCENES) >= 5
    attrs = {"colour": "red", "shape": "circle", "motion": "left", "scene": "desert"}
    assert ds.caption(attrs) == "a red circle moving left in the desert"
    two = dict(attrs, second={"colour": "blue", "shape": "square", "motion": "up"})
    assert ds.caption(two) == "a red circle moving left and a blue square moving up in the desert"


def test_object_moves_as_captioned() -> None:
    b = ds.batch_from_attributes(
        [{"colour": "red", "shape": "square", "motion": m, "scene": "night"} for m in ds.MOTIONS],
        [0] * len(ds.MOTIONS),
    )
    _, mask = ds.render_batch(b)
    xs = torch.arange(ds.SIZE, dtype=torch.float32)
    m = mask[:, 0]  # [B, F, H, W]
    area = m.sum((2, 3))
    cx = (m.sum(2) * xs).sum(-1) / area
    cy = (m.sum(3) * xs).sum(-1) / area
    left, right, up, down, closer, away = range(6)
    assert cx[left, -1] < cx[left, 0] and cx[right, -1] > cx[right, 0]
    assert cy[up, -1] < cy[up, 0] and cy[down, -1] > cy[down, 0]
    assert area[closer, -1] > area[closer, 0] and area[away, -1] < area[away, 0]


def test_prompt_files_match_generators_and_are_balanced() -> None:
    for name, fn in (("mini_eval", ds.eval_prompts), ("mini_calib", ds.calib_prompts)):
        lines = (ds.PROMPTS_DIR / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in lines] == fn()
    ev = ds.eval_prompts()
    for key, values in ds.ATTRIBUTES.items():
        counts = Counter(p["attributes"][key] for p in ev)
        assert set(counts) == set(values)
        assert max(counts.values()) - min(counts.values()) <= 1
    calib_texts = {p["text"] for p in ds.calib_prompts()}
    assert not calib_texts & {p["text"] for p in ev}
    for p in ev:
        assert p["scene"] == p["attributes"]["scene"] and p["license"] == "Apache-2.0"
