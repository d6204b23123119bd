"""CLIP-SIM / CLIP-Temp with a random-weight tiny CLIP loaded through ``clip.load(path)``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from metrics.clip_score import CLIPSim, CLIPSimEvalCrafter, CLIPTemp, clip_pixels, resolve_clip
from vqbench.types import SampleContext, Video


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    from clip.model import CLIP

    torch.manual_seed(0)
    model = CLIP(
        embed_dim=32,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=8,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=1,
    )
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _ctx(prompt: str = "a red circle moving left in the desert") -> list[SampleContext]:
    return [SampleContext(prompt=prompt, prompt_id="p0", seed=0)]


def _random_video(seed: int = 0, t: int = 6) -> Video:
    rng = np.random.default_rng(seed)
    return Video(rng.integers(0, 256, size=(t, 40, 48, 3), dtype=np.uint8))


def test_constant_video_has_clip_temp_one(tiny_clip):
    frame = np.random.default_rng(1).integers(0, 256, size=(1, 40, 48, 3), dtype=np.uint8)
    const = Video(np.repeat(frame, 5, axis=0))
    for preprocess in ("evalcrafter", "clip"):
        m = CLIPTemp(backbone=tiny_clip, preprocess=preprocess)
        m.update([const, _random_video()], _ctx() * 2)
        r = m.compute()
        assert r.per_sample[0] == pytest.approx(1.0, abs=1e-5)
        assert r.per_sample[1] < 0.9999 and r.n == 2
        assert r.params["preprocess"] == preprocess and len(r.params["backbone_sha256"]) == 64


def test_clipsim_variants_differ_and_are_cosines(tiny_clip):
    video = _random_video(2)
    values = {}
    for cls in (CLIPSimEvalCrafter, CLIPSim):
        m = cls(backbone=tiny_clip)
        m.update([video], _ctx())
        r = m.compute()
        assert -1.0 <= r.value <= 1.0 and r.ci is None and r.n == 1
        values[r.params["preprocess"]] = r.value
    assert set(values) == {"evalcrafter", "clip"}
    assert abs(values["evalcrafter"] - values["clip"]) > 1e-4
    m = CLIPSim(backbone=tiny_clip)
    direct = float((m.image_features(video) @ m.text_features(_ctx()[0].prompt).T).mean())
    assert direct == pytest.approx(values["clip"], abs=1e-6)


def test_pixel_paths():
    frames = torch.full((2, 3, 20, 40), 255.0)
    ec = clip_pixels(frames, 16, "evalcrafter")
    assert ec.shape == (2, 3, 16, 16) and ec.max().item() == pytest.approx(255.0)
    cp = clip_pixels(frames, 16, "clip")
    assert cp.shape == (2, 3, 16, 16)
    assert cp[0, 0, 0, 0].item() == pytest.approx((1 - 0.48145466) / 0.26862954, rel=1e-4)
    with pytest.raises(ValueError):
        clip_pixels(frames, 16, "other")


def test_backbone_resolution_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ViT-B-32.pt.*openaipublic"):
        resolve_clip("clip_vit_b32")
    with pytest.raises(FileNotFoundError):
        resolve_clip(str(tmp_path / "nope.pt"))
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", None)
    with pytest.raises(RuntimeError, match="load_clip"):
        _ = CLIPSim(backbone="mini").model


def test_mini_backbone_via_assets_load_clip(tiny_clip, tmp_path, monkeypatch):
    import types

    import clip

    fake = types.ModuleType("vqbench.mini.assets")
    fake.ASSETS = tmp_path
    fake.load_clip = lambda: clip.load(tiny_clip, device="cpu", jit=False)
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", fake)
    m = CLIPTemp(backbone="mini")
    m.update([_random_video(3)], _ctx())
    r = m.compute()
    assert r.params["backbone"] == "mini" and -1.0 <= r.value <= 1.0
