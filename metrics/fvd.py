"""Fréchet Video Distance (Unterthiner et al. 2019), in two forms.

- ``fvd``: generated videos against a reference set of real videos (a directory of video files,
  e.g. UCF-101 clips, or videos given to :meth:`FVDvsReference.set_reference`);
- ``fvd_fp``: a setting's videos against the FP model's videos of the same prompts and seeds
  (the papers' "FVD-FP16").

Protocol (metrics.md §1): detector features (default StyleGAN-V's TorchScript I3D, 400-d
pre-softmax logits) of 16 frames resized to 224x224 in [-1, 1]; float64 statistics with
unbiased covariance (``cov_ddof=1``, TF-GAN); see :mod:`metrics.frechet`. Features are cached
by content hash. The CI is a percentile bootstrap over videos (``ci_resamples`` resamples of
each set, 100 by default: each costs two symmetric eigendecompositions of a DxD matrix);
FVD is biased upward at small N, so the CI describes sampling spread, not that bias.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from metrics.backbones.video_features import (
    FeatureCache,
    VideoFeatureExtractor,
    extractor_id,
    resolve_detector,
)
from metrics.base import check_batch, require_fp
from metrics.frechet import frechet_distance
from metrics.stats import bootstrap_statistic_ci
from vqbench.types import MetricResult, SampleContext, Video

log = logging.getLogger(__name__)

_REF_MEMO: dict[tuple[Any, ...], np.ndarray] = {}


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def read_video_dir(directory: str | os.PathLike[str], limit: int | None = None) -> list[Video]:
    """Decode the video files of ``directory`` (sorted by name; the first ``limit``) with PyAV.

    PyAV converts any pixel format to RGB (decord 0.6 fails on e.g. yuv444p).
    """
    import av

    videos = []
    for p in _video_files(directory, limit):
        with av.open(str(p)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            fps = float(stream.average_rate or 8.0)
        if not frames:
            raise ValueError(f"{p}: no video frames")
        videos.append(Video(np.stack(frames), fps))
    return videos


def _video_files(directory: str | os.PathLike[str], limit: int | None) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"reference_dir {d} is not a directory")
    paths = sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"reference_dir {d} holds no {'/'.join(VIDEO_SUFFIXES)} files")
    return paths[:limit] if limit is not None else paths


def _nonnegative(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """A Fréchet distance's CI clipped at 0 (the bias shift can cross it)."""
    return None if ci is None else (max(ci[0], 0.0), max(ci[1], 0.0))


class _FVDBase:
    version = "2"  # 2: bias-corrected bootstrap CI
    higher_is_better = False

    def __init__(
        self,
        detector: str | VideoFeatureExtractor = "i3d_torchscript",
        detector_path: str | None = None,
        detector_sha256: str | None = None,
        frames: int = 16,
        resolution: int = 224,
        clip_sampling: str = "first",
        resize: str = "bilinear",
        device: str = "cpu",
        cache_dir: str | None = None,
        ci_resamples: int = 100,
        cov_ddof: int = 1,
    ) -> None:
        if frames < 1 or resolution < 1:
            raise ValueError(f"frames and resolution must be positive, got {frames}, {resolution}")
        if cov_ddof not in (0, 1):
            raise ValueError(f"cov_ddof must be 0 or 1, got {cov_ddof}")
        self._spec = dict(
            detector=detector,
            detector_path=detector_path,
            detector_sha256=detector_sha256,
            frames=frames,
            resolution=resolution,
            clip=clip_sampling,
            resize=resize,
            device=device,
        )
        self.cache = FeatureCache(cache_dir)
        self.ci_resamples, self.cov_ddof = int(ci_resamples), int(cov_ddof)
        self._extractor: VideoFeatureExtractor | None = None
        self._gen: list[np.ndarray] = []

    @property
    def extractor(self) -> VideoFeatureExtractor:
        """The detector, loaded on first use."""
        if self._extractor is None:
            self._extractor = resolve_detector(**self._spec)
        return self._extractor

    def _features(self, videos: list[Video]) -> np.ndarray:
        return self.cache.features(self.extractor, videos)

    def _fd(self, a: np.ndarray, b: np.ndarray) -> float:
        return frechet_distance(a, b, ddof=self.cov_ddof)

    def params(self, n_gen: int, dim: int) -> dict[str, Any]:
        ex = self.extractor
        p: dict[str, Any] = {
            "detector": ex.name,
            "detector_sha256": ex.sha256,
            "frames": None,
            "resolution": None,
            "clip_sampling": None,
        }
        ex_params = getattr(ex, "params", None)
        if callable(ex_params):
            p.update(ex_params())
        p.update(
            {
                "n": n_gen,
                "feature_dim": dim,
                "cov_ddof": self.cov_ddof,
                "ci_method": f"bootstrap_sets_bias_corrected_{self.ci_resamples}",
            }
        )
        return p

    def reset(self) -> None:
        self._gen.clear()


class FVDvsReference(_FVDBase):
    """FVD of the generated videos against real reference videos.

    The reference set is ``reference_dir`` (its video files, sorted by name, the first
    ``n_reference``) unless :meth:`set_reference` gave videos.
    """

    name = "fvd"
    requires = frozenset({"reference"})

    def __init__(
        self, reference_dir: str | None = None, n_reference: int | None = None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.reference_dir, self.n_reference = reference_dir, n_reference
        self._ref_videos: list[Video] | None = None

    def set_reference(self, videos: list[Video]) -> None:
        """Use ``videos`` as the reference set (overrides ``reference_dir``)."""
        self._ref_videos = list(videos)

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        if videos:
            self._gen.append(self._features(videos))

    def _reference_features(self) -> tuple[np.ndarray, str]:
        if self._ref_videos is not None:
            return self._features(self._ref_videos), "videos"
        if self.reference_dir is None:
            raise ValueError("fvd needs reference videos: pass reference_dir= or set_reference()")
        paths = _video_files(self.reference_dir, self.n_reference)
        memo_key = (
            tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths),
            extractor_id(self.extractor),
        )
        if memo_key not in _REF_MEMO:
            _REF_MEMO[memo_key] = self._features(
                read_video_dir(self.reference_dir, self.n_reference)
            )
        return _REF_MEMO[memo_key], str(self.reference_dir)

    def compute(self) -> MetricResult:
        if not self._gen:
            raise ValueError(f"{self.name}: no samples; call update() before compute()")
        gen = np.concatenate(self._gen)
        ref, source = self._reference_features()
        value = self._fd(gen, ref)
        ci = _nonnegative(
            bootstrap_statistic_ci(
                (len(gen), len(ref)),
                lambda ig, ir: self._fd(gen[ig], ref[ir]),
                n_resamples=self.ci_resamples,
                estimate=value,
            )
        )
        params = self.params(len(gen), gen.shape[1])
        params.update({"n_reference": len(ref), "reference": source})
        return MetricResult(
            self.name, value, len(gen), self.version, self.higher_is_better, ci, [], params
        )


class FVDvsFP(_FVDBase):
    """FVD of a setting's videos against the FP videos of the same prompts and seeds."""

    name = "fvd_fp"
    requires = frozenset({"fp_video"})

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._fp: list[np.ndarray] = []

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        if not videos:
            return
        fps = [require_fp(self.name, c) for c in ctx]
        self._gen.append(self._features(videos))
        self._fp.append(self._features(fps))

    def compute(self) -> MetricResult:
        if not self._gen:
            raise ValueError(f"{self.name}: no samples; call update() before compute()")
        gen, fp = np.concatenate(self._gen), np.concatenate(self._fp)
        value = self._fd(gen, fp)
        ci = _nonnegative(
            bootstrap_statistic_ci(
                (len(gen),),
                lambda i: self._fd(gen[i], fp[i]),
                n_resamples=self.ci_resamples,
                estimate=value,
            )
        )
        params = self.params(len(gen), gen.shape[1])
        params["ci_method"] = f"bootstrap_paired_bias_corrected_{self.ci_resamples}"
        return MetricResult(
            self.name, value, len(gen), self.version, self.higher_is_better, ci, [], params
        )

    def reset(self) -> None:
        super().reset()
        self._fp.clear()
