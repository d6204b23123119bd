"""VBench's scene rule on hand-written captions."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from metrics.scene import SceneConsistency, frame_matches, middle_indices
from vqbench.types import SampleContext, Video


class ScriptedTagger:
    """Returns the caption scripted for each frame, looked up by the frame's pixel value."""

    name = "scripted"

    def __init__(self, captions: list[str]) -> None:
        self.captions = captions

    def tag(self, frames: np.ndarray) -> list[str]:
        return [self.captions[int(f[0, 0, 0])] for f in frames]


def _video(t: int) -> Video:
    return Video(
        np.arange(t, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    )


def test_frame_rule_matches_vbench_check_generate():
    assert frame_matches("a cat in a living room with a sofa", "living room")
    assert frame_matches("a room for living", "living room")  # words, any order
    assert frame_matches("sandy beaches at dusk", "beach")  # substring, as VBench
    assert not frame_matches("a living area", "living room")
    assert not frame_matches("A Living Room", "living room")
    assert frame_matches("A Living Room", "living room", case_sensitive=False)


def test_middle_sampling_matches_vbench():
    assert middle_indices(4, 16) == [1, 5, 9, 13]
    assert middle_indices(16, 16) == list(range(16))
    assert middle_indices(4, 2) == [0, 1, 1, 1]  # padded with the last index


def test_scene_score_is_frame_micro_average_x100():
    captions = [
        "a desert with dunes",
        "sand in the desert",
        "a blue sky",
        "a forest",
        "the ocean",
        "a desert road",
    ]
    tagger = ScriptedTagger(captions)
    m = SceneConsistency(tagger=tagger, frames=None)
    ctx = [
        SampleContext("a red circle in the desert", "a", 0, scene="desert"),
        SampleContext("a square in the desert", "b", 1, scene="desert"),
    ]
    m.update([_video(4), Video(_video(6).frames[2:])], ctx)
    r = m.compute()
    # video a: frames 0..3 -> 2 hits of 4; video b: frames 2..5 -> 1 hit ("a desert road") of 4
    assert r.per_sample == [pytest.approx(50.0), pytest.approx(25.0)]
    assert r.value == pytest.approx(100 * 3 / 8) and r.n == 2
    assert r.params["tagger"] == "scripted" and r.params["frames"] == "all"
    assert m.keys == ["a/0", "b/1"]


def test_scene_weighting_with_unequal_frame_counts_and_errors():
    tagger = ScriptedTagger(["desert", "desert", "x", "x", "x", "x"])
    m = SceneConsistency(tagger=tagger, frames=None)
    m.update([_video(2), _video(6)], [SampleContext("p", "a", 0, scene="desert")] * 2)
    r = m.compute()
    assert r.value == pytest.approx(100 * 4 / 8)  # frame-weighted, not (100 + 33.3) / 2
    assert np.mean(r.per_sample) == pytest.approx((100 + 100 / 3) / 2)
    with pytest.raises(ValueError, match="scene"):
        m.update([_video(2)], [SampleContext("p", "a", 0)])
    sixteen = SceneConsistency(tagger=tagger)
    sixteen.update([_video(2)], [SampleContext("p", "a", 0, scene="desert")])
    assert sixteen.counts == [16]


def test_mini_tagger_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", None)
    m = SceneConsistency(tagger="mini")
    with pytest.raises(RuntimeError, match="load_tagger"):
        m.update([_video(2)], [SampleContext("p", "a", 0, scene="desert")])


def test_mini_tagger_adapter_with_the_real_tagger_class(tmp_path, monkeypatch):
    import types

    from vqbench.mini.evaluators import FrameTagger

    fake = types.ModuleType("vqbench.mini.assets")
    fake.ASSETS = tmp_path
    fake.load_tagger = lambda: FrameTagger(width=8).eval()
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", fake)
    m = SceneConsistency(tagger="mini", frames=4)
    m.update([_video(6)], [SampleContext("p", "a", 0, scene="desert")])
    r = m.compute()
    assert m.counts == [4] and 0.0 <= r.value <= 100.0
    assert r.params["tagger"] == "mini" and r.params["tagger_sha256"] is None


def test_default_tagger_is_tag2text_and_refuses_without_its_weights(tmp_path, monkeypatch):
    """A real model's run must not fall back to the mini tagger (a Latte run scored 0)."""
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "b"))
    m = SceneConsistency()
    assert m.params()["tagger"] == "tag2text"
    with pytest.raises(FileNotFoundError, match=r"tag2text_swin_14m\.pth not found.*huggingface"):
        m.update([_video(2)], [SampleContext("p", "a", 0, scene="desert")])
    problems = SceneConsistency.preflight({}, frames=16, height=64, width=64, device="cpu")
    assert any("tag2text_swin_14m.pth" in p for p in problems)
    assert any("vocab.txt" in p for p in problems)
    assert (
        SceneConsistency.preflight({"tagger": "mini"}, frames=16, height=64, width=64, device="cpu")
        == []
    )
