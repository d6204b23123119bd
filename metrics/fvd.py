"""Fréchet Video Distance (Unterthiner et al. 2019), in two forms.

- ``fvd``: generated videos against a reference set of real videos (a directory of video files,
  e.g. UCF-101 clips, or videos given to :meth:`FVDvsReference.set_reference`);
- ``fvd_fp``: a setting's videos against the FP model's videos of the same prompts and seeds
  (the papers' "FVD-FP16").

Protocol (metrics.md §1): detector features (default StyleGAN-V's TorchScript I3D, 400-d
pre-softmax logits) of 16 frames resized to 224x224 in [-1, 1]; float64 statistics; see
:mod:`metrics.frechet`. The covariance convention follows the detector's reference protocol
unless ``cov_ddof`` says otherwise: divide by N for ``i3d_torchscript`` (StyleGAN-V, cd-fvd),
by N - 1 for ``i3d`` and ``mini`` (TF-GAN). Real reference videos give their clip by
``reference_clip_sampling`` (``random``: StyleGAN-V's random offsets, seeded by ``clip_seed``).
Features are cached by content hash.

The CI is a bootstrap over videos (``ci_resamples`` resamples of each set, 100 by default:
each costs two symmetric eigendecompositions of a DxD matrix), shifted by the bootstrap
bias. It covers **FVD at the same N** (the expected value of this estimator at that many
videos), not the bias-free distance: FVD is biased upward at small N, and the record says so
in ``ci_covers`` (coverage measured by ``benchmarks/ci_coverage.py``). FVDs at different N
are not comparable; ``vqbench report`` and ``check`` refuse to compare them unless asked.

Version 3: the covariance convention follows the detector (was N - 1 for all), and
``short_side_crop`` rounds the long side up (was to nearest; ``resize_rounding="nearest"``).
Version 4: the mini detector (``detector="mini"``) appends a fixed low-level branch to its
network's features (:class:`vqbench.mini.evaluators.MiniVideoFeatures`); other detectors are
unchanged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from metrics.backbones.i3d import MIN_FRAMES
from metrics.backbones.manifest import missing_message
from metrics.backbones.mini import mini_asset_problem
from metrics.backbones.video_features import (
    CLIP_SAMPLING,
    FeatureCache,
    VideoFeatureExtractor,
    extractor_id,
    random_clips,
    resolve_detector,
    sample_clip,
)
from metrics.base import MetricBase, check_batch, require_fp
from metrics.frechet import frechet_distance
from vqbench.stats import bootstrap_statistic_ci
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


COV_DDOF = {"i3d_torchscript": 0, "i3d": 1, "mini": 1}
"""Covariance ddof of each detector's reference protocol (StyleGAN-V: N; TF-GAN: N - 1)."""
_MANIFEST_ENTRY = {"i3d": "i3d_rgb_imagenet", "i3d_torchscript": "i3d_torchscript"}
REFERENCE_CLIP_SAMPLING = (*CLIP_SAMPLING, "random")


class _FVDBase(MetricBase):
    version = "4"  # 2: bias-corrected bootstrap CI; 3: ddof by detector, ceil in short_side_crop
    # 4: the mini detector's embedding gains its low-level branch (noise, blur, flicker)
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
        cov_ddof: int | None = None,
        resize_rounding: str = "ceil",
    ) -> None:
        if frames < 1 or resolution < 1:
            raise ValueError(f"frames and resolution must be positive, got {frames}, {resolution}")
        if cov_ddof is None:
            cov_ddof = COV_DDOF.get(detector, 1) if isinstance(detector, str) else 1
        if cov_ddof not in (0, 1):
            raise ValueError(f"cov_ddof must be 0, 1 or None (the detector's), got {cov_ddof}")
        if clip_sampling not in CLIP_SAMPLING:
            raise ValueError(f"clip_sampling must be one of {CLIP_SAMPLING}, got {clip_sampling!r}")
        self._spec = dict(
            detector=detector,
            detector_path=detector_path,
            detector_sha256=detector_sha256,
            frames=frames,
            resolution=resolution,
            clip=clip_sampling,
            resize=resize,
            device=device,
            rounding=resize_rounding,
        )
        self.cache = FeatureCache(cache_dir)
        if int(ci_resamples) < 0:
            raise ValueError(f"ci_resamples must be >= 0, got {ci_resamples}")
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
                "cov_convention": "N" if self.cov_ddof == 0 else "N-1",
                "ci_method": f"bootstrap_sets_bias_corrected_{self.ci_resamples}",
            }
        )
        return p

    def frames_needed(self) -> int:
        return int(self._spec["frames"])

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        det, path = self._spec["detector"], self._spec["detector_path"]
        if not isinstance(det, str):
            return []
        if det == "mini":
            problem = mini_asset_problem("i3d.safetensors", "the mini world's video feature net")
            return [f"{self.name}: {problem}"] if problem else []
        if det not in _MANIFEST_ENTRY:
            return [f"{self.name}: unknown detector {det!r}; use i3d_torchscript, i3d or mini"]
        out = []
        if path and not Path(path).is_file():
            out.append(f"{self.name}: detector_path {path} does not exist")
        elif not path and (msg := missing_message(_MANIFEST_ENTRY[det])):
            out.append(f"{self.name}: {msg}")
        if self._spec["frames"] < MIN_FRAMES:
            out.append(
                f"{self.name}: the I3D needs >= {MIN_FRAMES} frames, frames={self._spec['frames']}"
            )
        if det == "i3d_torchscript" and self._spec["resolution"] != 224:
            out.append(
                f"{self.name}: StyleGAN-V's TorchScript I3D pools to 400-d only at resolution 224, "
                f"got {self._spec['resolution']}"
            )
        return out

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
        self,
        reference_dir: str | None = None,
        n_reference: int | None = None,
        reference_clip_sampling: str | None = None,
        clip_seed: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        ref_clip = reference_clip_sampling or self._spec["clip"]
        if ref_clip not in REFERENCE_CLIP_SAMPLING:
            raise ValueError(
                f"reference_clip_sampling must be one of {REFERENCE_CLIP_SAMPLING}, "
                f"got {ref_clip!r}"
            )
        self.reference_dir, self.n_reference = reference_dir, n_reference
        self.reference_clip, self.clip_seed = ref_clip, int(clip_seed)
        self._ref_videos: list[Video] | None = None

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        out = super()._preflight(frames=frames, height=height, width=width, device=device)
        if self.reference_dir is not None and not Path(self.reference_dir).is_dir():
            out.append(f"{self.name}: reference_dir {self.reference_dir} is not a directory")
        return out

    def _ref_features(self, videos: list[Video]) -> np.ndarray:
        """Features of real videos; ``random`` clips are cut here (the detector takes the
        first frames of what it gets), other modes are the detector's own."""
        if self.reference_clip == "random":
            videos = random_clips(videos, int(self._spec["frames"]), self.clip_seed)
        elif self.reference_clip != self._spec["clip"]:
            n = int(self._spec["frames"])
            videos = [Video(sample_clip(v.frames, n, self.reference_clip), v.fps) for v in videos]
        return self._features(videos)

    def set_reference(self, videos: list[Video]) -> None:
        """Use ``videos`` as the reference set (overrides ``reference_dir``)."""
        self._ref_videos = list(videos)

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        if videos:
            self._gen.append(self._features(videos))

    def _reference_features(self) -> tuple[np.ndarray, str]:
        if self._ref_videos is not None:
            return self._ref_features(self._ref_videos), "videos"
        if self.reference_dir is None:
            raise ValueError("fvd needs reference videos: pass reference_dir= or set_reference()")
        paths = _video_files(self.reference_dir, self.n_reference)
        memo_key = (
            tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths),
            extractor_id(self.extractor),
            self.reference_clip,
            self.clip_seed,
        )
        if memo_key not in _REF_MEMO:
            _REF_MEMO[memo_key] = self._ref_features(
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
        params.update(
            {
                "n_reference": len(ref),
                "reference": source,
                "reference_clip_sampling": self.reference_clip,
                "clip_seed": self.clip_seed if self.reference_clip == "random" else None,
                "ci_covers": (
                    f"FVD at N = {len(gen)} generated vs {len(ref)} reference videos "
                    f"({gen.shape[1]}-d features); not the bias-free (large-N) distance"
                ),
            }
        )
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
        for v, f, c in zip(videos, fps, ctx, strict=True):
            if v.frames.shape != f.frames.shape:
                raise ValueError(
                    f"{self.name}: {c.prompt_id} (seed {c.seed}) is {v.frames.shape[:3]} "
                    f"(frames, height, width) but its FP video is {f.frames.shape[:3]}; "
                    "FVD against FP compares videos of one protocol"
                )
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
        params["ci_covers"] = (
            f"FVD at N = {len(gen)} videos vs their {len(fp)} FP counterparts "
            f"({gen.shape[1]}-d features); not the bias-free (large-N) distance"
        )
        return MetricResult(
            self.name, value, len(gen), self.version, self.higher_is_better, ci, [], params
        )

    def reset(self) -> None:
        super().reset()
        self._fp.clear()
