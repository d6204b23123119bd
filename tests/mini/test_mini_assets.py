"""Shipped mini-world weights: manifest, sha256 verification and loaders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vqbench.mini import assets

pytestmark = pytest.mark.skipif(
    not assets.available(),
    reason="mini assets not present (train them, see vqbench/mini/README.md)",
)


def test_manifest_matches_files_and_budget() -> None:
    manifest = assets.verify()
    names = set(manifest["files"])
    for required in (
        "clip.pt",
        "i3d.safetensors",
        "classifier.safetensors",
        "tagger.safetensors",
        "generator/transformer/diffusion_pytorch_model.safetensors",
        "generator/text_encoder/diffusion_pytorch_model.safetensors",
        "generator/scheduler/scheduler_config.json",
    ):
        assert required in names
    assert manifest["total_bytes"] <= 25 * 1024 * 1024


def test_tampered_file_is_named(tmp_path: Path) -> None:
    shutil.copy(assets.MANIFEST, tmp_path / "manifest.json")
    (tmp_path / "tagger.safetensors").write_bytes(b"not the weights")
    with pytest.raises(assets.AssetError, match="tagger.safetensors"):
        assets.verify(tmp_path, files=["tagger.safetensors"])
    with pytest.raises(assets.AssetError, match="missing file .*i3d.safetensors"):
        assets.verify(tmp_path, files=["i3d.safetensors"])
    assert json.loads((tmp_path / "manifest.json").read_text())["files"]


def test_clip_loads_through_clip_load() -> None:
    import clip
    import torch

    model, preprocess = assets.load_clip()
    assert isinstance(model, clip.model.CLIP)
    with torch.no_grad():
        t = model.encode_text(clip.tokenize(["a red circle moving left in the sky"]))
    assert t.dtype == torch.float32 and t.shape == (1, model.text_projection.shape[1])
