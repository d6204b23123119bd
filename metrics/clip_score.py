"""CLIP-SIM (text-video alignment) and CLIP-Temp (frame-to-frame consistency).

Models load through clip-anytorch's ``clip.load(path)`` from a local file. Two pixel paths,
never to be compared with each other (metrics.md §2):

- ``evalcrafter``: EvalCrafter's ``Scores_with_CLIP.py`` (the convention of the ViDiT-Q and
  Q-VDiT tables): every frame resized to the model's input size (bilinear, aspect not kept),
  raw [0, 255] floats, **no** CLIP mean/std normalisation;
- ``clip``: the proper CLIP preprocess: bicubic resize of the shorter side, centre crop,
  /255, CLIP mean/std (computed on tensors, so it approximates PIL's bicubic to rounding).

Both report unscaled cosines in [-1, 1] (not x100): CLIP-SIM is the mean over frames of
cos(image, text), CLIP-Temp the mean over consecutive frame pairs of cos(f_i, f_{i+1}).

Weights: ``precision="clip_load"`` keeps what ``clip.load`` gives (fp16 on CUDA, fp32 on
CPU); ``"fp32"`` casts to float32 everywhere, as EvalCrafter's HF ``CLIPModel`` runs. The
default is ``fp32`` for ``clipsim_evalcrafter`` (version 2) and ``clip_load`` for ``clipsim``
and ``clip_temp`` (their version-1 behaviour; ``clip_temp`` with ``precision="fp32"`` is
EvalCrafter's). On CPU both give the same numbers.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from metrics.backbones.manifest import MANIFEST, file_sha256, missing_message, resolve
from metrics.backbones.mini import load_mini, mini_asset_problem, mini_asset_sha256
from metrics.base import PerVideoMetric
from vqbench.types import SampleContext, Video

log = logging.getLogger(__name__)

PREPROCESS = ("evalcrafter", "clip")
PRECISION = ("clip_load", "fp32")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=4)
def _clip_load(path: str, device: str, fp32: bool) -> Any:
    import clip

    model, _ = clip.load(path, device=device, jit=False)
    return (model.float() if fp32 else model).eval()


def _load_mini() -> tuple[Any, str | None]:
    """The mini world's CLIP from ``vqbench.mini.assets.load_clip()`` and its sha256."""
    model, _ = load_mini("load_clip", "the mini world's CLIP, loaded with clip.load")
    return model.eval(), mini_asset_sha256("clip.pt")


def resolve_clip(backbone: str) -> tuple[str, str | None, str]:
    """``(path, sha256, label)`` of a CLIP checkpoint: a file path or a manifest name."""
    if backbone in MANIFEST:
        path = resolve(backbone)
        return str(path), file_sha256(path), backbone
    if os.path.isfile(backbone):
        return backbone, file_sha256(backbone), Path(backbone).name
    raise FileNotFoundError(
        f"CLIP backbone {backbone!r} is neither a file, 'mini', nor a manifest entry "
        "(clip_vit_b32, clip_vit_l14)"
    )


def clip_pixels(frames: torch.Tensor, n_px: int, preprocess: str) -> torch.Tensor:
    """CLIP image input ``[T, 3, n_px, n_px]`` from uint8-valued ``frames [T, 3, H, W]``."""
    x = frames.float()
    if preprocess == "evalcrafter":
        return F.interpolate(x, size=(n_px, n_px), mode="bilinear", align_corners=False)
    if preprocess != "clip":
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    h, w = x.shape[-2:]
    s = n_px / min(h, w)
    size = (max(n_px, round(h * s)), max(n_px, round(w * s)))
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    top, left = (size[0] - n_px) // 2, (size[1] - n_px) // 2
    x = x[..., top : top + n_px, left : left + n_px].clamp(0, 255) / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class _CLIPMetric(PerVideoMetric):
    version = "1"
    higher_is_better = True
    default_preprocess = "evalcrafter"
    default_precision = "clip_load"

    def __init__(
        self,
        backbone: str = "clip_vit_b32",
        preprocess: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        precision: str | None = None,
    ) -> None:
        super().__init__()
        self.preprocess = preprocess or self.default_preprocess
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {self.preprocess!r}")
        self.precision = precision or self.default_precision
        if self.precision not in PRECISION:
            raise ValueError(f"precision must be one of {PRECISION}, got {self.precision!r}")
        self.backbone, self.device, self.batch_size = backbone, device, batch_size
        self._model: Any = None
        self._sha: str | None = None
        self._label = backbone

    @property
    def model(self) -> Any:
        """The CLIP model, loaded on first use."""
        if self._model is None:
            if self.backbone == "mini":
                model, self._sha = _load_mini()
                model = model.float() if self.precision == "fp32" else model
                self._model, self._label = model.to(self.device), "mini"
            else:
                path, self._sha, self._label = resolve_clip(self.backbone)
                self._model = _clip_load(path, self.device, self.precision == "fp32")
        return self._model

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        import importlib.util

        out = []
        if importlib.util.find_spec("clip") is None:
            out.append(f"{self.name}: the clip package is missing (pip install clip-anytorch)")
        if self.backbone == "mini":
            problem = mini_asset_problem("clip.pt", "the mini world's CLIP")
        elif self.backbone in MANIFEST:
            problem = missing_message(self.backbone)
        elif not os.path.isfile(self.backbone):
            problem = (
                f"CLIP backbone {self.backbone!r} is neither a file, 'mini', nor a manifest "
                "entry (clip_vit_b32, clip_vit_l14)"
            )
        else:
            problem = None
        return out + ([f"{self.name}: {problem}"] if problem else [])

    @torch.no_grad()
    def image_features(self, video: Video) -> torch.Tensor:
        """L2-normalised float32 image embeddings of every frame, ``[T, D]``."""
        model = self.model
        n_px = int(model.visual.input_resolution)
        dtype = model.visual.conv1.weight.dtype
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)
        feats = []
        for i in range(0, frames.shape[0], self.batch_size):
            x = clip_pixels(frames[i : i + self.batch_size], n_px, self.preprocess)
            feats.append(model.encode_image(x.to(self.device, dtype)).float())
        return F.normalize(torch.cat(feats), dim=-1)

    @torch.no_grad()
    def text_features(self, prompt: str) -> torch.Tensor:
        """L2-normalised float32 text embedding ``[1, D]`` (tokens truncated to 77)."""
        import clip

        model = self.model
        tokens = clip.tokenize([prompt], truncate=True).to(self.device)
        return F.normalize(model.encode_text(tokens).float(), dim=-1)

    def params(self) -> dict[str, Any]:
        _ = self.model
        return {
            "backbone": self._label,
            "backbone_sha256": self._sha,
            "preprocess": self.preprocess,
            "input_resolution": int(self._model.visual.input_resolution),
            "precision": self.precision,
            "weights_dtype": str(self._model.visual.conv1.weight.dtype).removeprefix("torch."),
            "frames_used": "all",
            "scale": "cosine (not x100)",
        }


class CLIPSimEvalCrafter(_CLIPMetric):
    """CLIP-SIM, EvalCrafter-compatible (unnormalised [0, 255] pixels, fp32 weights as
    EvalCrafter's HF CLIPModel; Q-VDiT tables). Version 2: fp32 on CUDA too (was fp16)."""

    name = "clipsim_evalcrafter"
    version = "2"
    requires = frozenset({"prompt"})
    default_precision = "fp32"

    def __init__(
        self,
        backbone: str = "clip_vit_b32",
        device: str = "cpu",
        batch_size: int = 32,
        precision: str | None = None,
    ):
        super().__init__(backbone, "evalcrafter", device, batch_size, precision)

    def score(self, video: Video, ctx: SampleContext) -> float:
        sims = self.image_features(video) @ self.text_features(ctx.prompt).T
        return float(sims.mean())


class CLIPSim(CLIPSimEvalCrafter):
    """CLIP-SIM with the proper CLIP preprocess (normalised pixels)."""

    name = "clipsim"
    version = "1"
    default_precision = "clip_load"

    def __init__(
        self,
        backbone: str = "clip_vit_b32",
        device: str = "cpu",
        batch_size: int = 32,
        precision: str | None = None,
    ):
        _CLIPMetric.__init__(self, backbone, "clip", device, batch_size, precision)


class CLIPTemp(_CLIPMetric):
    """CLIP-Temp: mean cosine similarity of consecutive frames' image embeddings."""

    name = "clip_temp"
    requires = frozenset()
    min_frames = 2

    def score(self, video: Video, ctx: SampleContext) -> float:
        f = self.image_features(video)
        if f.shape[0] < 2:
            raise ValueError(f"{self.name}: needs at least 2 frames, got {f.shape[0]}")
        return float((f[:-1] * f[1:]).sum(-1).mean())
