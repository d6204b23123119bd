"""Train the mini world's evaluators on real procedural videos.

Usage::

    python -m vqbench.mini.train_evaluators i3d --steps 600 --seed 100 --out DIR
    python -m vqbench.mini.train_evaluators classifier --steps 600 --seed 200 --out DIR
    python -m vqbench.mini.train_evaluators tagger --steps 600 --seed 300 --out DIR
    python -m vqbench.mini.train_evaluators clip --steps 1500 --seed 400 --out DIR

``i3d`` (FVD features) and ``classifier`` (held-out attribute classifier of the quality bars)
share the :class:`~vqbench.mini.evaluators.VideoNet` architecture but use different seeds,
hence different data streams; neither is used to train the generator. Training videos get
light augmentation (pixel noise, blur) so the networks also read imperfect generated videos.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vqbench.mini.dataset import render_batch, sample_batch
from vqbench.mini.evaluators import FrameTagger, VideoNet, save_net

log = logging.getLogger("vqbench.mini.train_evaluators")
FILES = {
    "i3d": "i3d.safetensors",
    "classifier": "classifier.safetensors",
    "tagger": "tagger.safetensors",
    "clip": "clip.pt",
}


def _augment(video: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random pixel noise and blur on ``[B, 3, F, H, W]`` videos in [0, 1]."""
    b = video.shape[0]
    sigma = 0.08 * torch.rand(b, 1, 1, 1, 1, generator=gen)
    video = video + sigma * torch.randn(video.shape, generator=gen)
    blur = (torch.rand(b, generator=gen) < 0.3).view(b, 1, 1, 1, 1).float()
    smooth = F.avg_pool3d(video, (1, 3, 3), 1, (0, 1, 1), count_include_pad=False)
    return (video * (1 - blur) + smooth * blur).clamp(0, 1)


def _batches(args: argparse.Namespace, two_object_prob: float):
    gen = torch.Generator().manual_seed(args.seed)
    t0, step = time.time(), 0
    while (step < args.steps) if args.steps else (time.time() - t0 < args.minutes * 60):
        b = sample_batch(args.batch, gen, two_object_prob)
        video, _ = render_batch(b)
        yield step, b, _augment(video, gen)
        step += 1


def train_videonet(args: argparse.Namespace) -> VideoNet:
    """Attribute classification with cross-entropy on single-object videos."""
    torch.manual_seed(args.seed)
    net = VideoNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    for step, b, video in _batches(args, 0.0):
        logits = net(video)
        loss = sum(F.cross_entropy(logits[k], getattr(b, k)) for k in logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log.info("%s step %d loss %.3f", args.what, step, loss.item())
    return net.eval()


def train_tagger(args: argparse.Namespace) -> FrameTagger:
    """Per-frame scene (softmax) and colour/shape presence (multi-label) on 1-2 object videos."""
    torch.manual_seed(args.seed)
    net = FrameTagger()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    for step, b, video in _batches(args, 0.3):
        n, f = video.shape[0], video.shape[2]
        frames = video.permute(0, 2, 1, 3, 4).reshape(n * f, *video.shape[1:2], *video.shape[3:])
        colour = F.one_hot(b.colour, 6) | (F.one_hot(b.colour2, 6) * b.has2.view(-1, 1))
        shape = F.one_hot(b.shape, 4) | (F.one_hot(b.shape2, 4) * b.has2.view(-1, 1))
        out = net(frames)
        loss = (
            F.cross_entropy(out["scene"], b.scene.repeat_interleave(f))
            + F.binary_cross_entropy_with_logits(
                out["colour"], colour.float().repeat_interleave(f, 0)
            )
            + F.binary_cross_entropy_with_logits(
                out["shape"], shape.float().repeat_interleave(f, 0)
            )
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log.info("tagger step %d loss %.3f", step, loss.item())
    return net.eval()


def build_clip():
    """The mini CLIP: clip-anytorch ``CLIP`` with 64-wide towers (1 head each) on 32x32 frames."""
    from clip.model import CLIP

    return CLIP(
        embed_dim=64,
        image_resolution=32,
        vision_layers=2,
        vision_width=64,
        vision_patch_size=4,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=2,
    )


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def train_clip(args: argparse.Namespace) -> torch.nn.Module:
    """Contrastive training on (random frame, caption) pairs with CLIP's normalisation."""
    import clip

    torch.manual_seed(args.seed)
    model = build_clip().float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    for step, b, video in _batches(args, 0.15):
        fi = torch.randint(0, video.shape[2], (video.shape[0],), generator=gen)
        frames = video[torch.arange(video.shape[0]), :, fi]
        tokens = clip.tokenize(b.captions())
        img = model.encode_image((frames - mean) / std)
        txt = model.encode_text(tokens)
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        # identical captions in a batch are positives of each other
        caps = b.captions()
        same = torch.tensor([[a == c for c in caps] for a in caps], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if step % 50 == 0:
            log.info("clip step %d loss %.3f", step, loss.item())
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=sorted(FILES))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--minutes", type=float, default=10.0, help="used when --steps is 0")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.what in ("i3d", "classifier"):
        save_net(train_videonet(args), out / FILES[args.what])
    elif args.what == "tagger":
        save_net(train_tagger(args), out / FILES["tagger"])
    else:
        model = train_clip(args)
        state = {k: v.half() for k, v in model.state_dict().items()}
        torch.save(state, out / FILES["clip"])
    log.info("%s trained in %.1f min -> %s", args.what, (time.time() - t0) / 60, out)


if __name__ == "__main__":
    main()
