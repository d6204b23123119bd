"""Unit tests of the harness core: registry, config, records, store, video IO, compat."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vqbench.config import ConfigError, RunConfig, apply_override, config_hash, load_config, to_dict
from vqbench.records import RecordError, RunRecord, validate_record
from vqbench.registry import Registry, UnknownNameError
from vqbench.store import atomic_write_text
from vqbench.types import TokenLayout, Video
from vqbench.video import read_video, write_video


def test_registry_lazy_and_did_you_mean():
    reg = Registry("thing")
    reg.register("ordered", "collections:OrderedDict")
    from collections import OrderedDict

    assert reg.get("ordered") is OrderedDict
    with pytest.raises(UnknownNameError, match="did you mean 'ordered'"):
        reg.get("orderd")


def test_config_overrides_and_hash_stability():
    cfg = load_config(overrides=["quantizers.0.w_bits=4", "generation.seeds=[1, 2]"])
    assert cfg.quantizers[0].w_bits == 4 and cfg.generation.seeds == [1, 2]
    d = to_dict(cfg)
    shuffled = json.loads(json.dumps(dict(reversed(list(d.items())))))
    assert config_hash(d) == config_hash(shuffled) == config_hash(cfg)
    assert config_hash(cfg) != config_hash(RunConfig())


def test_quantizer_seed_validated_and_kept_out_of_unseeded_hashes():
    from vqbench.config import QuantSpec, run_hash
    from vqbench.preflight import config_problems

    seeded = RunConfig(quantizers=[QuantSpec("q_vdit", 4, 6, seed=1)])
    q = seeded.quantizers[0]
    assert q.dirname == "q_vdit-W4A6-seed1" and q.label == "q_vdit-W4A6"
    assert q.method_params() == {"seed": 1} and config_problems(seeded) == []
    assert run_hash(seeded) != run_hash(RunConfig(quantizers=[QuantSpec("q_vdit", 4, 6, seed=2)]))
    # an unset seed does not enter the hash: records from before the field stay current
    unseeded = RunConfig(quantizers=[QuantSpec("rtn", 8, 8)])
    d = to_dict(unseeded)
    d["quantizers"][0].pop("seed")
    assert run_hash(unseeded) == config_hash({**d, "quiet": False, "cache_dir": None})
    bad = RunConfig(quantizers=[QuantSpec("rtn", 8, 8, seed=0)])
    assert any("rtn's calibration is deterministic" in p for p in config_problems(bad))
    twice = RunConfig(quantizers=[QuantSpec("q_vdit", 4, 6, params={"seed": 1}, seed=2)])
    assert any("quantizers[0].seed: also set in params.seed" in p for p in config_problems(twice))
    two = [QuantSpec("q_vdit", 4, 6, seed=0), QuantSpec("q_vdit", 4, 6, seed=1)]
    assert config_problems(RunConfig(quantizers=two)) == []  # two seeds: two settings


def test_config_unknown_field_named():
    with pytest.raises(ConfigError, match=r"generation\.stepz: unknown field.*'steps'"):
        load_config(overrides=["generation.stepz=3"])
    with pytest.raises(ConfigError, match="generation.steps: expected an integer"):
        load_config(overrides=["generation.steps=many"])
    d = {"a": [1, 2]}
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(d, "a.5=3")


def test_record_validation_names_field(tmp_path):
    rec = RunRecord(
        run_id="r/fp",
        created="now",
        model={"id": "m", "dtype": "float32"},
        generation={"spec": {}, "seeds": [0], "prompts_hash": "x"},
    )
    path = rec.save(tmp_path / "run.json")
    assert RunRecord.load(path).label == "fp"
    d = rec.to_dict()
    d["metrics"] = {"psnr": {"value": 1.0}}
    with pytest.raises(RecordError, match="metrics.psnr.n: missing"):
        validate_record(d)
    d = rec.to_dict()
    d["quantizer"] = {"name": "rtn"}
    with pytest.raises(RecordError, match="quantizer.version: missing"):
        validate_record(d)


def test_atomic_write_leaves_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644  # as open() would, not 0600


def test_video_round_trip(tmp_path):
    base = np.linspace(0, 255, 32 * 48 * 3).reshape(32, 48, 3)
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(12)]).astype(np.uint8)
    v = Video(frames, fps=8.0)
    out = read_video(write_video(v, tmp_path / "v.mp4"))
    assert out.num_frames == 12 and out.fps == pytest.approx(8.0)
    assert np.abs(out.frames.astype(float) - frames).mean() < 3.0
    lossless = read_video(write_video(v, tmp_path / "l.mp4", lossless=True))
    assert np.abs(lossless.frames.astype(float) - frames).mean() < 1.0


def test_video_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        Video(np.zeros((2, 4, 4, 3), dtype=np.float32))


def test_token_layouts_find_true_frames():
    import torch

    b, f, s, c = 2, 3, 4, 5
    x = torch.randn(b, f, s, c)
    spatial = x.reshape(b * f, s, c)
    temporal = x.transpose(1, 2).reshape(b * s, f, c)
    joint = torch.cat([torch.zeros(b, 7, c), x.reshape(b, f * s, c)], 1)
    assert torch.equal(TokenLayout("spatial", f, s).to_frames(spatial), x)
    assert torch.equal(TokenLayout("temporal", f, s).to_frames(temporal), x)
    assert torch.equal(TokenLayout("joint", f, s, prefix=7).to_frames(joint), x)
    ids = TokenLayout("joint", f, s, prefix=7).frame_index(joint)
    assert ids[0, :7].eq(-1).all() and ids[0, 7:].tolist() == [i // s for i in range(f * s)]


def test_torchvision_fix_active_in_subprocess():
    code = "import torchvision, sys; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
