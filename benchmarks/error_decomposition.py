"""Where a method's error comes from on the mini model: weights alone, activations alone, both.

Relative L2 error of the denoiser output against FP on held-out captured trajectories
(2 eval prompts, every 4th of 20 steps, cond and uncond rows), after calibrating on 2 other
prompts. Used to explain the W4A8 comparison of issue 5 (smoothing targets activations, so it
can only help where activation error matters) and, with ``--model mini-outlier``, what the
channel outliers of issue 17 do to each method (A16 rows: weights alone; W16: activations)::

    .venv/bin/python benchmarks/error_decomposition.py [--model mini-outlier]
"""

from __future__ import annotations

import argparse

import torch

from vqbench.adapters import adapter_class
from vqbench.config import GenerationSpec
from vqbench.registry import QUANTIZERS

SETTINGS = [
    ("rtn", 4, 16),
    ("rtn", 16, 8),
    ("rtn", 4, 8),
    ("smoothquant", 4, 16),
    ("smoothquant", 4, 8),
    ("viditq", 4, 16),
    ("viditq", 4, 8),
    ("quarot", 4, 16),
    ("quarot", 16, 8),
    ("quarot", 4, 8),
    ("smoothquant", 16, 8),
    ("viditq", 16, 8),
]


def main() -> None:
    """Print the relative output error of each (method, W, A) setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini", choices=["mini", "mini-outlier"])
    args = ap.parse_args()
    isa = torch.backends.cpu.get_cpu_capability()
    print(f"model {args.model}, torch {torch.__version__}, ISA {isa}")
    a = adapter_class(args.model)()
    a.load()
    spec = a.resolve(GenerationSpec(steps=20))
    calib_prompts = ["a red circle moving left in the sky", "a green square moving up in the sea"]
    eval_prompts = [
        "a blue triangle moving right in the night",
        "a white cross moving down in the desert",
    ]
    calib = a.capture(calib_prompts, [1, 2], spec, every_k_steps=2)
    held_out = a.capture(eval_prompts, [3, 4], spec, every_k_steps=4)
    batch = next(held_out.batches(len(held_out)))
    fp = a.calib_forward(batch).detach()
    for name, w, x in SETTINGS:
        a.load()  # a fresh FP copy
        target = a.quant_target(spec)
        q = QUANTIZERS.get(name).from_spec(w, x)
        q.quantize(target, q.calibrate(target, calib))
        with torch.no_grad():
            out = target.forward(batch)
        print(f"{name} W{w}A{x}: relative error {float((out - fp).norm() / fp.norm()):.4f}")


if __name__ == "__main__":
    main()
