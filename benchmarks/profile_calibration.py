"""cProfile of the default run's calibrations: capture, then each quantizer's ``calibrate``.

The default's calibration set (8 ``mini_calib`` prompts, seeds 1234.., DDIM 20 steps, every
step) is captured once; each quantizer (default: the three of ``vqbench run``, W4A8) then
calibrates a fresh FP copy under cProfile, and the top functions by own and by cumulative
time are printed with the wall seconds and the ISA line::

    .venv/bin/python benchmarks/profile_calibration.py [qvd q_vdit s2q_vdit] [--top 18]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

from isa import emulate, isa_line

from vqbench.adapters.mini import MiniAdapter
from vqbench.config import CalibrationSpec, GenerationSpec
from vqbench.cpu_alloc import keep_heap_memory
from vqbench.prompts import load_prompts
from vqbench.registry import QUANTIZERS


def main() -> None:
    """Print capture seconds, then each quantizer's calibration seconds and profile."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quantizers", nargs="*", default=["qvd", "q_vdit", "s2q_vdit"])
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--emulate", choices=["avx2"], default=None)
    args = ap.parse_args()
    emulate(args.emulate)
    keep_heap_memory()
    print(json.dumps(isa_line()), flush=True)
    a = MiniAdapter()
    a.load("cpu", "float32")
    spec = a.resolve(GenerationSpec())
    cs = CalibrationSpec()
    prompts = load_prompts(cs.prompts, cs.num_prompts, "calibration.prompts")
    seeds = [cs.seed + i for i in range(len(prompts))]
    t0 = time.perf_counter()
    calib = a.capture([p.text for p in prompts], seeds, spec, cs.every_k_steps)
    print(f"capture: {time.perf_counter() - t0:.1f} s, {len(calib)} rows", flush=True)
    for name in args.quantizers:
        a.load("cpu", "float32")
        target = a.quant_target(spec)
        q = QUANTIZERS.get(name).from_spec(4, 8)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(q.calibrate, target, calib)
        print(f"== {name} calibrate: {time.perf_counter() - t0:.1f} s (under cProfile)")
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(key).print_stats(args.top)
            print(out.getvalue().split("\n\n", 1)[-1], flush=True)


if __name__ == "__main__":
    main()
