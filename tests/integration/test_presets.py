"""Every preset in presets/ validates (dry run: no model is loaded) and cites its paper table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vqbench.cli import main

PRESETS = sorted((Path(__file__).resolve().parents[2] / "presets").glob("*.yaml"))


def test_there_are_presets_for_the_seed_papers():
    names = {p.stem for p in PRESETS}
    assert {"s2q_vdit_cogvideox_2b", "s2q_vdit_cogvideox_5b", "s2q_vdit_hunyuanvideo"} <= names
    assert "q_vdit_latte" in names


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_validates(preset, tmp_path, capsys):
    text = preset.read_text()
    assert "Tab." in text.split("model:")[0]  # the header comment cites the paper's table
    data = yaml.safe_load(text)
    g = data["generation"]
    for key in ("prompts", "steps", "guidance", "frames", "height", "width"):
        assert g.get(key) is not None, key
    assert data["quantizers"] and data["metrics"]
    argv = ["validate", "-c", str(preset), "--set", f"model.path={tmp_path / 'weights'}"]
    code = main([*argv, "--config-only"])  # a GPU machine's config: no device or weights here
    out = capsys.readouterr().out
    assert code == 0, out
    plan = json.loads(out)
    assert plan["config"]["model"]["name"] == data["model"]["name"]
    assert plan["config"]["model"]["path"] == str(tmp_path / "weights")
    # the full check names what this machine lacks (no GPU, no weights), one line each
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("vqbench: error: ") for line in err)
    assert any("model.path" in line or "model.device" in line for line in err)
