"""The shipped mini generator through ``MiniAdapter``: fast, deterministic, structured."""

from __future__ import annotations

import time

import pytest
import torch

from vqbench.config import GenerationSpec
from vqbench.mini import assets
from vqbench.types import ROLES

pytestmark = pytest.mark.skipif(
    not assets.available(),
    reason="mini assets not present (train them, see vqbench/mini/README.md)",
)
PROMPTS = ["a red circle moving left in the sky", "a blue square moving up in the desert"]


@pytest.fixture(scope="module")
def adapter():
    return assets.load_generator()


def test_two_prompt_generation_is_fast_and_deterministic(adapter) -> None:
    spec = GenerationSpec(steps=6, batch_size=2)
    t0 = time.time()
    a = adapter.generate(PROMPTS, [0, 1], spec)
    assert time.time() - t0 < 30
    b = adapter.generate(PROMPTS[:1], [0], spec)
    d = adapter.defaults
    assert a[0].frames.shape == (d["frames"], d["height"], d["width"], 3)
    assert abs(a[0].frames.astype(int) - b[0].frames.astype(int)).max() <= 1
    assert not (a[0].frames == a[1].frames).all()


def test_capture_has_cond_and_uncond_rows(adapter) -> None:
    spec = GenerationSpec(steps=3, batch_size=2)
    cs = adapter.capture(PROMPTS, [0, 1], spec)
    assert len(cs) == 3 * 2 * 2 and int(cs.is_uncond.sum()) == 6
    out = adapter.calib_forward(next(cs.batches(4)))
    torch.testing.assert_close(out, cs.outputs[:4], atol=1e-4, rtol=1e-4)


def test_roles_and_layouts_cover_every_linear(adapter) -> None:
    spec = adapter.resolve(GenerationSpec())
    roles, layouts = adapter.layer_roles(), adapter.token_layouts(spec)
    linears = {n for n, m in adapter.denoiser().named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(roles) == linears == set(layouts)
    assert set(roles.values()) <= set(ROLES)
    assert roles["transformer_blocks.0.attn1.to_q"] == "spatial_attn"
    assert roles["transformer_blocks.0.attn2.to_k"] == "cross_attn"
    assert roles["temporal_transformer_blocks.0.attn1.to_q"] == "temporal_attn"
    assert roles["proj_out"] == "final"
    assert layouts["transformer_blocks.0.attn2.to_k"].kind == "none"
    assert layouts["temporal_transformer_blocks.0.ff.net.2"].kind == "temporal"
    assert adapter.blocks()[:2] == ["transformer_blocks.0", "temporal_transformer_blocks.0"]
