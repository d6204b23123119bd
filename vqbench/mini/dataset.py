"""The mini world's procedural text-to-video dataset, deterministic by seed and vectorised.

A video shows one or two objects (4 shapes x 6 colours) moving in one of 6 ways over one of
5 textured scenes, two of which move on their own (drifting clouds, waves). The world is
shaped for learnability on a CPU: objects cover about a third of the frame, backgrounds are
low-entropy, and every motion starts from a fixed position at a fixed speed, so a caption
fixes the object track and only the background phase varies with the seed.

Splits: ``train`` videos come from a seeded stream of random attributes
(:func:`sample_batch`); ``calib`` and ``eval`` are the fixed prompt suites built by
:func:`calib_prompts` and :func:`eval_prompts`; their real videos are rendered with
:func:`render` from seeds in a namespace disjoint from the training stream.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vqbench.types import Video

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.10, 0.10),
    "green": (0.20, 0.95, 0.25),
    "blue": (0.15, 0.30, 1.00),
    "yellow": (1.00, 0.92, 0.10),
    "magenta": (0.92, 0.15, 0.92),
    "white": (1.00, 1.00, 1.00),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "closer", "away")
SCENES: tuple[str, ...] = ("sky", "sea", "desert", "grass", "night")
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": COLOUR_NAMES,
    "shape": SHAPES,
    "motion": MOTIONS,
    "scene": SCENES,
}
FRAMES, SIZE, FPS = 8, 32, 8.0
RADIUS = 0.17  # object radius as a fraction of the frame (diameter about 1/3)
TWO_OBJECT_SCALE, TWO_OBJECT_OFFSET = 0.75, 0.2
EVAL_SEED_BASE = 1_000_000  # real reference videos use seeds >= this (train stream is separate)
SOURCE, LICENSE = "vqbench mini world (procedural)", "Apache-2.0"
PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


def caption(attrs: dict[str, Any]) -> str:
    """Template caption, e.g. ``"a red circle moving left in the desert"``.

    ``attrs`` holds colour, shape, motion and scene, plus optionally ``second``: a mapping
    with colour, shape and motion of a second object.
    """
    first = f"a {attrs['colour']} {attrs['shape']} moving {attrs['motion']}"
    second = attrs.get("second")
    if second:
        first += f" and a {second['colour']} {second['shape']} moving {second['motion']}"
    return f"{first} in the {attrs['scene']}"


@dataclass
class Batch:
    """Attribute indices of a batch of videos (long tensors ``[B]``); ``has2`` marks two objects."""

    colour: torch.Tensor
    shape: torch.Tensor
    motion: torch.Tensor
    scene: torch.Tensor
    colour2: torch.Tensor
    shape2: torch.Tensor
    motion2: torch.Tensor
    has2: torch.Tensor
    phase: torch.Tensor  # [B] background phase in [0, 1)

    def __len__(self) -> int:
        return int(self.colour.shape[0])

    def attributes(self, i: int) -> dict[str, Any]:
        """Attribute names of video ``i``."""
        a: dict[str, Any] = {
            "colour": COLOUR_NAMES[int(self.colour[i])],
            "shape": SHAPES[int(self.shape[i])],
            "motion": MOTIONS[int(self.motion[i])],
            "scene": SCENES[int(self.scene[i])],
        }
        if bool(self.has2[i]):
            a["second"] = {
                "colour": COLOUR_NAMES[int(self.colour2[i])],
                "shape": SHAPES[int(self.shape2[i])],
                "motion": MOTIONS[int(self.motion2[i])],
            }
        return a

    def captions(self) -> list[str]:
        """Captions of all videos."""
        return [caption(self.attributes(i)) for i in range(len(self))]


def sample_batch(n: int, generator: torch.Generator, two_object_prob: float = 0.15) -> Batch:
    """Random attributes for ``n`` training videos from ``generator``."""

    def pick(k: int) -> torch.Tensor:
        return torch.randint(0, k, (n,), generator=generator)

    return Batch(
        colour=pick(len(COLOURS)),
        shape=pick(len(SHAPES)),
        motion=pick(len(MOTIONS)),
        scene=pick(len(SCENES)),
        colour2=pick(len(COLOURS)),
        shape2=pick(len(SHAPES)),
        motion2=pick(len(MOTIONS)),
        has2=torch.rand(n, generator=generator) < two_object_prob,
        phase=torch.rand(n, generator=generator),
    )


def batch_from_attributes(attrs: list[dict[str, Any]], seeds: list[int]) -> Batch:
    """A :class:`Batch` for given attribute dicts; each seed fixes its video's background phase."""

    def idx(names: tuple[str, ...], key: str, sub: bool = False) -> torch.Tensor:
        vals = [((a.get("second") or {}) if sub else a).get(key, names[0]) for a in attrs]
        return torch.tensor([names.index(v) for v in vals], dtype=torch.long)

    phases = [torch.rand(1, generator=torch.Generator().manual_seed(int(s))).item() for s in seeds]
    return Batch(
        colour=idx(COLOUR_NAMES, "colour"),
        shape=idx(SHAPES, "shape"),
        motion=idx(MOTIONS, "motion"),
        scene=idx(SCENES, "scene"),
        colour2=idx(COLOUR_NAMES, "colour", True),
        shape2=idx(SHAPES, "shape", True),
        motion2=idx(MOTIONS, "motion", True),
        has2=torch.tensor([bool(a.get("second")) for a in attrs]),
        phase=torch.tensor(phases, dtype=torch.float32),
    )


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------
def _backgrounds(scene: torch.Tensor, phase: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """Scene textures ``[B, 3, F, H, W]`` in [0, 1]."""
    b = scene.shape[0]
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y = lin.view(1, 1, size, 1)
    x = lin.view(1, 1, 1, size)
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1) / max(frames - 1, 1)
    ph = phase.view(b, 1, 1, 1)
    two_pi = 2 * math.pi
    out = torch.zeros(b, 3, frames, size, size)

    def rgb(c: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(c).view(1, 3, 1, 1, 1)

    # sky: vertical gradient with two soft clouds drifting right
    sky = rgb((0.35, 0.55, 0.92)) * (1 - y.unsqueeze(1)) + rgb((0.62, 0.78, 0.98)) * y.unsqueeze(1)
    cloud = torch.zeros(b, frames, size, size)
    for cy, off in ((0.18, 0.0), (0.82, 0.5)):
        cx = torch.remainder(ph + off + 0.25 * t, 1.0) * 1.4 - 0.2
        cloud = cloud + torch.exp(-(((x - cx) / 0.16) ** 2) - ((y - cy) / 0.07) ** 2)
    cloud = cloud.clamp(0, 1).unsqueeze(1)
    sky = sky * (1 - 0.8 * cloud) + 0.8 * cloud * rgb((0.86, 0.88, 0.93))
    # sea: moving horizontal waves
    wave = torch.sin(two_pi * (4 * y + 0.6 * torch.sin(two_pi * x) * 0.1 - 0.5 * t + ph))
    sea = rgb((0.04, 0.28, 0.45)) + 0.07 * wave.unsqueeze(1) * rgb((1.0, 1.2, 1.2))
    # desert: static diagonal dune ripples
    rip = torch.sin(two_pi * (3 * (x + 0.6 * y) + ph)).expand(b, frames, size, size)
    desert = rgb((0.80, 0.62, 0.38)) + 0.06 * rip.unsqueeze(1)
    # grass: vertical blades swaying slightly
    blade = torch.sin(two_pi * (6 * x + 0.05 * torch.sin(two_pi * t) + ph)) * (0.4 + y)
    grass = rgb((0.16, 0.38, 0.10)) + 0.06 * blade.unsqueeze(1)
    # night: dark blue with a fixed pattern of twinkling stars
    star_pos = torch.Generator().manual_seed(7)
    sx = torch.randint(0, size, (12,), generator=star_pos)
    sy = torch.randint(0, size // 2 + size // 4, (12,), generator=star_pos)
    stars = torch.zeros(b, frames, size, size)
    tw = 0.6 + 0.4 * torch.sin(
        two_pi * (t.view(1, frames) + ph.view(b, 1) + torch.arange(12).view(12, 1, 1) / 12)
    )
    stars[:, :, sy, sx] = tw.permute(1, 2, 0)
    night = rgb((0.03, 0.04, 0.16)) + 0.8 * stars.unsqueeze(1)

    for i, img in enumerate((sky, sea, desert, grass, night)):
        sel = scene == i
        if sel.any():
            out[sel] = img.expand(b, 3, frames, size, size)[sel]
    return out.clamp(0, 1)


def _track(motion: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed object tracks: centre x, y and scale per frame, each ``[B, F]``."""
    t = torch.arange(frames, dtype=torch.float32).view(1, frames) / max(frames - 1, 1)
    m = motion.view(-1, 1)
    half = torch.full_like(t, 0.5).expand(m.shape[0], frames)
    fwd, bwd = 0.32 + 0.36 * t, 0.68 - 0.36 * t
    cx = torch.where(m == 0, bwd, torch.where(m == 1, fwd, half))
    cy = torch.where(m == 2, bwd, torch.where(m == 3, fwd, half))
    grow, shrink = 0.55 + 0.8 * t, 1.35 - 0.8 * t
    one = torch.ones_like(half)
    scale = torch.where(m == 4, grow, torch.where(m == 5, shrink, one))
    return cx, cy, scale


def _object_alpha(
    shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor, size: int
) -> torch.Tensor:
    """Anti-aliased object masks ``[B, F, H, W]`` from signed distances in radius units."""
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    px = (lin.view(1, 1, 1, size) - cx[..., None, None]) / radius[..., None, None]
    py = (lin.view(1, 1, size, 1) - cy[..., None, None]) / radius[..., None, None]
    up = -py
    d_circle = torch.sqrt(px**2 + py**2) - 1.0
    d_square = torch.maximum(px.abs(), py.abs()) - 0.85
    d_tri = torch.maximum(0.866 * px.abs() + 0.5 * (up + 0.25), -(up + 0.25)) - 0.62
    bar1 = torch.maximum(px.abs() - 1.0, py.abs() - 0.36)
    bar2 = torch.maximum(px.abs() - 0.36, py.abs() - 1.0)
    d_cross = torch.minimum(bar1, bar2)
    s = shape.view(-1, 1, 1, 1)
    d = torch.where(
        s == 0, d_circle, torch.where(s == 1, d_square, torch.where(s == 2, d_tri, d_cross))
    )
    pix = d * radius[..., None, None] * size
    return (0.5 - pix).clamp(0, 1)


def render_batch(
    batch: Batch, frames: int = FRAMES, size: int = SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``batch``: videos ``[B, 3, F, H, W]`` in [0, 1], object masks ``[B, 1, F, H, W]``."""
    video = _backgrounds(batch.scene, batch.phase, frames, size)
    palette = torch.tensor(list(COLOURS.values()))
    mask = torch.zeros(len(batch), 1, frames, size, size)
    has2 = batch.has2.view(-1, 1).float()
    objects = (
        (batch.shape, batch.motion, batch.colour, -1.0),
        (batch.shape2, batch.motion2, batch.colour2, 1.0),
    )
    for k, (shape, motion, colour, sign) in enumerate(objects):
        cx, cy, scale = _track(motion, frames)
        vertical_or_size = ((motion == 0) | (motion == 1)).view(-1, 1).float()
        off = sign * TWO_OBJECT_OFFSET * has2
        cy = cy + off * vertical_or_size
        cx = cx + off * (1 - vertical_or_size)
        radius = RADIUS * scale * (1 - (1 - TWO_OBJECT_SCALE) * has2)
        alpha = _object_alpha(shape, cx, cy, radius, size).unsqueeze(1)
        if k == 1:
            alpha = alpha * has2.view(-1, 1, 1, 1, 1)
        col = palette[colour].view(-1, 3, 1, 1, 1)
        video = video * (1 - alpha) + col * alpha
        mask = torch.maximum(mask, alpha)
    return video, mask


def render(attributes: dict[str, Any], seed: int, frames: int = FRAMES, size: int = SIZE) -> Video:
    """The real video for one prompt's attributes; ``seed`` fixes the background phase."""
    video, _ = render_batch(batch_from_attributes([attributes], [seed]), frames, size)
    return Video.from_tensor(video[0].permute(1, 0, 2, 3), fps=FPS)


# --------------------------------------------------------------------------------------
# prompt suites
# --------------------------------------------------------------------------------------
def _balanced(n: int, k: int, gen: torch.Generator) -> list[int]:
    vals = [i % k for i in range(n)]
    return [vals[i] for i in torch.randperm(n, generator=gen).tolist()]


def eval_prompts(n: int = 24, seed: int = 0) -> list[dict[str, Any]]:
    """A balanced single-object eval suite: each attribute value appears equally often (+-1)."""
    gen = torch.Generator().manual_seed(seed)
    cols = {k: _balanced(n, len(v), gen) for k, v in ATTRIBUTES.items()}
    out = []
    for i in range(n):
        attrs = {k: ATTRIBUTES[k][cols[k][i]] for k in ATTRIBUTES}
        out.append(_prompt_record(f"mini-eval-{i:03d}", attrs))
    return out


def quick_prompts(n: int = 12) -> list[dict[str, Any]]:
    """A subset of :func:`eval_prompts` for the default run, chosen greedily so every
    attribute value appears as evenly as the eval suite allows (ids kept)."""
    pool = eval_prompts()
    counts: dict[str, dict[str, int]] = {k: {} for k in ATTRIBUTES}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < n:
        best = min(
            (p for p in pool if p not in chosen),
            key=lambda p: sum(counts[k].get(p["attributes"][k], 0) for k in ATTRIBUTES),
        )
        chosen.append(best)
        for k in ATTRIBUTES:
            v = best["attributes"][k]
            counts[k][v] = counts[k].get(v, 0) + 1
    return chosen


def calib_prompts(n: int = 16, seed: int = 1, two_object_every: int = 4) -> list[dict[str, Any]]:
    """A calibration suite disjoint from :func:`eval_prompts`; every 4th prompt has two objects."""
    taken = {caption(p["attributes"]) for p in eval_prompts()}
    gen = torch.Generator().manual_seed(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        b = sample_batch(1, gen, two_object_prob=0.0)
        attrs = b.attributes(0)
        if (len(out) + 1) % two_object_every == 0:
            c = sample_batch(1, gen, two_object_prob=0.0).attributes(0)
            attrs["second"] = {k: c[k] for k in ("colour", "shape", "motion")}
        if caption(attrs) in taken:
            continue
        taken.add(caption(attrs))
        out.append(_prompt_record(f"mini-calib-{len(out):03d}", attrs))
    return out


def _prompt_record(pid: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": pid,
        "text": caption(attrs),
        "scene": attrs["scene"],
        "attributes": attrs,
        "source": SOURCE,
        "license": LICENSE,
    }


def write_prompt_suites(directory: Path = PROMPTS_DIR) -> list[Path]:
    """Write the mini suites as JSONL: ``mini_calib``, ``mini_eval``, ``mini_quick`` (12 of
    eval, balanced; the sweep's) and ``mini_default`` (its first 8; the default run's)."""
    paths = []
    suites = {"mini_calib": calib_prompts(), "mini_eval": eval_prompts()}
    suites["mini_quick"] = quick_prompts()
    suites["mini_default"] = quick_prompts(8)
    for name, records in suites.items():
        p = Path(directory) / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records))
        paths.append(p)
    return paths


if __name__ == "__main__":
    for path in write_prompt_suites():
        print(path)
