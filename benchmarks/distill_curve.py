"""Distillation curves of EfficientDM and Q-VDiT on the mini model: new defaults vs the old ones.

The default run's calibration set (8 ``mini_calib`` prompts, seeds 1234.., every step of
the mini model's default sampling) is captured once. Per method, a fresh FP copy is
calibrated under each setting:

- ``before``: no training (``iters: 0``), the state every distillation starts from;
- ``new``: the version-2 defaults (released learning rates 1e-5 / 1e-6, 10 warm-up steps,
  2 of the 8 prompts held out, best held-out state kept, guard);
- ``new_long``: the same with 480 iterations instead of 120 (does W4A6 settle?);
- ``old``: the version-1 learning rates 5e-4 / 2e-5, no warm-up, last state kept (the same
  prompts held out, so both curves are measured on the same rows; version 1 trained on
  all 8);
- ``old_best``: the old learning rates under the new selection (best held-out state, guard);
- ``old_warm``: the old learning rates with the new warm-up and selection.

Each setting prints one JSON line: calibration seconds, the held-out curve (loss at
iteration 0 and every ``eval_every`` steps, activations quantized as deployed), the mean
training loss of each window, what the guard did, and the PSNR against FP (mean over the
videos of ``--videos`` ``mini_eval`` prompts, seed 0; PSNR over the whole video, peak 255)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/distill_curve.py \\
        [--methods efficientdm q_vdit] [--bits 8 8] [--videos 4] \\
        [--settings before new old old_best old_warm]
"""

from __future__ import annotations

import argparse
import json

from isa import isa_line
from mini_setup import mini_setup

SETTINGS = {
    "before": {"iters": 0},
    "new": {},
    "new_long": {"iters": 480},  # the released rates, 4x the default iterations
    "old": {"lr_lora": 5e-4, "lr_delta": 2e-5, "warmup_iters": 0, "keep_best": False},
    "old_best": {"lr_lora": 5e-4, "lr_delta": 2e-5, "warmup_iters": 0},
    "old_warm": {"lr_lora": 5e-4, "lr_delta": 2e-5},
}


def main() -> None:
    """Print the ISA line, the capture, then one JSON line per (method, setting)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["efficientdm", "q_vdit"])
    ap.add_argument("--bits", nargs=2, type=int, default=[8, 8], metavar=("W", "A"))
    ap.add_argument(
        "--settings", nargs="+", choices=sorted(SETTINGS), default=["before", "new", "old"]
    )
    ap.add_argument("--videos", type=int, default=4, help="mini_eval prompts for PSNR (0: none)")
    args = ap.parse_args()
    print(json.dumps(isa_line()), flush=True)
    m = mini_setup(args.videos)
    w, x = args.bits
    for name in args.methods:
        for setting in args.settings:
            state, summary = m.run(name, w, x, SETTINGS[setting])
            line = {
                "method": name,
                "setting": setting,
                **summary,
                "distill": state.meta.get("distill"),
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
