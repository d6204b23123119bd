"""The project's CI quality gate: a fresh mini-world run checked against the committed baseline."""

from __future__ import annotations

from pathlib import Path

from vqbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "results" / "baselines"


def test_mini_run_passes_the_committed_gate(tmp_path, capsys):
    out = tmp_path / "runs"
    config = str(BASELINES / "ci_mini.yaml")
    assert main(["run", "-q", "-c", config, "--set", f"output_dir={out}"]) == 0
    capsys.readouterr()
    args = ["check", str(out), "--baseline", str(BASELINES / "mini_ci")]
    code = main([*args, "--gates", str(BASELINES / "gates.yaml"), "--all"])
    table = capsys.readouterr().out
    assert code == 0, table
    for setting in ("rtn-W8A8", "rtn-W4A8", "qvd-W4A8"):
        assert setting in table
