"""Wall time and stage times of the default ``vqbench run``, from an empty cache and cached.

Runs ``python -m vqbench.cli run -q`` twice in subprocesses with ``VQBENCH_CACHE_DIR`` pointed
at a fresh temporary directory (the first run fills it, the second reuses it) and the output
in another, then prints each run's wall time, the machine's load average and, per setting,
the stage seconds its ``run.json`` carries under ``timings`` (prepare, fp_generation,
capture, calibrate, quantize, generate, metrics, latency; wall time only where a record has
none)::

    .venv/bin/python benchmarks/bench_default_run.py
    .venv/bin/python benchmarks/bench_default_run.py --emulate avx2 -- --set seed=1

Arguments after ``--`` go to ``vqbench run``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isa import AVX2_CAPS, MARK, isa_line


def records(out_dir: Path) -> dict[str, dict]:
    """``setting label -> timings`` of every ``run.json`` under ``out_dir`` (``{}`` if none)."""
    found = {}
    for path in sorted(out_dir.glob("*/*/run.json")):
        rec = json.loads(path.read_text())
        found[path.parent.name] = rec.get("timings") or {}
    return found


def one_run(cache: Path, out: Path, extra: list[str], env: dict[str, str]) -> dict:
    """One ``vqbench run -q`` with wall time, load average and per-setting timings."""
    cmd = [sys.executable, "-m", "vqbench.cli", "run", "-q", "--set", f"output_dir={out}", *extra]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**env, "VQBENCH_CACHE_DIR": str(cache)}, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"bench_default_run: vqbench run exited {proc.returncode}")
    return {
        "wall_s": round(wall, 1),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "timings": records(out),
    }


def main() -> None:
    """Run the default twice (empty cache, then cached) and print one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulate", choices=["avx2"], default=None, help="see benchmarks/isa.py")
    ap.add_argument("extra", nargs="*", help="arguments for `vqbench run` (after --)")
    args = ap.parse_args()
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    if args.emulate:
        env.update(AVX2_CAPS, **{MARK: args.emulate})
    head = isa_line()
    if args.emulate:  # this process is not capped; the runs are
        head.update(cpu_capability=args.emulate.upper(), emulated=f"{args.emulate} (env caps)")
        head.pop("fbgemm_saturating", None)
    print(json.dumps(head), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label in ("empty_cache", "cached"):
            out = Path(tmp) / f"out_{label}"
            res = one_run(cache, out, args.extra, env)
            print(json.dumps({"run": label, **res}), flush=True)


if __name__ == "__main__":
    main()
