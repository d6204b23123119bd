"""The shared set-up of the mini-model calibration benchmarks (``distill_curve.py``,
``s2q_schedule.py``): the default run's calibration set and FP reference videos."""

from __future__ import annotations

import time
from dataclasses import dataclass

from vqbench.adapters.mini import MiniAdapter
from vqbench.config import CalibrationSpec, GenerationSpec
from vqbench.prompts import load_prompts
from vqbench.types import CalibrationSet, Video


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
