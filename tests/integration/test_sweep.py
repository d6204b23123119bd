"""``vqbench sweep`` on the tiny random Latte: cells, cache, dry run, SIGKILL resume, submitit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vqbench.cache import CALIBRATION, FP_VIDEOS, Cache
from vqbench.cli import main
from vqbench.config import ConfigError
from vqbench.records import RunRecord
from vqbench.sweep import cells, is_done, load_sweep, select_cells

SWEEP = """\
base:
  model: {{name: tiny-latte}}
  generation: {{prompts: tiny, num_prompts: 1, steps: 2, batch_size: 1}}
  calibration: {{prompts: tiny, num_prompts: 1}}
  latency: {{enabled: false}}
  metrics: [psnr_fp]
models: [tiny-latte]
quantizers: [rtn]
bits: [{bits}]
output_dir: {out}
executor: {executor}
slurm: {{cluster: local, gpus_per_node: 0, timeout_min: 60}}
"""


def write_sweep(tmp: Path, bits: str = "W8A8, W4A8", executor: str = "local") -> Path:
    p = tmp / "sweep.yaml"
    p.write_text(SWEEP.format(bits=bits, out=tmp / "out", executor=executor))
    return p


def _records(out: Path) -> dict[str, RunRecord]:
    return {p.parent.name: RunRecord.load(p) for p in out.glob("*/*/run.json")}


def test_cells_and_bad_bits(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, bits="W8A8, W6A6, W4A8"))
    grid = cells(sweep)
    assert [c.label for c in grid] == ["fp", "rtn-W8A8", "rtn-W6A6", "rtn-W4A8"]
    assert all(c.cfg.cache_dir == str(tmp_path / "out" / ".cache") for c in grid)
    assert grid[0].is_fp and grid[1].cfg.quantizers[0].w_bits == 8
    with pytest.raises(ConfigError, match="bits: expected 'W<w>A<a>'"):
        load_sweep(write_sweep(tmp_path, bits="8x8"))


def test_extra_settings_follow_the_grid(tmp_path):
    path = write_sweep(tmp_path, bits="W8A8")
    extra = "extra:\n  - {name: rtn, w_bits: 4, a_bits: 8, params: {act: static}, tag: static}\n"
    path.write_text(path.read_text() + extra)
    grid = cells(load_sweep(path))
    assert [c.label for c in grid] == ["fp", "rtn-W8A8", "rtn-W4A8-static"]
    assert grid[-1].cfg.quantizers[0].params == {"act": "static"}
    path.write_text(path.read_text() + "  - {name: rtn, w_bits: 8, a_bits: 8}\n")
    with pytest.raises(ConfigError, match="extra\\[1\\]: setting 'rtn-W8A8' is already"):
        load_sweep(path)


def test_sweep_shares_cache_and_skips_done_cells(tmp_path, capsys):
    cfg = write_sweep(tmp_path, bits="W8A8")
    assert main(["sweep", "-c", str(cfg), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "tiny-latte/rtn-W8A8" in plan and "todo" in plan and "cached" not in plan
    assert main(["sweep", "-c", str(cfg), "-q"]) == 0
    recs = _records(tmp_path / "out")
    assert set(recs) == {"fp", "rtn-W8A8"} and recs["rtn-W8A8"].metrics["psnr_fp"]["value"] > 0
    cache = Cache(tmp_path / "out" / ".cache")
    assert len(list((cache.root / FP_VIDEOS).glob("*/meta.json"))) == 1
    assert len(list((cache.root / CALIBRATION).glob("*/meta.json"))) == 1
    capsys.readouterr()
    assert main(["sweep", "-c", str(cfg), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert plan.count(" done ") == 2 and plan.count("cached") == 3
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*/*/run.json")}
    assert main(["sweep", "-c", str(cfg), "-q"]) == 0  # nothing left to do
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # a record from another resolved quantizer config (a method's defaults changed) is stale
    cell = cells(load_sweep(cfg))[1]
    path = cell.record_path(tmp_path / "out")
    rec = json.loads(path.read_text())
    rec["quantizer"]["config_hash"] = "0" * 64
    path.write_text(json.dumps(rec))
    assert is_done(cell, tmp_path / "out") == "stale"


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """Kill the sweep once a quantized cell is finished; the rerun keeps it and does the rest."""
    cfg = write_sweep(tmp_path, bits="W8A8, W6A6, W4A8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vqbench.cli", "sweep", "-c", str(cfg), "-q"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "out" / "tiny-latte" / "rtn-W8A8" / "run.json"
    deadline = time.monotonic() + 600
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file(), "the first quantized cell did not finish before the kill"
    done = {p: (p.stat().st_mtime_ns, RunRecord.load(p).created) for p in _done(tmp_path)}
    assert len(done) < 4, "the sweep finished before it could be killed"
    assert main(["sweep", "-c", str(cfg), "-q"]) == 0
    after = {p: (p.stat().st_mtime_ns, RunRecord.load(p).created) for p in _done(tmp_path)}
    assert len(after) == 4
    assert all(after[p] == v for p, v in done.items())  # finished cells not redone


def _done(tmp: Path) -> list[Path]:
    return sorted((tmp / "out").glob("*/*/run.json"))


@pytest.mark.slow
def test_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit")
    cfg = write_sweep(tmp_path, bits="W8A8", executor="submitit")
    assert main(["sweep", "-c", str(cfg), "-q"]) == 0
    recs = _records(tmp_path / "out")
    assert set(recs) == {"fp", "rtn-W8A8"}
    logs = list((tmp_path / "out" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # one job per cell


def test_committed_configs_validate():
    """The configs in results/ that produce the committed results stay loadable."""
    from vqbench.config import load_config

    root = Path(__file__).resolve().parents[2] / "results"
    labels = {}
    for name in ("sweep_mini", "sweep_mini_outlier", "sweep_mini_ablations"):
        grid = cells(load_sweep(root / f"{name}.yaml"))
        labels[name] = [c.label for c in grid]
        assert len(labels[name]) == len(set(labels[name])) and labels[name][0] == "fp"
    seeded = {
        f"{m}-{b}-seed{s}"
        for m in ("q_vdit", "efficientdm", "s2q_vdit")
        for b in ("W4A6", "W8A8")
        for s in range(3)
    }
    assert {"rtn-W4A4"} | seeded <= set(labels["sweep_mini"])  # trained methods: 3 seeds
    assert set(labels["sweep_mini"]) <= set(labels["sweep_mini_outlier"])  # the same grid
    grid = cells(load_sweep(root / "sweep_mini_outlier.yaml"))
    assert {c.cfg.model.name for c in grid} == {"mini-outlier"}
    abl = set(labels["sweep_mini_ablations"])
    assert {"qvd-W4A8-base", "quarot-W4A8-gptq", "gptq-W4A6-sym"} <= abl
    assert {f"q_vdit-W4A6-gamma{g}-seed{s}" for g in (0, 1, 10) for s in range(3)} <= abl
    for path in [*root.glob("configs/*.yaml"), root / "baselines" / "ci_mini.yaml"]:
        assert load_config(path).quantizers, path


def test_calib_seeds_one_cell_per_seed_of_a_stochastic_method(tmp_path):
    path = write_sweep(tmp_path, bits="W8A8")
    path.write_text(
        path.read_text()
        + "calib_seeds: {efficientdm: [0, 2]}\n"
        + "extra:\n  - {name: efficientdm, w_bits: 8, a_bits: 8, params: {iters: 2}}\n"
        + "  - {name: efficientdm, w_bits: 4, a_bits: 8, seed: 5, params: {iters: 2}}\n"
    )
    grid = cells(load_sweep(path))
    labels = [c.label for c in grid]
    assert labels == [
        "fp",
        "rtn-W8A8",  # deterministic: one cell, no seed
        "efficientdm-W8A8-seed0",
        "efficientdm-W8A8-seed2",
        "efficientdm-W4A8-seed5",  # an extra entry naming its own seed keeps it
    ]
    q = grid[3].cfg.quantizers[0]
    assert q.seed == 2 and q.label == "efficientdm-W8A8" and q.method_params()["seed"] == 2
    assert grid[1].cfg.quantizers[0].seed is None
    assert select_cells(grid, ["efficientdm-W8A8-*"]) == grid[2:4]
    assert select_cells(grid, ["tiny-latte/fp"]) == grid[:1]
    with pytest.raises(ConfigError, match="--only: 'q_vdit-\\*' matches no cell"):
        select_cells(grid, ["q_vdit-*"])
    bad = path.read_text().replace("{efficientdm: [0, 2]}", "{rtn: [0, 1]}")
    path.write_text(bad)
    with pytest.raises(ConfigError, match="calib_seeds.rtn: rtn's calibration is deterministic"):
        load_sweep(path)
    path.write_text(bad.replace("{rtn: [0, 1]}", "{efficientdm: [1, 1]}"))
    with pytest.raises(ConfigError, match="calib_seeds.efficientdm: seeds must be distinct"):
        load_sweep(path)


def test_seeded_sweep_reports_one_row_per_setting(tmp_path, capsys):
    path = write_sweep(tmp_path, bits="W8A8")
    path.write_text(
        path.read_text()
        + "calib_seeds: {efficientdm: [0, 1, 2]}\n"
        + "extra:\n  - {name: efficientdm, w_bits: 8, a_bits: 8, params: {iters: 2}}\n"
    )
    assert main(["sweep", "-c", str(path), "-q", "--only", "efficientdm-*"]) == 0
    recs = _records(tmp_path / "out")
    assert set(recs) == {
        "efficientdm-W8A8-seed0",
        "efficientdm-W8A8-seed1",
        "efficientdm-W8A8-seed2",
    }
    assert {r.quantizer["seed"] for r in recs.values()} == {0, 1, 2}
    assert all(r.label == "efficientdm-W8A8" for r in recs.values())
    assert main(["sweep", "-c", str(path), "-q"]) == 0  # the rest: FP and RTN
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "rep"), "-q"]) == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "rep" / "leaderboard.csv")
    assert dict(zip(df["setting"], df["seeds"], strict=True)) == {
        "fp": 1,
        "rtn-W8A8": 1,
        "efficientdm-W8A8": 3,
    }
    assert main(["report", str(tmp_path / "out"), "--paired", "rtn-W8A8"]) == 0
    out = capsys.readouterr().out
    assert "efficientdm-W8A8" in out and "crossed bootstrap over seeds and prompts" in out
