"""VBench dimensions through vbench 0.1.5's own ``evaluate`` API (the ``vbench`` extra).

``update`` writes each video as an mp4 (H.264 yuv420p, the video's own fps: ``dynamic_degree``
depends on it) into a temporary folder; ``compute`` calls ``VBench(device, full_info,
out).evaluate(folder, name, prompt_list={file: prompt}, dimension_list=[dim],
mode="custom_input", local=True)`` and reads ``{dim: [aggregate, [{"video_path",
"video_results"}]]}`` back. Values are x100 as the papers print them; the value is vbench's
own aggregate (frame-weighted for subject/background consistency), the CI the bootstrap of
the per-video scores.

Weights are read from ``cache_dir`` (default ``$VBENCH_CACHE_DIR``, else ``~/.cache/vbench``,
vbench's own rule) at the paths of :data:`metrics.backbones.manifest.MANIFEST`; every file is
checked before vbench runs, so vbench's ``wget`` fallbacks never start. DINO's hub code calls
``torch.hub.load_state_dict_from_url``; the runner points torch's hub dir at the cached
checkpoint so that this stays offline too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from metrics.backbones.manifest import MANIFEST, vbench_cache_dir, verify
from metrics.base import MetricBase, check_batch, result_from_samples, sample_key
from metrics.vbench_compat import INSTALL_HINT, require_vbench
from vqbench.types import MetricResult, SampleContext, Video

REQUIRED: dict[str, tuple[str, ...]] = {
    "subject_consistency": ("dino_hubconf", "dino_vitb16"),
    "background_consistency": ("clip_vit_b32",),
    "motion_smoothness": ("amt_s",),
    "dynamic_degree": ("raft_things",),
    "aesthetic_quality": ("clip_vit_l14", "laion_aesthetic_vit_l14"),
    "imaging_quality": ("musiq_spaq",),
    "temporal_flickering": (),
    "overall_consistency": ("viclip_internvid_10m_flt", "viclip_bpe"),
}
"""Manifest entries each dimension reads, by their ``vbench_relpath`` under the cache dir."""

PER_VIDEO_SCALE = {"imaging_quality": 0.01}
"""vbench stores imaging_quality per video on 0-100 but its aggregate on 0-1."""


def weight_files(dimension: str, cache_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The files ``dimension`` needs under the vbench cache dir, sha256-checked where published.

    Raises ``FileNotFoundError`` naming every missing file, its URL and where to put it.
    """
    root = Path(cache_dir) if cache_dir else vbench_cache_dir()
    found, missing = [], []
    for name in REQUIRED[dimension]:
        b = MANIFEST[name]
        path = root / str(b.vbench_relpath)
        if path.is_file():
            verify(path, b.sha256)
            found.append(path)
        else:
            note = f" ({b.note})" if b.note else ""
            missing.append(f"{path} from {b.url}{note}")
    if missing:
        raise FileNotFoundError(
            f"vbench {dimension}: missing " + "; ".join(missing) + ". vqbench downloads nothing"
            " (set VBENCH_CACHE_DIR or cache_dir= to change the root)"
        )
    return found


@contextlib.contextmanager
def _vbench_env(root: Path, work: Path) -> Iterator[None]:
    """vbench's module-level ``CACHE_DIR`` and torch's hub dir pointed at ``root``."""
    require_vbench()
    import vbench.utils  # noqa: F401  (defines CACHE_DIR; loaded before the patch)

    hub = work / "torch_hub"
    dino = root / str(MANIFEST["dino_vitb16"].vbench_relpath)
    if dino.is_file():  # DINO's hubconf loads its weights through torch.hub's own cache
        (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
        link = hub / "checkpoints" / dino.name
        if not link.exists():
            link.symlink_to(dino)
    loaded = list(sys.modules.items())
    mods = [m for n, m in loaded if n.split(".")[0] == "vbench" and hasattr(m, "CACHE_DIR")]
    saved = [m.CACHE_DIR for m in mods]
    old_hub = torch.hub.get_dir()
    tokenizer, old_bpe = None, None
    try:
        for m in mods:
            m.CACHE_DIR = str(root)
        torch.hub.set_dir(str(hub))
        bpe = root / str(MANIFEST["viclip_bpe"].vbench_relpath)
        if bpe.is_file():  # ViCLIP's tokenizer binds its BPE path when first imported
            from vbench.third_party.ViCLIP.simple_tokenizer import SimpleTokenizer as tokenizer

            old_bpe = tokenizer.__init__.__defaults__
            tokenizer.__init__.__defaults__ = (str(bpe),)
        yield
    finally:
        for m, v in zip(mods, saved, strict=True):
            m.CACHE_DIR = v
        torch.hub.set_dir(old_hub)
        if tokenizer is not None:
            tokenizer.__init__.__defaults__ = old_bpe


class VBenchDimension(MetricBase):
    """One VBench dimension x100, computed by vbench's code on the collected videos."""

    dimension = ""
    name = ""
    version = "1"
    higher_is_better = True
    requires: frozenset[str] = frozenset()
    min_size = 1

    def __init__(
        self, *, device: str = "cpu", cache_dir: str | None = None, read_frame: bool = False
    ) -> None:
        self.device, self.cache_dir, self.read_frame = device, cache_dir, read_frame
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.files: list[str] = []
        self.prompts: list[str] = []
        self.keys: list[str] = []

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        import importlib.util

        out = []
        if importlib.util.find_spec("vbench") is None:
            out.append(f"{self.name}: the vbench extra is not installed; {INSTALL_HINT}")
        if min(height, width) < self.min_size:
            out.append(f"{self.name}: needs videos of at least {self.min_size} px")
        root = Path(self.cache_dir) if self.cache_dir else vbench_cache_dir()
        for entry in REQUIRED[self.dimension]:
            b = MANIFEST[entry]
            path = root / str(b.vbench_relpath)
            if not path.is_file():
                note = f" ({b.note})" if b.note else ""
                out.append(f"{self.name}: missing {path}; get it from {b.url}{note}")
        return out

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        from vqbench.video import write_video

        check_batch(self.name, videos, ctx)
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix=f"vqbench_{self.dimension}_")
        for v, c in zip(videos, ctx, strict=True):
            if min(v.height, v.width) < self.min_size:
                raise ValueError(f"{self.name}: needs videos of at least {self.min_size} px")
            fname = f"{len(self.files):06d}-0.mp4"
            write_video(v, Path(self._dir.name) / "videos" / fname)
            self.files.append(fname)
            self.prompts.append(c.prompt)
            self.keys.append(sample_key(c.prompt_id, c.seed))

    def compute(self) -> MetricResult:
        if self._dir is None or not self.files:
            raise ValueError(f"{self.name}: no samples; call update() before compute()")
        root = Path(self.cache_dir) if self.cache_dir else vbench_cache_dir()
        files = weight_files(self.dimension, root)
        work = Path(self._dir.name)
        aggregate, per_video = self._evaluate(root, work)
        scale = PER_VIDEO_SCALE.get(self.dimension, 1.0)
        by_file = {Path(r["video_path"]).name: float(r["video_results"]) * scale for r in per_video}
        values = [by_file[f] for f in self.files]
        params = {
            "impl": "vbench-0.1.5",
            "dimension": self.dimension,
            "mode": "custom_input",
            "video_codec": "h264_yuv420p_crf10_native_fps",
            "weights": {f.name: verify(f, None) for f in files},
            "aggregate": "vbench_aggregate_x100",
        }
        return result_from_samples(
            self.name,
            values,
            version=self.version,
            higher_is_better=self.higher_is_better,
            params=params,
            value=aggregate,
            scale=100.0,
        )

    def _evaluate(self, root: Path, work: Path) -> tuple[float, list[dict[str, Any]]]:
        """Run vbench's ``evaluate`` and return its aggregate and per-video rows."""
        vbench = require_vbench()
        full_info = Path(vbench.__file__).with_name("VBench_full_info.json")
        out = work / "results"
        with _vbench_env(root, work):
            vb = vbench.VBench(self.device, str(full_info), str(out))
            vb.evaluate(
                str(work / "videos"),
                "vqbench",
                prompt_list=dict(zip(self.files, self.prompts, strict=True)),
                dimension_list=[self.dimension],
                local=True,
                read_frame=self.read_frame,
                mode="custom_input",
            )
        aggregate, rows = json.loads((out / "vqbench_eval_results.json").read_text())[
            self.dimension
        ]
        return float(aggregate), rows

    def reset(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self.files.clear()
        self.prompts.clear()
        self.keys.clear()


class SubjectConsistency(VBenchDimension):
    """VBench ``subject_consistency`` x100: DINO ViT-B/16 features of consecutive frames."""

    dimension, name = "subject_consistency", "vbench_subject_consistency"
    min_frames = 2


class BackgroundConsistency(VBenchDimension):
    """VBench ``background_consistency`` x100: CLIP ViT-B/32 features of consecutive frames."""

    dimension, name = "background_consistency", "vbench_background_consistency"
    min_frames = 2


class MotionSmoothness(VBenchDimension):
    """VBench ``motion_smoothness`` x100: AMT-S frame interpolation error."""

    dimension, name = "motion_smoothness", "vbench_motion_smoothness"
    min_size = 128
    min_frames = 3  # odd frames are interpolated from their even neighbours


class DynamicDegree(VBenchDimension):
    """VBench ``dynamic_degree`` x100: share of videos with large RAFT optical flow."""

    dimension, name = "dynamic_degree", "vbench_dynamic_degree"
    min_size = 128
    min_frames = 2


class AestheticQuality(VBenchDimension):
    """VBench ``aesthetic_quality`` x100: LAION aesthetic head on CLIP ViT-L/14."""

    dimension, name = "aesthetic_quality", "vbench_aesthetic_quality"


class ImagingQuality(VBenchDimension):
    """VBench ``imaging_quality`` x100: MUSIQ (SPAQ) per frame."""

    dimension, name = "imaging_quality", "vbench_imaging_quality"


class TemporalFlickering(VBenchDimension):
    """VBench ``temporal_flickering`` x100: mean absolute difference of consecutive frames."""

    dimension, name = "temporal_flickering", "vbench_temporal_flickering"
    min_frames = 2


class OverallConsistency(VBenchDimension):
    """VBench ``overall_consistency`` x100: ViCLIP video-text cosine."""

    dimension, name = "overall_consistency", "vbench_overall_consistency"
    requires = frozenset({"prompt"})
