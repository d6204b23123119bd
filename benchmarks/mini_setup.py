"""The shared set-up of the mini-model calibration benchmarks (``distill_curve.py``,
``s2q_schedule.py``): the default run's calibration set and FP reference videos, and one
setting calibrated on a fresh FP copy and scored against them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.fidelity import psnr
from vqbench.adapters.mini import MiniAdapter
from vqbench.config import CalibrationSpec, GenerationSpec
from vqbench.prompts import load_prompts
from vqbench.registry import QUANTIZERS
from vqbench.types import CalibrationSet, QuantState, Video


@dataclass
class MiniSetup:
    """The loaded mini adapter, its sampling spec, the calibration set and the FP videos of
    the evaluation prompts (seed 0 each)."""

    adapter: MiniAdapter
    spec: GenerationSpec
    calib: CalibrationSet
    prompts: list[str]
    seeds: list[int]
    fp: list[Video]

    def run(self, method: str, w: int, a: int, params: dict[str, Any]) -> tuple[QuantState, dict]:
        """Calibrate ``method`` at ``W{w}A{a}`` with ``params`` on a fresh FP copy, quantize,
        generate the evaluation videos; returns the state and the JSON-able summary
        (bits, params, calibration seconds, PSNR against FP: mean and per video)."""
        self.adapter.load("cpu", "float32")  # a fresh FP copy
        target = self.adapter.quant_target(self.spec)
        q = QUANTIZERS.get(method).from_spec(w, a, params=params)
        t0 = time.perf_counter()
        state = q.calibrate(target, self.calib)
        secs = time.perf_counter() - t0
        q.quantize(target, state)
        videos = self.adapter.generate(self.prompts, self.seeds, self.spec) if self.prompts else []
        scores = [psnr(v.frames, f.frames) for v, f in zip(videos, self.fp, strict=True)]
        return state, {
            "bits": f"W{w}A{a}",
            "params": params,
            "calib_seconds": round(secs, 1),
            "psnr_fp": round(float(np.mean(scores)), 2) if scores else None,
            "psnr_fp_per_video": [round(s, 2) for s in scores],
        }


def mini_setup(videos: int) -> MiniSetup:
    """Capture the default calibration set (8 ``mini_calib`` prompts, seeds 1234.., every
    step) and generate FP videos of the first ``videos`` ``mini_eval`` prompts; prints the
    capture time."""
    a = MiniAdapter()
    a.load("cpu", "float32")
    spec = a.resolve(GenerationSpec())
    cs = CalibrationSpec()
    prompts = [p.text for p in load_prompts(cs.prompts, cs.num_prompts, "calibration.prompts")]
    t0 = time.perf_counter()
    calib = a.capture(prompts, [cs.seed + i for i in range(len(prompts))], spec, cs.every_k_steps)
    print(f"capture: {time.perf_counter() - t0:.1f} s, {len(calib)} rows", flush=True)
    evals = [p.text for p in load_prompts("mini_eval", videos)] if videos else []
    seeds = [0] * len(evals)
    fp = a.generate(evals, seeds, spec) if evals else []
    return MiniSetup(a, spec, calib, evals, seeds, fp)
