"""S2Q-VDiT's schedule and selection on the mini model: epochs, SDS variants, Hessian rows.

The default run's calibration set (8 ``mini_calib`` prompts, seeds 1234.., every step of the
mini model's 20-step sampler: a pool of 160 cond/uncond units) is captured once. Per setting
a fresh FP copy is calibrated with ``s2q_vdit`` at ``--bits`` and the given params, then
``--videos`` ``mini_eval`` prompts (seed 0) are generated. Each setting prints one JSON
line: calibration seconds, the block-reconstruction loss of every epoch per block (the
training mean; with ``keep_best`` also the evaluated loss before training and after each
epoch, and the epoch each block kept), the SDS
selection's rows per sampling step, and the PSNR against FP (mean over the videos; whole
video, peak 255)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/s2q_schedule.py \\
        [--bits 4 6] [--videos 4] [--settings e3 e15 ...]
"""

from __future__ import annotations

import argparse
import json

from isa import isa_line
from mini_setup import mini_setup

SETTINGS = {
    "e3": {"epochs": 3},
    "e15": {"epochs": 15},
    "e3_last": {"epochs": 3, "keep_best": False},  # each block ends in its last state
    "e15_last": {"epochs": 15, "keep_best": False},
    "e3_selected": {"epochs": 3, "hessians": "selected"},  # version 1's Hessians
    "e3_stratified": {"epochs": 3, "sds": "stratified"},
    "e15_stratified": {"epochs": 15, "sds": "stratified"},
}


def main() -> None:
    """Print the ISA line, the capture, then one JSON line per setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", nargs=2, type=int, default=[4, 6], metavar=("W", "A"))
    ap.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["e3", "e15"])
    ap.add_argument("--videos", type=int, default=4, help="mini_eval prompts for PSNR (0: none)")
    args = ap.parse_args()
    print(json.dumps(isa_line()), flush=True)
    m = mini_setup(args.videos)
    w, x = args.bits
    for setting in args.settings:
        state, summary = m.run("s2q_vdit", w, x, SETTINGS[setting])
        recon = state.meta.get("recon", {})
        line = {
            "setting": setting,
            **summary,
            "sds_steps": state.meta.get("sds_steps"),
            "loss_per_epoch": {b: [float(f"{v:.4g}") for v in r["loss"]] for b, r in recon.items()},
            "eval_loss": {
                b: [float(f"{v:.4g}") for v in r["eval_loss"]]
                for b, r in recon.items()
                if "eval_loss" in r
            },
            "kept_epoch": state.meta.get("recon_kept_epoch"),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
