"""Model identity and integrity: ids and revisions from folders, class checks, weight checks.

Also the Wan 2.2 A14B acceptance case: a saved two-expert folder gets both experts quantized.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from quantizers.core import QuantLinear
from vqbench.adapters import adapter_class, identity
from vqbench.adapters.identity import ModelPathError
from vqbench.config import GenerationSpec
from vqbench.registry import QUANTIZERS

PROMPTS = ["a red circle moves left", "a dog runs on the beach"]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """tiny-wan and tiny two-expert Wan 2.2 pipelines saved with ``save_pretrained``."""
    root = tmp_path_factory.mktemp("pipes")
    out = {}
    for name in ("tiny-wan", "tiny-wan2.2-a14b", "tiny-cogvideox", "tiny-cogvideox-i2v"):
        a = adapter_class(name)()
        a.load()
        a.pipe.save_pretrained(root / name)
        out[name] = root / name
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_folder_names_directory_and_hf_download(tmp_path):
    for name in ("latte", "cogvideox", "wan", "wan2.2-a14b"):
        cls = adapter_class(name)
        missing = tmp_path / "nowhere"
        with pytest.raises(ValueError, match=re.escape(str(missing))) as err:
            cls(path=str(missing)).load()
        assert f"hf download {cls.hub_id} --local-dir" in str(err.value)
        assert "huggingface-cli" not in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "cache" / "models"))):
            cls(path=None).load()


@pytest.mark.parametrize("name", ["tiny-latte", "mini"])
def test_nonexistent_model_path_is_an_error_for_every_model(name):
    with pytest.raises(ModelPathError, match="model.path"):
        adapter_class(name)(path="/nonexistent").load()


def test_tiny_model_refuses_a_folder_of_another_class(saved):
    with pytest.raises(ValueError, match="holds a CogVideoXPipeline.*use model.name=cogvideox$"):
        adapter_class("tiny-wan")(path=str(saved["tiny-cogvideox"])).load()


def test_i2v_folder_given_to_the_t2v_adapter_names_the_i2v_one(saved):
    with pytest.raises(ValueError, match="use model.name=cogvideox-i2v$") as err:
        adapter_class("cogvideox")(path=str(saved["tiny-cogvideox-i2v"])).load()
    assert "\n" not in str(err.value)


def test_wrong_family_names_the_right_adapter(saved):
    with pytest.raises(ValueError) as err:
        adapter_class("latte")(path=str(saved["tiny-wan"])).load()
    msg = str(err.value)
    assert "WanPipeline" in msg and msg.endswith("use model.name=wan") and "\n" not in msg


def test_two_folders_of_one_family_get_different_ids_and_revisions(saved):
    infos = []
    for name in ("tiny-wan", "tiny-wan2.2-a14b"):
        a = adapter_class("wan")(path=str(saved[name]))
        a.load()
        infos.append(a.model_info())
    assert infos[0]["id"] != infos[1]["id"] and infos[0]["revision"] != infos[1]["revision"]
    assert all(i["class_name"] == "WanPipeline" and i["revision"] for i in infos)


def test_one_changed_weight_changes_the_revision(saved, tmp_path):
    copy = _copy(saved["tiny-wan"], tmp_path / "copy")
    before = identity.folder_digest(copy)
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    after = identity.folder_digest(copy)
    assert identity.identity("WanPipeline", before) != identity.identity("WanPipeline", after)


def test_digests_are_cached_per_size_and_mtime(saved, tmp_path, monkeypatch):
    copy = _copy(saved["tiny-wan"], tmp_path / "copy")
    first = identity.folder_digest(copy)
    assert (tmp_path / "cache" / "digests.json").is_file()
    calls: list[Path] = []
    real = identity.sha256_file
    monkeypatch.setattr(identity, "sha256_file", lambda p: calls.append(p) or real(p))
    assert identity.folder_digest(copy) == first and calls == []
    cfg = copy / "transformer" / "config.json"
    os.utime(cfg, ns=(cfg.stat().st_atime_ns, cfg.stat().st_mtime_ns + 10**9))
    assert identity.folder_digest(copy) == first and calls == [cfg]


def test_hub_snapshot_uses_blob_hashes(saved, tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--org--tiny"
    snap = repo / "snapshots" / "abc123"
    for src in sorted(saved["tiny-wan"].rglob("*")):
        if src.is_file():
            blob = repo / "blobs" / identity.sha256_file(src)
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, blob)
            link = snap / src.relative_to(saved["tiny-wan"])
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    monkeypatch.setattr(identity, "sha256_file", lambda p: pytest.fail(f"hashed {p}"))
    files = identity.folder_digest(snap)
    assert files and all(len(v) == 64 for v in files.values())
    a = adapter_class("wan")(path=str(snap))
    a.load()
    assert a.model_info()["snapshot"] == "abc123"


def test_truncated_safetensors_is_refused(saved, tmp_path):
    copy = _copy(saved["tiny-wan"], tmp_path / "copy")
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=re.escape(str(weights)) + ".*truncated"):
        adapter_class("wan")(path=str(copy)).load()


def test_malformed_model_index_is_refused(saved, tmp_path):
    copy = _copy(saved["tiny-wan"], tmp_path / "copy")
    (copy / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(copy / "model_index.json"))) as err:
        adapter_class("wan")(path=str(copy)).load()
    assert "\n" not in str(err.value)


def test_relocated_mini_generator_is_verified(tmp_path):
    from vqbench.mini.assets import ASSETS, AssetError, available

    if not available():
        pytest.skip("mini world weights are not installed")
    copy = _copy(ASSETS / "generator", tmp_path / "gen")
    a = adapter_class("mini")(path=str(copy))
    a.load()
    shipped = adapter_class("mini")()
    shipped.load()
    assert a.model_info()["revision"] == shipped.model_info()["revision"]
    assert a.model_info()["id"] == shipped.model_info()["id"]
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=re.escape(str(weights))) as err:
        adapter_class("mini")(path=str(copy)).load()
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_corrupt_manifest_is_a_one_line_value_error(tmp_path):
    from vqbench.mini.assets import ASSETS, available

    if not available():
        pytest.skip("mini world weights are not installed")
    root = tmp_path / "assets"
    _copy(ASSETS / "generator", root / "generator")
    (root / "manifest.json").write_text('{"files": {"generator/x": {"sha256": 1')
    with pytest.raises(ValueError, match=re.escape(str(root / "manifest.json"))) as err:
        adapter_class("mini")(path=str(root / "generator")).load()
    assert "\n" not in str(err.value)


def test_wan22_a14b_folder_gets_both_experts_quantized(saved):
    """RTN W4A8: every linear of both experts is a QuantLinear, each calibrated on its steps."""
    a = adapter_class("wan2.2-a14b")(path=str(saved["tiny-wan2.2-a14b"]))
    a.load()
    assert list(a.denoisers()) == ["transformer", "transformer_2"]
    spec = a.resolve(GenerationSpec(steps=4, frames=9, height=32, width=32, batch_size=2))
    calib = a.capture(PROMPTS, [1, 2], spec)
    targets = a.quant_targets(spec)
    assert [t.name for t in targets] == ["transformer", "transformer_2"]
    boundary = 0.875 * 1000
    cls = QUANTIZERS.get("rtn")
    for t in targets:
        linears = {n for n, m in t.module.named_modules() if isinstance(m, nn.Linear)}
        assert set(t.linears()) == linears
        rows = a.calibration_for(t.name, calib)
        high = rows.timesteps.double() >= boundary
        assert len(rows) and bool(high.all() if t.name == "transformer" else (~high).all())
        t.skip = []  # every linear, embedders and the final layer included
        q = cls.from_spec(4, 8)
        q.quantize(t, q.calibrate(t, rows))
        mods = dict(t.module.named_modules())
        assert all(isinstance(mods[n], QuantLinear) for n in linears), t.name
    video = a.generate(PROMPTS[:1], [5], spec)[0]
    assert video.frames.shape == (spec.frames, spec.height, spec.width, 3)
    assert torch.isfinite(torch.from_numpy(video.frames).float()).all()


def test_wan22_a14b_run_record_covers_both_experts(saved, tmp_path):
    """End to end: the record of a two-expert run counts the linears of both experts."""
    from vqbench.cli import main
    from vqbench.records import find_records

    out = tmp_path / "runs"
    argv = ["run", "-q", "--set", "model.name=wan2.2-a14b"]
    for s in (
        f"model.path={saved['tiny-wan2.2-a14b']}",
        f"output_dir={out}",
        f"cache_dir={tmp_path / 'cache'}",
        "generation.prompts=tiny",
        "generation.steps=4",
        "generation.frames=9",
        "generation.height=32",
        "generation.width=32",
        "calibration.prompts=tiny",
        "metrics=[psnr_fp]",
        "latency.enabled=false",
        "quantizers=[{name: rtn, w_bits: 4, a_bits: 8}]",
    ):
        argv += ["--set", s]
    assert main(argv) == 0
    (rec,) = [r for r in find_records(out) if r.quantizer]
    a = adapter_class("wan2.2-a14b")(path=str(saved["tiny-wan2.2-a14b"]))
    a.load()
    total = sum(isinstance(m, nn.Linear) for d in a.denoisers().values() for m in d.modules())
    eff = rec.quantizer["effective_bits"]
    assert rec.quantizer["targets"] == ["transformer", "transformer_2"]
    assert eff["quantized_layers"] + eff["fp_layers"] == total
    assert rec.quantizer["replaced_layers"] == eff["quantized_layers"] > total // 2
