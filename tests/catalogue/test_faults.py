"""Faults across processes: a ``kill -9`` mid-sweep and its resume, two runs writing into
one ``output_dir`` at once, and sweeps whose inputs are bad (checked before any cell runs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox import TINY, assert_clean, invoke

SWEEP = """\
base:
  model: {{name: tiny-latte}}
  generation: {{prompts: tiny, num_prompts: 1, steps: 2, batch_size: 1}}
  calibration: {{prompts: tiny, num_prompts: 1}}
  latency: {{enabled: false}}
  metrics: [psnr_fp]
models: {models}
quantizers: [rtn]
bits: [{bits}]
output_dir: {out}
"""


def _sweep(sandbox, bits: str = "W8A8, W6A6, W4A8", models: str = "[tiny-latte]") -> Path:
    return sandbox.write(
        "sweep.yaml", SWEEP.format(bits=bits, models=models, out=sandbox.out / "sweep")
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vqbench.cli", *args]


def _env(sandbox) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "VQBENCH_CACHE_DIR": str(sandbox.cache)}


def test_kill_9_mid_sweep_then_resume(sandbox):
    cfg = _sweep(sandbox)
    first = sandbox.out / "sweep" / "tiny-latte" / "rtn-W8A8" / "run.json"
    proc = subprocess.Popen(_cli("sweep", "-c", str(cfg), "-q"), env=_env(sandbox))
    deadline = time.time() + 240
    while not first.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file(), "no cell finished before the kill"
    before = {p: p.read_bytes() for p in (sandbox.out / "sweep").rglob("run.json")}
    done = subprocess.run(_cli("sweep", "-c", str(cfg), "-q"), env=_env(sandbox), check=False)
    assert done.returncode == 0
    after = {p: p.read_bytes() for p in (sandbox.out / "sweep").rglob("run.json")}
    assert {p.parent.name for p in after} == {"fp", "rtn-W8A8", "rtn-W6A6", "rtn-W4A8"}
    assert all(after[p] == b for p, b in before.items())  # finished cells neither redone nor lost
    assert not [p for p in sandbox.out.rglob("*") if p.name.endswith(".tmp")]
    assert_clean(sandbox)


def test_two_concurrent_runs_into_one_output_dir(sandbox):
    argv = _cli("run", *TINY, "--set", f"output_dir={sandbox.out}")
    procs = [subprocess.Popen(argv, env=_env(sandbox)) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = [p for p in sandbox.out.iterdir() if p.name != "earlier"]
    assert len(runs) == 2  # one directory each, none overwritten
    for r in runs:
        for label in ("fp", "rtn-W8A8"):
            json.loads((r / label / "run.json").read_text())
    assert_clean(sandbox)


@pytest.mark.parametrize(
    ("bits", "models", "pattern"),
    [
        ("W7A8", "[tiny-latte]", r"bits: 'W7A8' has a width outside"),
        ("W8", "[tiny-latte]", r"bits: expected 'W<w>A<a>'"),
        ("W8A8", "[{name: tiny-latte, key: ../../evil}]", r"models\[0\]\.key: .* not a safe name"),
        ("W8A8", "[{name: tiny-latte, path: /nonexistent}]", r"model\.path: .* does not exist"),
    ],
    ids=["sweep-bits-7", "sweep-bits-malformed", "sweep-key-traversal", "sweep-model-path"],
)
def test_bad_sweep_is_refused_before_any_cell(sandbox, capsys, bits, models, pattern):
    code, err, _ = invoke(sandbox, ["sweep", "-c", str(_sweep(sandbox, bits, models))], capsys)
    assert code == 2 and len(err) == 1 and re.search(pattern, err[0]), err
    assert not (sandbox.out / "sweep").exists()
    assert_clean(sandbox)


def test_sweep_with_one_bad_cell_runs_none(sandbox, capsys):
    cfg = _sweep(sandbox, "W8A8")
    cfg.write_text(cfg.read_text() + "params: {rtn: {alpah: 1}}\n")
    code, err, _ = invoke(sandbox, ["sweep", "-c", str(cfg)], capsys)
    assert code == 2 and len(err) == 1 and "alpah" in err[0], err
    assert not (sandbox.out / "sweep").exists()
    assert_clean(sandbox)
