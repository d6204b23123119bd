"""``temporal_flickering``: VBench's temporal-flickering rule computed natively (no weights).

VBench (Huang et al. 2024, ``vbench/temporal_flickering.py``) scores a video by the mean
absolute difference of consecutive frames: per pair of frames the mean of ``|f_i - f_{i+1}|``
over pixels and channels (float32, 0-255), averaged over the ``T - 1`` pairs, and the video's
score is ``(255 - mean) / 255``; the dimension is the mean over videos. VBench applies it to
videos of static prompts (its rule is meant for a still scene). Here the value is x100, on the
scale of ``vbench_temporal_flickering`` (which runs the same rule through the vbench package).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics.base import PerVideoMetric
from vqbench.types import SampleContext, Video


def flicker_score(frames: np.ndarray) -> float:
    """VBench's score ``(255 - mean consecutive-frame MAE) / 255`` of uint8 ``[T, H, W, C]``."""
    if frames.shape[0] < 2:
        raise ValueError(f"temporal_flickering: needs at least 2 frames, got {frames.shape[0]}")
    x = frames.astype(np.float32)
    mae = np.abs(x[1:] - x[:-1]).reshape(x.shape[0] - 1, -1).mean(axis=1)
    return float((255.0 - mae.mean()) / 255.0)


class TemporalFlickering(PerVideoMetric):
    """Native VBench ``temporal_flickering`` x100 (higher: less flicker)."""

    name = "temporal_flickering"
    version = "1"
    higher_is_better = True
    min_frames = 2
    scale = 100.0

    def score(self, video: Video, ctx: SampleContext) -> float:
        """One video's VBench score in [0, 1] (``compute`` reports it x100)."""
        return flicker_score(video.frames)

    def params(self) -> dict[str, Any]:
        """The rule and its source."""
        return {"rule": "vbench_temporal_flickering_mae", "scale": self.scale, "native": True}
