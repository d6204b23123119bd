"""Measure the mini world's quality bars (issue 3, section 3) for a generator.

Usage::

    python -m vqbench.mini.evaluate --seeds 0 1 --out scratch/bars.json
    python -m vqbench.mini.evaluate --generator scratch/gen_run/export   # a training export

On the eval suite (``prompts/mini_eval.jsonl``) times ``--seeds``:

- attribute accuracy of generated videos by the held-out classifier (scene, colour, shape,
  motion);
- FVD (mini I3D features) of generated videos against real videos of the same prompts
  (other seeds), and of two trivial baselines: every video the real set's mean frame, and
  every video its own real temporal-mean frame (a static video);
- CLIP-SIM: share of videos whose mean frame-caption similarity with their own prompt
  exceeds that with a mismatched prompt (the next prompt of the suite with another caption);
- scene consistency by VBench's rule with the frame tagger (share of frames whose tags
  contain every word of the scene).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqbench.config import GenerationSpec
from vqbench.mini import assets
from vqbench.mini.dataset import EVAL_SEED_BASE, PROMPTS_DIR, render
from vqbench.mini.evaluators import MiniVideoFeatures, videos_to_tensor
from vqbench.types import Video

log = logging.getLogger("vqbench.mini.evaluate")
ATTRS = ("scene", "colour", "shape", "motion")


def clip_similarity(model: Any, videos: list[Video], texts: list[str]) -> np.ndarray:
    """Mean over frames of cosine(frame, text) for each (video, text) pair."""
    import clip

    from vqbench.mini.train_evaluators import CLIP_MEAN, CLIP_STD

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        t = torch.nn.functional.normalize(model.encode_text(clip.tokenize(texts)).float(), dim=-1)
        out = []
        for v, tv in zip(videos, t, strict=True):
            img = model.encode_image((v.to_tensor() - mean) / std).float()
            out.append((torch.nn.functional.normalize(img, dim=-1) @ tv).mean().item())
    return np.array(out)


def evaluate(generator: str | None, seeds: list[int], spec: GenerationSpec) -> dict[str, Any]:
    """Generate the eval suite and compute every bar; returns a JSON-able dict."""
    from metrics.frechet import frechet_distance
    from vqbench.adapters.mini import MiniAdapter

    records = [
        json.loads(line) for line in (PROMPTS_DIR / "mini_eval.jsonl").read_text().splitlines()
    ]
    prompts = [r for r in records for _ in seeds]
    seed_list = [s for _ in records for s in seeds]
    adapter = MiniAdapter(generator)
    adapter.load()
    spec = adapter.resolve(spec)
    t0 = time.time()
    videos = adapter.generate([p["text"] for p in prompts], seed_list, spec)
    gen_s = time.time() - t0
    log.info("generated %d videos in %.1f s", len(videos), gen_s)

    classifier = assets.load_classifier()
    with torch.no_grad():
        pred = classifier.predict(videos_to_tensor(videos))
    acc = {
        a: float(np.mean([pred[a][i] == p["attributes"][a] for i, p in enumerate(prompts)]))
        for a in ATTRS
    }

    real = [
        render(p["attributes"], EVAL_SEED_BASE + 1000 + s)
        for p, s in zip(prompts, seed_list, strict=True)
    ]
    det: MiniVideoFeatures = assets.load_i3d()
    f_real, f_gen = det.features(real), det.features(videos)
    mean_frame = np.mean([r.frames.astype(np.float32) for r in real], axis=(0, 1))
    const = Video(np.repeat(mean_frame[None].round().astype(np.uint8), spec.frames, 0))
    static = [
        Video(
            np.repeat(r.frames.astype(np.float32).mean(0, keepdims=True), spec.frames, 0)
            .round()
            .astype(np.uint8)
        )
        for r in real
    ]
    fvd = {
        "fp": frechet_distance(f_gen, f_real),
        "baseline_mean_frame": frechet_distance(det.features([const] * len(real)), f_real),
        "baseline_static_real": frechet_distance(det.features(static), f_real),
    }

    clip_model, _ = assets.load_clip()
    texts = [p["text"] for p in prompts]
    n = len(records)
    mismatch = [records[(i // len(seeds) + 1) % n]["text"] for i in range(len(prompts))]
    own = clip_similarity(clip_model, videos, texts)
    other = clip_similarity(clip_model, videos, mismatch)

    tagger = assets.load_tagger()
    hits = []
    for v, p in zip(videos, prompts, strict=True):
        tags = tagger.tags(v.to_tensor())
        hits += [all(w in t for w in p["scene"].split()) for t in tags]

    return {
        "n_videos": len(videos),
        "seeds": seeds,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "generation_seconds": round(gen_s, 1),
        "classifier_accuracy": acc,
        "fvd": fvd,
        "fvd_ratio_to_mean_frame": fvd["fp"] / max(fvd["baseline_mean_frame"], 1e-12),
        "fvd_ratio_to_static_real": fvd["fp"] / max(fvd["baseline_static_real"], 1e-12),
        "clip_own_beats_mismatched": float(np.mean(own > other)),
        "clip_sim_own_mean": float(own.mean()),
        "clip_sim_mismatched_mean": float(other.mean()),
        "scene_consistency_tagger": float(np.mean(hits)),
    }


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: print the bars as JSON and optionally write them to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--generator", default=None, help="generator folder (default: shipped assets)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    spec = GenerationSpec(steps=args.steps, guidance=args.guidance, batch_size=args.batch_size)
    result = evaluate(args.generator, args.seeds, spec)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
