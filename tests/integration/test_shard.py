"""Sharded generation: a 2-process torchrun (gloo, CPU) run equals the 1-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vqbench.records import RunRecord
from vqbench.video import read_video

ARGS = ["--set", "model.name=tiny-latte", "--set", "generation.prompts=tiny"]
ARGS += ["--set", "generation.seeds=[0,1]", "--set", "generation.steps=2"]
ARGS += ["--set", "generation.batch_size=1", "--set", "calibration.prompts=tiny"]
ARGS += ["--set", "latency.enabled=false", "--set", "metrics=[psnr_fp]", "-q"]
ARGS += ["--set", "quantizers=[{name: rtn, w_bits: 8, a_bits: 8}]"]


def _run(out: Path, nproc: int) -> Path:
    launcher = [sys.executable, "-m", "vqbench.cli"]
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "vqbench.cli",
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*launcher, "run", "--set", f"output_dir={out}", *ARGS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = list(out.iterdir())
    return run_dir


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    one = _run(tmp_path / "one", 1)
    two = _run(tmp_path / "two", 2)
    for label in ("fp", "rtn-W8A8"):
        a, b = RunRecord.load(one / label / "run.json"), RunRecord.load(two / label / "run.json")
        assert a.generation["num_videos"] == b.generation["num_videos"] == 4
        if label != "fp":
            ma, mb = a.metrics["psnr_fp"], b.metrics["psnr_fp"]
            assert ma["per_sample"] == mb["per_sample"] and len(ma["per_sample"]) == 4
        videos = sorted((one / label / "videos").glob("*.mp4"))
        assert [v.name for v in videos] == sorted(p.name for p in (two / label).glob("videos/*"))
        for v in videos:
            fa, fb = read_video(v).frames, read_video(two / label / "videos" / v.name).frames
            assert np.array_equal(fa, fb), v.name
