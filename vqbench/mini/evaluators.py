"""The mini world's evaluator networks: an I3D-style video network and a per-frame tagger.

- :class:`VideoNet`: a small 3D CNN trained to classify colour, shape, motion and scene from
  real videos. Its pooled penultimate features (``features``), followed by a fixed low-level
  branch (:class:`MiniVideoFeatures`), serve the mini FVD (the "mini I3D" detector); a
  second instance trained on another seed and data stream is the held-out attribute
  classifier of the quality bars and of the ``attribute_accuracy`` metric.
- :class:`FrameTagger`: a 2D CNN that tags each frame with its scene and the colours and
  shapes it shows; :meth:`FrameTagger.tags` returns words per frame, so VBench's scene rule
  (every word of the scene tag appears in the frame's tags) can score it.

Inputs are float videos ``[B, 3, F, H, W]`` (or frames ``[N, 3, H, W]``) in [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from vqbench.mini.dataset import ATTRIBUTES, COLOUR_NAMES, FRAMES, SCENES, SHAPES, SIZE
from vqbench.types import Video

HEADS: dict[str, int] = {k: len(v) for k, v in ATTRIBUTES.items()}


def _block3d(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class VideoNet(nn.Module):
    """I3D-style 3D CNN with one classification head per attribute."""

    def __init__(self, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim}
        w = width
        self.body = nn.Sequential(
            _block3d(3, w, (1, 1, 1)),
            _block3d(w, 2 * w, (1, 2, 2)),
            _block3d(2 * w, 3 * w, (2, 2, 2)),
            _block3d(3 * w, feature_dim, (2, 2, 2)),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(feature_dim, n) for k, n in HEADS.items()})

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features ``[B, feature_dim]`` (the FVD embedding)."""
        return self.body(video * 2 - 1).mean(dim=(2, 3, 4))

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute head."""
        f = self.features(video)
        return {k: h(f) for k, h in self.heads.items()}

    @torch.no_grad()
    def predict(self, video: torch.Tensor) -> dict[str, list[str]]:
        """Predicted attribute names per video."""
        logits = self(video)
        return {k: [ATTRIBUTES[k][i] for i in v.argmax(-1).tolist()] for k, v in logits.items()}


class FrameTagger(nn.Module):
    """Per-frame 2D CNN: scene (softmax) plus colour and shape presence (sigmoid)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.config = {"width": width}
        w = width

        def blk(cin: int, cout: int, s: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
            )

        self.body = nn.Sequential(blk(3, w, 1), blk(w, 2 * w, 2), blk(2 * w, 4 * w, 2))
        self.scene = nn.Linear(4 * w, len(SCENES))
        self.colour = nn.Linear(4 * w, len(COLOUR_NAMES))
        self.shape = nn.Linear(4 * w, len(SHAPES))

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits for frames ``[N, 3, H, W]``: scene, colour presence and shape presence."""
        f = self.body(frames * 2 - 1).mean(dim=(2, 3))
        return {"scene": self.scene(f), "colour": self.colour(f), "shape": self.shape(f)}

    @torch.no_grad()
    def tags(self, frames: torch.Tensor, threshold: float = 0.5) -> list[list[str]]:
        """Words per frame: the scene, then every colour and shape judged present."""
        out = self(frames)
        words = []
        for i in range(frames.shape[0]):
            w = [SCENES[int(out["scene"][i].argmax())]]
            w += [
                c
                for c, p in zip(COLOUR_NAMES, out["colour"][i].sigmoid(), strict=True)
                if p > threshold
            ]
            w += [
                s for s, p in zip(SHAPES, out["shape"][i].sigmoid(), strict=True) if p > threshold
            ]
            words.append(w)
        return words


def save_net(net: nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Weights to ``path`` (safetensors) with the constructor config in its metadata."""
    state = {
        k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(
        state, str(path), metadata={"config": json.dumps(net.config), "class": type(net).__name__}
    )


def load_net(path: Path) -> nn.Module:
    """Inverse of :func:`save_net`; returns the network in eval mode, fp32."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    cls = {"VideoNet": VideoNet, "FrameTagger": FrameTagger}[meta["class"]]
    net = cls(**json.loads(meta["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    net.load_state_dict(state)
    return net.eval()


def videos_to_tensor(videos: list[Video], frames: int = FRAMES, size: int = SIZE) -> torch.Tensor:
    """uint8 :class:`Video` list -> float ``[B, 3, frames, size, size]`` in [0, 1].

    Frames are sampled uniformly in time and resized bilinearly when the shapes differ.
    """
    out = []
    for v in videos:
        x = v.to_tensor()  # [T, 3, H, W]
        if x.shape[0] != frames:
            x = x[torch.linspace(0, x.shape[0] - 1, frames).round().long()]
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        out.append(x.permute(1, 0, 2, 3))
    return torch.stack(out)


class VideoClassifier:
    """A :class:`VideoNet`'s attribute predictions for uint8 :class:`Video` lists."""

    def __init__(self, net: VideoNet) -> None:
        self.net = net.eval()

    def predict(self, videos: list[Video]) -> dict[str, list[str]]:
        """Predicted attribute names per video (videos resampled as :func:`videos_to_tensor`)."""
        return self.net.predict(videos_to_tensor(videos))


LOW_LEVEL = {"version": 1, "weight": 4.0, "offset": 0.5}
"""The mini FVD embedding's low-level branch: ``weight * log(stat + offset)`` per statistic."""
LOW_LEVEL_STATS = ("hf_energy", "mean_gradient", "global_flicker", "residual_change")


def low_level_stats(frames: np.ndarray) -> np.ndarray:
    """Four low-level statistics of one video ``[T, H, W, 3]`` (0-255), in grey levels.

    - ``hf_energy``: Immerkær's noise statistic over all pixels (no edge exclusion), mean over
      frames (:func:`metrics.imaging.noise_sigma`): fine-scale energy, raised by noise and
      lowered by blur;
    - ``mean_gradient``: mean absolute horizontal plus vertical neighbour difference;
    - ``global_flicker``: mean absolute change of the frame-mean luminance between frames;
    - ``residual_change``: mean absolute frame-to-frame change of the luminance once each
      frame's mean is removed (temporal noise and motion).
    """
    from metrics.imaging import luminance, noise_sigma

    lum = luminance(frames)
    grad = np.abs(np.diff(lum, axis=1)).mean() + np.abs(np.diff(lum, axis=2)).mean()
    means = lum.mean(axis=(1, 2))
    residual = lum - means[:, None, None]
    temporal = (np.abs(np.diff(means)).mean(), np.abs(np.diff(residual, axis=0)).mean())
    return np.array([noise_sigma(lum, edge_fraction=0.0).mean(), grad, *temporal])


class MiniVideoFeatures:
    """FVD detector protocol (``name``, ``sha256``, ``features``, ``params``) of the mini world.

    The embedding is the :class:`VideoNet`'s pooled 128-d features (what the network learnt
    to recognise: colour, shape, motion, scene) followed by a fixed low-level branch, the
    four :func:`low_level_stats` as ``weight * log(stat + offset)`` (:data:`LOW_LEVEL`). The
    network was trained with noise and blur augmentation, so it is nearly blind to pixel
    noise, blur and flicker; the branch makes FVD see them on the scale a real I3D does
    (the goals and the measurement: ``benchmarks/detector_damage.py``).
    """

    def __init__(self, net: VideoNet, sha256: str | None = None, batch_size: int = 32) -> None:
        self.net, self.sha256, self.batch_size = net.eval(), sha256, batch_size
        self.name = "mini-i3d"

    def params(self) -> dict[str, Any]:
        """The low-level branch's definition (part of the detector's identity)."""
        return {"low_level": {**LOW_LEVEL, "stats": list(LOW_LEVEL_STATS)}}

    @torch.no_grad()
    def features(self, videos: list[Video]) -> np.ndarray:
        """Features ``[N, feature_dim + 4]`` as float64: the network's, then the branch's."""
        out = []
        for i in range(0, len(videos), self.batch_size):
            x = videos_to_tensor(videos[i : i + self.batch_size])
            frames = (x.permute(0, 2, 3, 4, 1) * 255.0).double().numpy()  # [B, T, H, W, 3]
            stats = np.stack([low_level_stats(f) for f in frames])
            low = LOW_LEVEL["weight"] * np.log(stats + LOW_LEVEL["offset"])
            out.append(np.concatenate([self.net.features(x).double().numpy(), low], axis=1))
        return np.concatenate(out)
