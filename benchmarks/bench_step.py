"""Denoiser-step latency on CPU: fp32 against real-kernel W8A8 and W4A8 (RTN, dynamic per-token).

Two models, each timed in one process so the ratios share the machine state:

- ``mini``: the mini world's shipped Latte (4.6M params, 8 frames of 32x32 pixels, patch 4:
  512 tokens), one CFG step (batch 2), through :class:`~vqbench.adapters.mini.MiniAdapter`;
- ``latte-width``: a random-weight ``LatteTransformer3DModel`` of Latte-1's width (1152, 16
  heads of 72, patch 2 on the 32x32 latent of a 256x256 video, 16 frames: 4096 tokens) with
  ``--latte-layers`` of Latte-1's 28 spatial+temporal block pairs (2 by default, so one
  step takes seconds rather than minutes on 2 cores). Per-layer work is identical to
  Latte-1, so the ratio carries over; absolute times scale with depth.

Usage::

    .venv/bin/python benchmarks/bench_step.py --iters 5
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from bench_kernels import timed  # the sibling script (run as benchmarks/bench_step.py)
from isa import isa_line

from quantizers.core.backends import last_used
from vqbench.adapters.mini import MiniAdapter
from vqbench.config import GenerationSpec
from vqbench.cpu_alloc import keep_heap_memory
from vqbench.registry import QUANTIZERS
from vqbench.types import CalibrationSet, QuantTarget


def mini_case() -> tuple[MiniAdapter, GenerationSpec, dict[str, torch.Tensor]]:
    """The shipped mini generator and one captured CFG step as the timed input."""
    a = MiniAdapter()
    a.load("cpu", "float32")
    spec = a.resolve(GenerationSpec(steps=2))
    calib = a.capture(["a red circle moving left in the sky"], [0], spec)
    return a, spec, next(calib.batches(2))


def latte_width_case(layers: int) -> tuple[MiniAdapter, GenerationSpec, dict[str, torch.Tensor]]:
    """A random Latte-width transformer behind the mini adapter's Latte structure rules."""
    from diffusers.models.transformers.latte_transformer_3d import LatteTransformer3DModel

    torch.manual_seed(0)
    model = LatteTransformer3DModel(
        num_attention_heads=16,
        attention_head_dim=72,
        in_channels=4,
        out_channels=8,
        num_layers=layers,
        sample_size=32,
        patch_size=2,
        cross_attention_dim=1152,
        caption_channels=64,
        activation_fn="gelu-approximate",
        norm_type="ada_norm_single",
        num_embeds_ada_norm=1000,
        video_length=16,
    ).eval()
    a = MiniAdapter()
    a.transformer, a.device, a.dtype = model, torch.device("cpu"), torch.float32
    # the mini adapter reads height/width as the transformer's input grid (it is pixel-space)
    spec = a.resolve(GenerationSpec(frames=16, height=32, width=32))
    g = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn(2, 4, 16, 32, 32, generator=g),
        "timesteps": torch.tensor([500, 500]),
        "text": torch.randn(2, 8, 64, generator=g),
    }
    return a, spec, batch


def bench(
    build: Callable[[], tuple[MiniAdapter, GenerationSpec, dict[str, torch.Tensor]]], iters: int
) -> dict[str, float]:
    """Seconds per denoiser step for fp32, then real W8A8 and W4A8 (fresh model each)."""
    out: dict[str, float] = {}
    for label, bits in (("fp32", None), ("W8A8", (8, 8)), ("W4A8", (4, 8))):
        a, spec, batch = build()
        target: QuantTarget = a.quant_target(spec)
        if bits is not None:
            q = QUANTIZERS.get("rtn").from_spec(*bits, kernel="real")
            q.quantize(target, q.calibrate(target, one_row(batch)))
        with torch.no_grad():
            out[label] = timed(lambda t=target, b=batch: t.forward(b), iters)
    return out


def one_row(batch: dict[str, torch.Tensor]) -> CalibrationSet:
    """A one-row calibration set (RTN with dynamic activations only needs the shapes)."""
    n = batch["latents"].shape[0]
    return CalibrationSet(
        latents=batch["latents"],
        timesteps=batch["timesteps"],
        text=batch["text"],
        outputs=torch.zeros_like(batch["latents"]),
        step_index=torch.zeros(n, dtype=torch.long),
        prompt_index=torch.zeros(n, dtype=torch.long),
        is_uncond=torch.zeros(n, dtype=torch.bool),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--latte-layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-mini", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heap = keep_heap_memory()  # as `vqbench run` does on CPU (VQBENCH_CPU_MALLOC=system: off)
    cases: dict[str, Callable] = {}
    if not args.skip_mini:
        cases["mini"] = mini_case
    cases[f"latte-width x{args.latte_layers}"] = lambda: latte_width_case(args.latte_layers)
    report = {}
    for name, build in cases.items():
        secs = bench(build, args.iters)
        report[name] = {
            **{f"{k}_s": round(v, 4) for k, v in secs.items()},
            "speedup_W8A8": round(secs["fp32"] / secs["W8A8"], 2),
            "speedup_W4A8": round(secs["fp32"] / secs["W4A8"], 2),
        }
        print(f"{name}: " + json.dumps(report[name]))
    meta = {**isa_line(), "kernel_backend": last_used(), "iters": args.iters, "heap_malloc": heap}
    print(json.dumps({**meta, **report}))


if __name__ == "__main__":
    main()
