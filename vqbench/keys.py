"""Cache keys of a run, each a function of its own inputs only.

*Which samples* (prompts, seeds) and *how to sample* (:func:`vqbench.config.sampling_spec`:
steps, guidance, frames, resolution, fps, batch size) are kept apart: the FP videos depend on
both, the calibration set on the calibration prompts and how to sample, never on the
evaluation suite. A quantizer state's key adds the quantizer's resolved config to the
calibration key (see :func:`vqbench.runner.quantize_stage`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vqbench.cache import CALIBRATION, FP_VIDEOS, Cache, cache_key
from vqbench.config import CalibrationSpec, GenerationSpec, RunConfig, sampling_spec, to_dict
from vqbench.prompts import Prompt, prompts_hash


def _prompt(p: Prompt) -> list[str]:
    """A prompt's identity in a key: id, text and, for image-to-video, the image's digest."""
    return [p.id, p.text] if p.image is None else [p.id, p.text, prompts_hash([p])]


def fp_videos_key(
    model: dict[str, Any], spec: GenerationSpec, pairs: list[tuple[Prompt, int]]
) -> str:
    """Key of the FP videos of ``pairs`` sampled as ``spec`` says."""
    samples = [[*_prompt(p), s] for p, s in pairs]
    return cache_key(FP_VIDEOS, model=model, sampling=sampling_spec(spec), pairs=samples)


def calibration_key(
    model: dict[str, Any], spec: GenerationSpec, prompts: list[Prompt], calib: CalibrationSpec
) -> str:
    """Key of the calibration trajectories of ``prompts`` (their seeds from ``calib``)."""
    return cache_key(
        CALIBRATION,
        model=model,
        sampling=sampling_spec(spec),
        prompts=[_prompt(p) for p in prompts],
        seed=calib.seed,
        every_k_steps=calib.every_k_steps,
    )


def run_cache(cfg: RunConfig, revision: Any) -> Cache | None:
    """The run cache: ``cfg.cache_dir`` if set; otherwise ``$VQBENCH_CACHE_DIR/runs`` (default
    ``~/.cache/vqbench/runs``) for models whose weights digest is known, since only then do
    the keys identify the content. Models without a digest are not cached by default.
    """
    if cfg.cache_dir:
        return Cache(cfg.cache_dir)
    if revision is None:
        return None
    return Cache(default_cache_root())


def default_cache_root() -> Path:
    """``$VQBENCH_CACHE_DIR/runs`` (default ``~/.cache/vqbench/runs``)."""
    root = os.environ.get("VQBENCH_CACHE_DIR") or Path.home() / ".cache" / "vqbench"
    return Path(root) / "runs"


def input_keys(
    cfg: RunConfig,
    spec: GenerationSpec,
    pairs: list[tuple[Prompt, int]],
    calib_prompts: list[Prompt],
    revision: Any = None,
) -> dict[str, str]:
    """Keys of the FP videos and the calibration set of a run (``spec`` resolved).

    ``revision`` is the loaded model's weights digest; with ``None`` the keys name the
    configured model only (what ``sweep --dry-run`` can know without loading it).
    """
    model = {**to_dict(cfg.model), "revision": revision}
    return {
        FP_VIDEOS: fp_videos_key(model, spec, pairs),
        CALIBRATION: calibration_key(model, spec, calib_prompts, cfg.calibration),
    }
