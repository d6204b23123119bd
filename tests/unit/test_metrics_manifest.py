"""Backbone manifest resolution, sha256 checks, and the metric catalog."""

from __future__ import annotations

import hashlib

import pytest

from metrics import CATALOG
from metrics.backbones import manifest
from vqbench.registry import METRICS
from vqbench.types import METRIC_REQUIREMENTS, Metric


def test_missing_file_names_file_url_and_location(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "vq"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))
    with pytest.raises(FileNotFoundError) as e:
        manifest.resolve("tag2text_swin_14m")
    msg = str(e.value)
    assert "tag2text_swin_14m.pth" in msg and "huggingface.co" in msg
    assert str(tmp_path / "vq" / "vbench/caption_model/tag2text_swin_14m.pth") in msg
    assert str(tmp_path / "vb" / "caption_model/tag2text_swin_14m.pth") in msg
    with pytest.raises(KeyError):
        manifest.resolve("nope")


def test_resolve_checks_published_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "vq"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))
    fake = tmp_path / "vb" / "clip_model" / "ViT-B-32.pt"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the real weights")
    with pytest.raises(ValueError, match="sha256"):
        manifest.resolve("clip_vit_b32")  # found under VBENCH_CACHE_DIR, rejected by hash
    unverified = tmp_path / "vq" / "fvd" / "rgb_imagenet.pt"
    unverified.parent.mkdir(parents=True)
    unverified.write_bytes(b"weights")
    assert manifest.resolve("i3d_rgb_imagenet") == unverified
    assert manifest.file_sha256(unverified) == hashlib.sha256(b"weights").hexdigest()


def test_manifest_hashes_are_hex_or_none():
    for b in manifest.MANIFEST.values():
        assert b.sha256 is None or (len(b.sha256) == 64 and int(b.sha256, 16) >= 0)
        assert b.url.startswith("https://")


def test_catalog_entries_follow_the_contract():
    assert {"psnr_fp", "fvd", "fvd_fp", "clipsim", "clip_temp", "scene_consistency"} <= set(CATALOG)
    for name in CATALOG:
        cls = METRICS.get(name)
        assert cls.name == name and cls.requires <= METRIC_REQUIREMENTS
        assert "attributes" not in cls.requires or cls.attribute_keys
        assert isinstance(cls.higher_is_better, bool) and cls.version
        assert isinstance(cls(), Metric)  # every constructor parameter has a default
