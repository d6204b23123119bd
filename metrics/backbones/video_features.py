"""Video feature extractors for FVD: the I3D detectors, the mini world's, or any object.

An extractor is any object with ``name``, ``sha256`` (``str | None``) and
``features(videos: list[Video]) -> np.ndarray [N, D]``; ``params()`` (optional) returns its
protocol knobs. :func:`resolve_detector` builds one from a name:

- ``"i3d_torchscript"``: StyleGAN-V's ``i3d_torchscript.pt`` (what most recent papers use);
- ``"i3d"``: :class:`~metrics.backbones.i3d.InceptionI3d` with piergiaj's ``rgb_imagenet.pt``;
- ``"mini"``: the mini world's video feature net, ``vqbench.mini.assets.load_i3d()``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from metrics.backbones.i3d import load_i3d, load_torchscript_i3d
from metrics.backbones.manifest import resolve, verify
from metrics.backbones.mini import load_mini
from vqbench.types import Video

log = logging.getLogger(__name__)

CLIP_SAMPLING = ("first", "center", "uniform")
RESIZE_MODES = ("bilinear", "short_side_crop")
RESIZE_ROUNDING = ("ceil", "nearest")
"""How ``short_side_crop`` rounds the long side: up (JunyaoHu, VideoGPT) or to nearest (v2)."""


@runtime_checkable
class VideoFeatureExtractor(Protocol):
    """What FVD needs of a detector."""

    name: str
    sha256: str | None

    def features(self, videos: list[Video]) -> np.ndarray: ...


def sample_clip(frames: np.ndarray, n: int, mode: str = "first") -> np.ndarray:
    """``n`` frames of ``frames [T, ...]``: consecutive from the start or centre, or uniform.

    Raises ``ValueError`` if the video has fewer than ``n`` frames.
    """
    t = frames.shape[0]
    if mode not in CLIP_SAMPLING:
        raise ValueError(f"clip sampling must be one of {CLIP_SAMPLING}, got {mode!r}")
    if t < n:
        raise ValueError(f"video has {t} frames, the detector protocol needs {n}")
    if mode == "first":
        return frames[:n]
    if mode == "center":
        start = (t - n) // 2
        return frames[start : start + n]
    return frames[np.linspace(0, t - 1, n).round().astype(int)]


def random_offsets(lengths: list[int], n: int, seed: int) -> list[int]:
    """StyleGAN-V's random clip offsets: for each video a start in ``[0, T - n]``, drawn in
    order from ``numpy.random.default_rng(seed)``. Raises ``ValueError`` for a short video."""
    rng = np.random.default_rng(seed)
    out = []
    for t in lengths:
        if t < n:
            raise ValueError(f"video has {t} frames, the detector protocol needs {n}")
        out.append(int(rng.integers(0, t - n + 1)))
    return out


def random_clips(videos: list[Video], n: int, seed: int) -> list[Video]:
    """``n`` consecutive frames of each video at :func:`random_offsets`."""
    offsets = random_offsets([v.num_frames for v in videos], n, seed)
    return [Video(v.frames[o : o + n], v.fps) for v, o in zip(videos, offsets, strict=True)]


def short_side_size(h: int, w: int, resolution: int, rounding: str = "ceil") -> tuple[int, int]:
    """Frame size with the shorter side at ``resolution``; the other side rounded up
    (``ceil``, JunyaoHu/VideoGPT: 360x640 -> 224x399) or to nearest (224x398)."""
    if rounding not in RESIZE_ROUNDING:
        raise ValueError(f"resize_rounding must be one of {RESIZE_ROUNDING}, got {rounding!r}")
    s = resolution / min(h, w)
    r = math.ceil if rounding == "ceil" else round
    return max(resolution, int(r(h * s))), max(resolution, int(r(w * s)))


def preprocess_i3d(
    video: Video,
    frames: int = 16,
    resolution: int = 224,
    clip: str = "first",
    resize: str = "bilinear",
    rounding: str = "ceil",
) -> torch.Tensor:
    """``[3, frames, R, R]`` float32 in [-1, 1], the reference FVD input.

    ``bilinear`` resizes each frame to ``R x R`` (TF reference, aspect not kept);
    ``short_side_crop`` resizes the shorter side to ``R`` (the long side rounded by
    ``rounding``, see :func:`short_side_size`) and centre-crops (JunyaoHu/VideoGPT).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    x = torch.from_numpy(np.ascontiguousarray(sample_clip(video.frames, frames, clip)))
    x = x.permute(0, 3, 1, 2).float()  # [T, 3, H, W] in [0, 255]
    h, w = x.shape[-2:]
    if resize == "bilinear":
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    else:
        size = short_side_size(h, w, resolution, rounding)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        x = x[..., top : top + resolution, left : left + resolution]
    return (x / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


class I3DFeatureExtractor:
    """400-d pre-softmax I3D logits of the reference preprocessing (metrics.md §1).

    ``model`` is an :class:`~metrics.backbones.i3d.InceptionI3d` (uses ``model.features``) or
    the StyleGAN-V TorchScript module (called with ``rescale=False, resize=False,
    return_features=True``).
    """

    def __init__(
        self,
        model: Any,
        name: str,
        sha256: str | None,
        frames: int = 16,
        resolution: int = 224,
        clip: str = "first",
        resize: str = "bilinear",
        batch_size: int = 4,
        device: torch.device | str = "cpu",
        rounding: str = "ceil",
    ) -> None:
        if clip not in CLIP_SAMPLING:
            raise ValueError(f"clip must be one of {CLIP_SAMPLING}, got {clip!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if rounding not in RESIZE_ROUNDING:
            raise ValueError(f"resize_rounding must be one of {RESIZE_ROUNDING}, got {rounding!r}")
        self.rounding = rounding
        self.model, self.name, self.sha256 = model, name, sha256
        self.frames, self.resolution, self.clip, self.resize = frames, resolution, clip, resize
        self.batch_size, self.device = batch_size, torch.device(device)

    def params(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "resolution": self.resolution,
            "clip_sampling": self.clip,
            "resize": self.resize,
            "resize_rounding": self.rounding if self.resize == "short_side_crop" else None,
            "value_range": "[-1,1]",
            "feature": "logits_400_presoftmax",
        }

    @torch.no_grad()
    def features(self, videos: list[Video]) -> np.ndarray:
        out = []
        for i in range(0, len(videos), self.batch_size):
            x = torch.stack(
                [
                    preprocess_i3d(
                        v, self.frames, self.resolution, self.clip, self.resize, self.rounding
                    )
                    for v in videos[i : i + self.batch_size]
                ]
            ).to(self.device)
            if hasattr(self.model, "features"):
                f = self.model.features(x)
            else:
                f = self.model(x, rescale=False, resize=False, return_features=True)
            if f.dim() != 2:
                raise ValueError(
                    f"{self.name}: the detector returned features of shape {tuple(f.shape)}, "
                    f"a spatial map, not [B, D] vectors (at resolution {self.resolution}; "
                    "StyleGAN-V's TorchScript I3D pools to 400-d only at 224): use resolution=224"
                )
            out.append(f.float().cpu().numpy())
        return np.concatenate(out, axis=0).astype(np.float64)


@functools.lru_cache(maxsize=4)
def _load_detector_model(kind: str, path: str, device: str) -> Any:
    if kind == "i3d":
        return load_i3d(path, device)
    return load_torchscript_i3d(path, device)


def _load_mini() -> VideoFeatureExtractor:
    det = load_mini("load_i3d", "the mini world's video feature net")
    if not callable(getattr(det, "features", None)):
        raise TypeError(
            "vqbench.mini.assets.load_i3d() must return an object with "
            f"features(videos) -> np.ndarray, got {type(det).__name__}"
        )
    return det


def resolve_detector(
    detector: str | VideoFeatureExtractor,
    detector_path: str | None = None,
    detector_sha256: str | None = None,
    frames: int = 16,
    resolution: int = 224,
    clip: str = "first",
    resize: str = "bilinear",
    device: str = "cpu",
    rounding: str = "ceil",
) -> VideoFeatureExtractor:
    """An extractor from a name (``i3d_torchscript``, ``i3d``, ``mini``) or an object.

    For the I3D detectors the file is ``detector_path`` or the manifest's location (see
    :mod:`metrics.backbones.manifest`); its sha256 is checked against ``detector_sha256``
    (or the manifest's, when known) and recorded.
    """
    if not isinstance(detector, str):
        if not callable(getattr(detector, "features", None)):
            raise TypeError("detector must be a name or an object with features(videos)")
        return detector
    if detector == "mini":
        return _load_mini()
    if detector not in ("i3d", "i3d_torchscript"):
        raise ValueError(f"unknown FVD detector {detector!r}; use i3d_torchscript, i3d or mini")
    entry = {"i3d": "i3d_rgb_imagenet", "i3d_torchscript": "i3d_torchscript"}[detector]
    path = Path(detector_path) if detector_path else resolve(entry)
    sha = verify(path, detector_sha256)
    model = _load_detector_model(detector, str(path), device)
    return I3DFeatureExtractor(
        model, detector, sha, frames, resolution, clip, resize, device=device, rounding=rounding
    )


def extractor_id(extractor: VideoFeatureExtractor) -> str:
    """A string naming the detector, its weights and its preprocessing."""
    params = getattr(extractor, "params", None)
    ident = {
        "name": extractor.name,
        "sha256": extractor.sha256,
        "params": params() if callable(params) else {},
    }
    return json.dumps(ident, sort_keys=True, default=str)


class FeatureCache:
    """Features by content hash: ``.npy`` files under ``cache_dir``, or in memory if None.

    The in-memory store is shared by all caches without a directory in this process, so the
    FP setting's and each quantized setting's metric instances reuse reference features.
    """

    _memory: dict[str, np.ndarray] = {}

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(cache_dir) / "features" if cache_dir is not None else None

    @staticmethod
    def key(extractor: VideoFeatureExtractor, video: Video) -> str:
        h = hashlib.sha256(extractor_id(extractor).encode())
        h.update(str(video.frames.shape).encode())
        h.update(np.ascontiguousarray(video.frames).tobytes())
        return h.hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        if self.dir is None:
            return self._memory.get(key)
        p = self.dir / f"{key}.npy"
        return np.load(p) if p.is_file() else None

    def put(self, key: str, value: np.ndarray) -> None:
        if self.dir is None:
            self._memory[key] = value
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, value)
        os.replace(tmp, self.dir / f"{key}.npy")

    def features(self, extractor: VideoFeatureExtractor, videos: list[Video]) -> np.ndarray:
        """``[N, D]`` features of ``videos``, computing only the ones not cached."""
        keys = [self.key(extractor, v) for v in videos]
        cached = [self.get(k) for k in keys]
        missing = [i for i, c in enumerate(cached) if c is None]
        if missing:
            fresh = np.asarray(extractor.features([videos[i] for i in missing]), np.float64)
            if fresh.shape[0] != len(missing):
                raise ValueError(
                    f"detector returned {fresh.shape[0]} rows for {len(missing)} videos"
                )
            for i, f in zip(missing, fresh, strict=True):
                self.put(keys[i], f)
                cached[i] = f
        log.debug("features: %d cached, %d computed", len(videos) - len(missing), len(missing))
        return np.stack(cached).reshape(len(videos), -1)
