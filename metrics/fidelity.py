"""Fidelity of a quantized model's video to the FP model's video of the same prompt and seed.

- ``psnr_fp``: PSNR in dB, capped at ``max_db`` for identical videos; ``reduction`` says how
  frames combine: ``mse_over_video`` (default: one MSE over all frames and pixels) or
  ``mean_of_frame_psnr`` (JunyaoHu's ``calculate_psnr``: the mean of per-frame PSNRs, each
  capped). On a video whose error grows over time the two differ by dB (the per-frame mean
  is higher: a log of the mean is below the mean of the logs);
- ``ssim_fp``: SSIM (Wang et al. 2004) with an 11-tap gaussian window (sigma 1.5), K1 0.01,
  K2 0.03, data range 255, "valid" convolution (no padding), on BT.601 luma or per RGB channel,
  averaged over pixels, channels and frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metrics.base import PerVideoMetric, require_fp
from vqbench.types import SampleContext, Video

_LUMA = (0.299, 0.587, 0.114)


def _check_same_shape(name: str, a: Video, b: Video) -> None:
    if a.frames.shape != b.frames.shape:
        raise ValueError(
            f"{name}: video shape {a.frames.shape} differs from the FP video's {b.frames.shape}"
        )


def psnr(a: np.ndarray, b: np.ndarray, max_db: float = 100.0) -> float:
    """PSNR in dB of two uint8 arrays of the same shape (peak 255), capped at ``max_db``."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return max_db
    return min(max_db, 10.0 * math.log10(255.0**2 / mse))


def frame_mean_psnr(a: np.ndarray, b: np.ndarray, max_db: float = 100.0) -> float:
    """Mean over frames of each frame's PSNR (``a``, ``b``: uint8 ``[T, H, W, 3]``)."""
    return float(np.mean([psnr(x, y, max_db) for x, y in zip(a, b, strict=True)]))


PSNR_REDUCTIONS = ("mse_over_video", "mean_of_frame_psnr")


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    channel: str = "luma",
    window: int = 11,
    sigma: float = 1.5,
) -> float:
    """Mean SSIM of two uint8 videos ``[T, H, W, 3]``.

    The window shrinks to the largest odd size that fits frames smaller than ``window``.
    """
    if channel not in ("luma", "rgb"):
        raise ValueError(f"ssim: channel must be 'luma' or 'rgb', got {channel!r}")
    x = torch.from_numpy(np.ascontiguousarray(a)).double().permute(0, 3, 1, 2)
    y = torch.from_numpy(np.ascontiguousarray(b)).double().permute(0, 3, 1, 2)
    if channel == "luma":
        w = torch.tensor(_LUMA, dtype=torch.float64).view(1, 3, 1, 1)
        x, y = (x * w).sum(1, keepdim=True), (y * w).sum(1, keepdim=True)
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    g = _gaussian_window(size, sigma)
    c = x.shape[1]
    kh = g.view(1, 1, size, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, size).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float((num / den).mean())


class PSNRvsFP(PerVideoMetric):
    """PSNR (dB) of each quantized video against the FP video of the same prompt and seed."""

    name = "psnr_fp"
    version = "1"
    higher_is_better = True
    requires = frozenset({"fp_video"})

    def __init__(self, max_db: float = 100.0, reduction: str = "mse_over_video") -> None:
        super().__init__()
        if max_db <= 0:
            raise ValueError(f"max_db must be positive, got {max_db}")
        if reduction not in PSNR_REDUCTIONS:
            raise ValueError(f"reduction must be one of {PSNR_REDUCTIONS}, got {reduction!r}")
        self.max_db, self.reduction = float(max_db), reduction

    def score(self, video: Video, ctx: SampleContext) -> float:
        fp = require_fp(self.name, ctx)
        _check_same_shape(self.name, video, fp)
        if self.reduction == "mean_of_frame_psnr":
            return frame_mean_psnr(video.frames, fp.frames, self.max_db)
        return psnr(video.frames, fp.frames, self.max_db)

    def params(self) -> dict[str, Any]:
        return {"max_db": self.max_db, "peak": 255, "reduction": self.reduction}


class SSIMvsFP(PerVideoMetric):
    """SSIM of each quantized video against the FP video of the same prompt and seed."""

    name = "ssim_fp"
    version = "1"
    higher_is_better = True
    requires = frozenset({"fp_video"})

    def __init__(self, channel: str = "luma", window: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        if channel not in ("luma", "rgb"):
            raise ValueError(f"channel must be 'luma' or 'rgb', got {channel!r}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd integer, got {window}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.channel, self.window, self.sigma = channel, int(window), float(sigma)

    def score(self, video: Video, ctx: SampleContext) -> float:
        fp = require_fp(self.name, ctx)
        _check_same_shape(self.name, video, fp)
        return ssim(video.frames, fp.frames, self.channel, self.window, self.sigma)

    def params(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "window": self.window,
            "sigma": self.sigma,
            "k1": 0.01,
            "k2": 0.03,
            "padding": "valid",
        }
