"""Train the mini world's text-to-video generator (Latte, pixel space, v-prediction).

Usage::

    python -m vqbench.mini.train_generator --minutes 120 --seed 0 --out scratch/gen

Objective: DDPM v-prediction with the cosine schedule, a truncated-SNR weight and a mild
object weight (1 + 2 x dilated object mask); 10% of captions are replaced by the empty
caption for classifier-free guidance. The truncated-SNR weight is
``min(1, (gamma + 1) / (snr + 1))`` on the v-loss, i.e. ``min(snr, gamma) + 1`` in x0 space:
plain v-MSE at high noise, down-weighted low-noise steps. (The common min-SNR form for
v-prediction, ``min(snr, gamma) / (snr + 1)``, vanishes at high noise, leaving the first
sampling steps of the cosine schedule untrained; a first run with it produced noise.)
AdamW at a constant learning rate after warm-up, so a
run is reproducible step for step from its seed (``--steps``), and an EMA of the weights is
exported. Checkpoints (``ckpt.pt``, resumable with ``--resume``) and an EMA export in
diffusers format (``OUT/export``) are written every ``--ckpt-minutes``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import pickle
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from vqbench.cpu_alloc import bf16_native
from vqbench.mini.dataset import FRAMES, SIZE, render_batch, sample_batch
from vqbench.mini.models import MiniTextEncoder, build_transformer, tokenize

log = logging.getLogger("vqbench.mini.train_generator")


def make_schedulers() -> tuple[DDPMScheduler, DDIMScheduler]:
    """Training (DDPM) and sampling (DDIM, trailing spacing) schedulers with the same betas."""
    kw = dict(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    train = DDPMScheduler(**kw, clip_sample=False)
    sample = DDIMScheduler(
        **kw, clip_sample=False, timestep_spacing="trailing", set_alpha_to_one=False
    )
    return train, sample


def export(transformer, text_encoder, out: Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Save weights (``dtype`` storage) and scheduler config with ``save_pretrained``."""
    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(transformer).to(dtype).save_pretrained(out / "transformer")
    copy.deepcopy(text_encoder).to(dtype).save_pretrained(out / "text_encoder")
    make_schedulers()[1].save_pretrained(out / "scheduler")


def use_bf16(requested: bool) -> bool:
    """``requested``, unless this CPU lacks native bf16: then fp32, with a log line."""
    if requested and not bf16_native():
        cap = torch.backends.cpu.get_cpu_capability()
        log.info("bf16 autocast off: this CPU (%s) has no native bf16; training in fp32", cap)
        return False
    return requested


def train(args: argparse.Namespace) -> None:
    """Run the training loop described in the module docstring."""
    torch.set_num_threads(args.threads)
    args.bf16 = use_bf16(args.bf16)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    transformer = build_transformer(
        frames=args.frames,
        size=args.size,
        patch=args.patch,
        layers=args.layers,
        head_dim=args.width // 4,
    )
    text_encoder = MiniTextEncoder()
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema_t, ema_e = copy.deepcopy(transformer).eval(), copy.deepcopy(text_encoder).eval()
    data_gen = torch.Generator().manual_seed(args.seed)
    noise_gen = torch.Generator().manual_seed(args.seed + 1)
    step, elapsed = 0, 0.0
    ckpt = out / "ckpt.pt"
    if args.resume and ckpt.exists():
        try:
            s = torch.load(ckpt, weights_only=True)  # never unpickle a user file
        except pickle.UnpicklingError as e:
            raise ValueError(f"{ckpt}: not a weights-only checkpoint, refused ({e})") from e
        transformer.load_state_dict(s["transformer"])
        text_encoder.load_state_dict(s["text_encoder"])
        ema_t.load_state_dict(s["ema_transformer"])
        ema_e.load_state_dict(s["ema_text_encoder"])
        opt.load_state_dict(s["opt"])
        data_gen.set_state(s["data_gen"])
        noise_gen.set_state(s["noise_gen"])
        step, elapsed = s["step"], s["elapsed"]
        log.info("resumed at step %d (%.1f min)", step, elapsed / 60)
    n_params = sum(p.numel() for p in params)
    log.info("params %.2fM, frames %d, size %d", n_params / 1e6, args.frames, args.size)
    sched, _ = make_schedulers()
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    t0, last_ckpt, running = time.time() - elapsed, time.time(), 0.0

    def checkpoint() -> None:
        """Save the resumable checkpoint and the EMA export at the current step."""
        state = (ema_t, ema_e, opt, data_gen, noise_gen, step, time.time() - t0)
        _save(ckpt, transformer, text_encoder, *state)
        export(ema_t, ema_e, out / "export")

    while True:
        elapsed = time.time() - t0
        if (args.steps and step >= args.steps) or (not args.steps and elapsed > args.minutes * 60):
            break
        batch = sample_batch(args.batch, data_gen, args.two_object_prob)
        video, mask = render_batch(batch, args.frames, args.size)
        x0 = video * 2 - 1
        caps = batch.captions()
        drop = torch.rand(args.batch, generator=noise_gen) < args.cond_drop
        caps = ["" if d else c for c, d in zip(caps, drop.tolist(), strict=True)]
        ids = tokenize(caps)
        t = torch.randint(0, 1000, (args.batch,), generator=noise_gen)
        noise = torch.randn(x0.shape, generator=noise_gen)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            text = text_encoder(ids)
            pred = transformer(xt, timestep=t, encoder_hidden_states=text).sample
        w_obj = 1 + args.object_weight * F.max_pool3d(mask, (1, 3, 3), 1, (0, 1, 1))
        w_t = ((args.min_snr + 1) / (snr[t] + 1)).clamp(max=1.0).view(-1, 1, 1, 1, 1)
        loss = ((pred.float() - target) ** 2 * w_obj * w_t).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for m, e in ((transformer, ema_t), (text_encoder, ema_e)):
                for p, q in zip(m.parameters(), e.parameters(), strict=True):
                    q.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 25 == 0:
            log.info(
                "step %d  loss %.4f  lr %.1e  %.1f min  %.1f vid/s",
                step,
                running,
                lr,
                elapsed / 60,
                step * args.batch / max(elapsed, 1e-6),
            )
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
            log.info("checkpoint at step %d", step)
    checkpoint()
    log.info(
        "done: %d steps, %.1f min; EMA export in %s", step, (time.time() - t0) / 60, out / "export"
    )


def _save(
    path, transformer, text_encoder, ema_t, ema_e, opt, data_gen, noise_gen, step, elapsed
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "transformer": transformer.state_dict(),
            "text_encoder": text_encoder.state_dict(),
            "ema_transformer": ema_t.state_dict(),
            "ema_text_encoder": ema_e.state_dict(),
            "opt": opt.state_dict(),
            "data_gen": data_gen.get_state(),
            "noise_gen": noise_gen.get_state(),
            "step": step,
            "elapsed": elapsed,
        },
        tmp,
    )
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=120.0)
    p.add_argument("--steps", type=int, default=0, help="stop after N steps (overrides --minutes)")
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--size", type=int, default=SIZE)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--min-snr", type=float, default=5.0)
    p.add_argument("--object-weight", type=float, default=2.0)
    p.add_argument("--cond-drop", type=float, default=0.1)
    p.add_argument("--two-object-prob", type=float, default=0.15)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args)


if __name__ == "__main__":
    main()
