"""``imaging_quality``: a weight-free no-reference measure of noise and blur, per frame.

VBench's imaging-quality dimension runs MUSIQ (a learned IQA network) on every frame; this
metric plays that role without weights, so it runs on the mini world and on real models
alike (``vbench_imaging_quality`` runs the real MUSIQ through the vbench package). It is
this repository's construction from two published estimators, not MUSIQ, and its values are
not comparable with VBench's:

- noise: Immerkær's fast noise-variance estimate (J. Immerkær, "Fast Noise Variance
  Estimation", CVIU 64(2), 1996): ``sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N|`` with
  the 3x3 kernel ``N = [[1,-2,1],[-2,4,-2],[1,-2,1]]``, on the luminance (0-255), over the
  pixels outside the 10% of strongest Sobel gradients (the edge exclusion of S.-C. Tai and
  S.-M. Yang, "A fast method for image noise estimation using Laplacian operator and
  adaptive edge detection", ISCCSP 2008);
- blur: Crété-Roffet et al.'s no-reference blur effect ("The blur effect: perception and
  estimation with a new no-reference perceptual blur metric", SPIE 2007): the share of the
  neighbour differences a 1 x ``h`` mean filter removes, the larger of the vertical and
  horizontal values, in [0, 1] (0 sharp, 1 blurry); ``h = 9`` as in the paper. An axis
  without neighbour differences is left out; a flat frame counts as fully blurred.

A frame's score is ``100 * (1 - blur) / (1 + sigma / sigma0)`` (``sigma0 = 10`` grey
levels: a noise of 10 halves the score); a video's score is the mean over its frames and the
metric is the mean over videos (higher: sharper and cleaner). Flat content reads as blurry
by the blur rule, so compare settings of the same prompts, not different worlds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from metrics.base import PerVideoMetric
from vqbench.types import SampleContext, Video

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
_SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def luminance(frames: np.ndarray) -> np.ndarray:
    """BT.601 luminance ``[T, H, W]`` (float64, 0-255) of uint8 or float ``[T, H, W, 3]``."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {frames.shape}")
    return frames.astype(np.float64) @ _LUMA


def noise_sigma(lum: np.ndarray, edge_fraction: float = 0.1) -> np.ndarray:
    """Immerkær's noise standard deviation of each frame of ``lum`` ``[T, H, W]``: ``[T]``.

    Pixels whose Sobel gradient magnitude is in the frame's top ``edge_fraction`` are left
    out (Tai and Yang's edge exclusion), so that structure does not read as noise.
    """
    t, h, w = lum.shape
    if h < 3 or w < 3:
        raise ValueError(f"noise_sigma needs frames of at least 3x3, got {h}x{w}")
    conv = np.abs(_conv3(lum, _IMMERKAER))
    grad = np.abs(_conv3(lum, _SOBEL)) + np.abs(_conv3(lum, _SOBEL.T))
    flat = conv.reshape(t, -1)
    keep = (
        grad.reshape(t, -1)
        <= np.quantile(grad.reshape(t, -1), 1.0 - edge_fraction, axis=1)[:, None]
    )
    return np.sqrt(np.pi / 2.0) * (flat * keep).sum(axis=1) / (6.0 * keep.sum(axis=1))


def _conv3(lum: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid 3x3 correlation of every frame of ``[T, H, W]``: ``[T, H - 2, W - 2]``."""
    h, w = lum.shape[1:]
    return sum(k[i, j] * lum[:, i : h - 2 + i, j : w - 2 + j] for i in range(3) for j in range(3))


def blur_effect(lum: np.ndarray, h: int = 9) -> np.ndarray:
    """Crété-Roffet blur effect of each frame of ``lum`` ``[T, H, W]``: ``[T]`` in [0, 1]."""
    per_axis = []
    for axis in (1, 2):
        blurred = uniform_filter1d(lum, h, axis=axis, mode="reflect")
        d_f = np.abs(np.diff(lum, axis=axis))
        d_b = np.abs(np.diff(blurred, axis=axis))
        s_f = d_f.sum(axis=(1, 2))
        s_v = np.maximum(d_f - d_b, 0.0).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_axis.append(np.where(s_f > 0, (s_f - s_v) / s_f, np.nan))
    # an axis without neighbour differences (NaN) has no edges to judge; a flat frame is blurred
    best = np.nan_to_num(np.stack(per_axis), nan=-1.0).max(axis=0)
    return np.where(best < 0, 1.0, best)


def frame_quality(frames: np.ndarray, sigma0: float = 10.0, h: int = 9) -> np.ndarray:
    """Per-frame score ``100 (1 - blur) / (1 + sigma / sigma0)`` of ``[T, H, W, 3]`` frames."""
    lum = luminance(frames)
    return 100.0 * (1.0 - blur_effect(lum, h)) / (1.0 + noise_sigma(lum) / sigma0)


class ImagingQuality(PerVideoMetric):
    """Weight-free imaging quality (noise and blur) per frame, x100 (higher is better)."""

    name = "imaging_quality"
    version = "1"
    higher_is_better = True
    min_frames = 1

    def __init__(self, sigma0: float = 10.0, blur_window: int = 9) -> None:
        super().__init__()
        if not np.isfinite(sigma0) or sigma0 <= 0:
            raise ValueError(f"imaging_quality: sigma0 must be a finite number > 0, got {sigma0}")
        if int(blur_window) != blur_window or blur_window < 2:
            raise ValueError(
                f"imaging_quality: blur_window must be an integer >= 2, got {blur_window}"
            )
        self.sigma0, self.blur_window = float(sigma0), int(blur_window)

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        if 0 < min(height, width) < 3:
            return [
                f"{self.name}: needs frames of at least 3x3, the generation has {height}x{width}"
            ]
        return []

    def score(self, video: Video, ctx: SampleContext) -> float:
        """The mean frame score of one video (8 frames at a time, to bound memory)."""
        f = video.frames
        scores = [
            frame_quality(f[i : i + 8], self.sigma0, self.blur_window) for i in range(0, len(f), 8)
        ]
        return float(np.concatenate(scores).mean())

    def params(self) -> dict[str, Any]:
        """The two estimators and their constants."""
        return {
            "noise": "immerkaer1996",
            "blur": "crete_roffet2007",
            "sigma0": self.sigma0,
            "blur_window": self.blur_window,
            "native": True,
        }
