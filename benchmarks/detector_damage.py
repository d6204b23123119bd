"""What the mini FVD detector sees: FVD of damaged real videos and of FP videos vs clean real.

The reference set is the real videos of the 24 mini eval prompts x seeds 0 and 1 (48 videos,
rendered with the reference seeds the mini adapter uses, ``EVAL_SEED_BASE + 1000 + s``). Each
row scores 48 videos of the same prompts against it with ``fvd`` (``detector="mini"``): real
videos of other seeds (``EVAL_SEED_BASE + 5000 + s``), clean or damaged, and the FP
generator's videos (seeds 0 and 1, the adapter's defaults: 20 DDIM steps, guidance 1.5)::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/detector_damage.py

The last columns are the mean low-level statistics of the mini detector's branch (grey
levels). Damage (on uint8 frames, clipped to [0, 255]): Gaussian pixel noise of sigma 8 and 24
(numpy seed 0); brightness flicker, frames alternately x1.1 and x0.9; a 3x3 box blur per
frame (edge pixels replicated); a colour shift of +20 on red and -20 on blue.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch

from vqbench.adapters import adapter_class
from vqbench.config import GenerationSpec
from vqbench.mini.dataset import EVAL_SEED_BASE, PROMPTS_DIR, render
from vqbench.mini.evaluators import LOW_LEVEL_STATS, low_level_stats
from vqbench.registry import METRICS
from vqbench.types import SampleContext, Video

OTHER_SEED_BASE = EVAL_SEED_BASE + 5000


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Additive Gaussian pixel noise of standard deviation ``sigma`` (0-255 scale)."""
    return lambda f, rng: _u8(f + rng.normal(0.0, sigma, f.shape))


def flicker(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames alternately 10% brighter and 10% darker."""
    gain = np.where(np.arange(f.shape[0]) % 2 == 0, 1.1, 0.9)[:, None, None, None]
    return _u8(f * gain)


def blur(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3x3 box blur of every frame, edges replicated."""
    p = np.pad(f.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = f.shape[1:3]
    return _u8(sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0)


def colour_shift(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """+20 on red, -20 on blue."""
    return _u8(f + np.array([20.0, 0.0, -20.0]))


DAMAGE = {
    "noise sigma=8": noise(8.0),
    "noise sigma=24": noise(24.0),
    "flicker 10%": flicker,
    "blur 3x3": blur,
    "colour shift 20": colour_shift,
}


GOALS = {"noise sigma=24": 1.0, "noise sigma=8": 0.25, "blur 3x3": 0.25, "flicker 10%": 0.25}
"""Each damage's FVD must reach this fraction of the FP generator's own FVD."""


def goal_lines(rows: dict[str, float], fp: float) -> list[str]:
    """One ``ok``/``FAIL`` line per goal of :data:`GOALS`."""
    out = []
    for name, frac in GOALS.items():
        ok = rows[name] >= frac * fp
        out.append(f"- {name}: {rows[name]:.2f} >= {frac:g} x {fp:.2f}: {'ok' if ok else 'FAIL'}")
    return out


def scores(reference: list[Video], videos: list[Video], ctx: list[SampleContext]) -> dict:
    """``fvd`` (mini detector) against ``reference``, ``imaging_quality`` and
    ``temporal_flickering`` of ``videos``."""
    out = {}
    for name, kwargs in (
        ("fvd", {"detector": "mini", "frames": 8, "resolution": 32}),
        ("imaging_quality", {}),
        ("temporal_flickering", {}),
    ):
        m = METRICS.get(name)(**kwargs)
        if name == "fvd":
            m.set_reference(reference)
        m.update(videos, ctx)
        out[name] = float(m.compute().value)
    stats = np.mean([low_level_stats(v.frames) for v in videos], axis=0)
    out["low_level"] = dict(zip(LOW_LEVEL_STATS, stats.tolist(), strict=True))
    return out


def main() -> None:
    """Print the damage table (markdown) and, with ``--json``, write it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--models", nargs="*", default=["mini"], help="FP generators to score")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    records = [json.loads(s) for s in (PROMPTS_DIR / "mini_eval.jsonl").read_text().splitlines()]
    pairs = [(r, s) for r in records for s in args.seeds]
    ctx = [SampleContext(r["text"], r["id"], s) for r, s in pairs]
    reference = [render(r["attributes"], EVAL_SEED_BASE + 1000 + s) for r, s in pairs]
    other = [render(r["attributes"], OTHER_SEED_BASE + s) for r, s in pairs]
    rng = np.random.default_rng(0)
    rows = {"clean real, other seeds": scores(reference, other, ctx)}
    for name, fn in DAMAGE.items():
        damaged = [Video(fn(v.frames, rng), v.fps) for v in other]
        rows[name] = scores(reference, damaged, ctx)
    for model in args.models:
        adapter = adapter_class(model)()
        adapter.load("cpu", "float32")
        spec = GenerationSpec(batch_size=8)
        videos = adapter.generate([r["text"] for r, _ in pairs], [s for _, s in pairs], spec)
        rows[f"FP generator ({model})"] = scores(reference, videos, ctx)
    print(f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}")
    print(
        f"| videos (vs {len(reference)} clean real) | FVD (mini-i3d) | imaging_quality "
        "| temporal_flickering |"
    )
    print("|---|---|---|---|" + "---|" * len(LOW_LEVEL_STATS))
    for name, r in rows.items():
        low = " | ".join(f"{r['low_level'][k]:.2f}" for k in LOW_LEVEL_STATS)
        print(
            f"| {name} | {r['fvd']:.2f} | {r['imaging_quality']:.2f} "
            f"| {r['temporal_flickering']:.2f} | {low} |"
        )
    for model in args.models:
        print(f"\nGoals (issue 17) against the FP generator ({model}):")
        fvds = {name: r["fvd"] for name, r in rows.items()}
        for line in goal_lines(fvds, fvds[f"FP generator ({model})"]):
            print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
