"""Media and metric data: :class:`Video` (uint8 ``[T, H, W, 3]`` frames plus fps),
:class:`SampleContext` (what a metric may know about one video) and :class:`MetricResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vqbench.types.common import NonFiniteError


@dataclass
class Video:
    """A video as uint8 frames ``[T, H, W, 3]`` and a frame rate."""

    frames: np.ndarray
    fps: float = 8.0

    def __post_init__(self) -> None:
        f = np.asarray(self.frames)
        if f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"Video.frames must be [T,H,W,3], got shape {tuple(f.shape)}")
        if f.dtype != np.uint8:
            raise ValueError(f"Video.frames must be uint8, got {f.dtype}")
        if self.fps <= 0:
            raise ValueError(f"Video.fps must be positive, got {self.fps}")
        self.frames = f

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def to_tensor(self) -> torch.Tensor:
        """Float tensor ``[T, 3, H, W]`` in [0, 1]."""
        return torch.from_numpy(self.frames).permute(0, 3, 1, 2).float().div_(255.0)

    @classmethod
    def from_tensor(cls, x: torch.Tensor, fps: float = 8.0) -> Video:
        """Build from a float tensor ``[T, 3, H, W]`` in [0, 1] (values are clamped).

        Raises :class:`~vqbench.types.common.NonFiniteError` on NaN or infinite values (a NaN
        would otherwise become a black frame that scores as perfect against another).
        """
        x = x.detach().float()
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteError(
                f"decoded video has {int((~torch.isfinite(x)).sum())} non-finite values"
            )
        arr = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
        return cls(arr.permute(0, 2, 3, 1).cpu().numpy(), fps)


@dataclass
class SampleContext:
    """What a metric may know about one generated video."""

    prompt: str
    prompt_id: str
    seed: int
    scene: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    fp_video: Video | None = None  # the FP model's video for the same prompt and seed


@dataclass
class MetricResult:
    """One metric's value with its uncertainty and the protocol that produced it."""

    name: str
    value: float
    n: int
    version: str = "1"
    higher_is_better: bool = True
    ci: tuple[float, float] | None = None
    per_sample: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "n": self.n,
            "version": self.version,
            "higher_is_better": self.higher_is_better,
            "ci": list(self.ci) if self.ci is not None else None,
            "per_sample": list(self.per_sample),
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricResult:
        ci = d.get("ci")
        return cls(
            name=d["name"],
            value=float(d["value"]),
            n=int(d["n"]),
            version=str(d.get("version", "1")),
            higher_is_better=bool(d.get("higher_is_better", True)),
            ci=tuple(ci) if ci is not None else None,
            per_sample=list(d.get("per_sample", [])),
            params=dict(d.get("params", {})),
        )
