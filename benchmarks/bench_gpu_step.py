"""Denoiser-step latency on a CUDA GPU: a CogVideoX-2B-size transformer, bf16 against real W8A8.

A random-weight ``CogVideoXTransformer3DModel`` with CogVideoX-2b's configuration (30 blocks
of width 1920, 30 heads of 64, text width 4096, 226 text tokens) on the latent of a 49-frame
480x720 video (13 latent frames of 30x45 tokens after patchify: 17550 video tokens), batch 2
(one CFG step). The bf16 model is timed, then the same model quantized in place by RTN W8A8
with ``kernel: real`` (int8 weights, per-token int8 activations, ``torch._int_mm``) on the
linears of the transformer blocks (CogVideoX's adapter roles; embedders, timestep layers and
the output layer stay bf16). Medians of ``--iters`` CUDA-synchronised steps after a warm-up;
both numbers come from one process::

    .venv/bin/python benchmarks/bench_gpu_step.py --iters 5

``--tiny`` runs the same code on a small configuration (on CPU when there is no GPU), which
checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from bench_kernels import timed  # sibling scripts (run as benchmarks/bench_gpu_step.py)
from bench_step import one_row
from torch import nn

from vqbench.adapters.base import match_rules
from vqbench.adapters.cogvideox import CogVideoXAdapter
from vqbench.environment import cpu_info
from vqbench.registry import QUANTIZERS
from vqbench.types import QuantTarget

COGVIDEOX_2B = dict(  # diffusers' CogVideoX-2b transformer config
    num_attention_heads=30,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    time_embed_dim=512,
    text_embed_dim=4096,
    num_layers=30,
    sample_width=90,
    sample_height=60,
    sample_frames=49,
    patch_size=2,
    temporal_compression_ratio=4,
    max_text_seq_length=226,
)
TINY = {**COGVIDEOX_2B, "num_attention_heads": 2, "attention_head_dim": 16, "num_layers": 2}
TINY.update(text_embed_dim=32, time_embed_dim=16, sample_width=8, sample_height=8)
TINY.update(sample_frames=9, max_text_seq_length=16)


def build(cfg: dict, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, dict]:
    """The random-weight transformer and one CFG step's inputs (batch 2)."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        model = CogVideoXTransformer3DModel(**cfg).to(dtype).eval()
    f = (cfg["sample_frames"] - 1) // cfg["temporal_compression_ratio"] + 1
    g = torch.Generator(device).manual_seed(0)
    shape = (2, f, cfg["in_channels"], cfg["sample_height"], cfg["sample_width"])
    text = (2, cfg["max_text_seq_length"], cfg["text_embed_dim"])
    batch = {
        "latents": torch.randn(shape, generator=g, device=device, dtype=dtype),
        "timesteps": torch.tensor([500, 500], device=device),
        "text": torch.randn(text, generator=g, device=device, dtype=dtype),
    }
    return model, batch


def target_of(model: nn.Module) -> QuantTarget:
    """The model with CogVideoX's adapter roles; embedders, timestep and output layers skipped."""
    roles = {
        n: r
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and (r := match_rules(n, CogVideoXAdapter.role_rules))
    }

    def forward(b: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            hidden_states=b["latents"],
            encoder_hidden_states=b["text"],
            timestep=b["timesteps"],
            return_dict=False,
        )[0]

    skip = sorted(n for n, r in roles.items() if r in ("embed", "timestep_embed", "final"))
    return QuantTarget(module=model, roles=roles, layouts={}, skip=skip, forward=forward)


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a CUDA synchronise, so wall time covers the queued kernels."""

    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return call


def main() -> None:
    """Print the bf16 and real-W8A8 step times and their ratio as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="small config: checks the script only")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        raise SystemExit("bench_gpu_step: no CUDA device (use --tiny to check the script on CPU)")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    model, batch = build(TINY if args.tiny else COGVIDEOX_2B, device, dtype)
    target = target_of(model)
    out: dict[str, object] = {"device": torch.cuda.get_device_name() if cuda else "cpu"}
    out.update(cpu_info())
    out["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    with torch.no_grad():
        ref = target.forward(batch).float()
        step = synced(lambda: target.forward(batch), device)
        out[f"{dtype}_s".replace("torch.", "")] = fp = timed(step, args.iters)
        q = QUANTIZERS.get("rtn").from_spec(8, 8, kernel="real")
        q.quantize(target, q.calibrate(target, one_row(batch)))
        quant = target.forward(batch).float()
        out["W8A8_real_s"] = w8 = timed(step, args.iters)
        out["kernel_backend"] = q.describe()["kernel_backend"]
    out["speedup_W8A8"] = round(fp / w8, 2)
    out["rel_err_vs_fp"] = round(float((quant - ref).norm() / ref.norm()), 4)
    out["iters"] = args.iters
    print(json.dumps(out))


if __name__ == "__main__":
    main()
