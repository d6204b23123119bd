"""One run: FP generation, calibration capture, then per quantizer: quantize, generate, measure.

One copy of the model is in memory at a time: the adapter is reloaded before each quantizer.
Each model setting (FP and every quantizer setting) gets a directory
``<output_dir>/<run_id>/<label>/`` with ``run.json``, ``samples.jsonl`` and its videos.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import subprocess
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vqbench.config import RunConfig, config_hash, to_dict
from vqbench.prompts import Prompt, load_prompts, prompts_hash
from vqbench.records import RunRecord
from vqbench.registry import METRICS, MODELS, QUANTIZERS
from vqbench.store import atomic_write_text
from vqbench.types import MetricResult, SampleContext, Video
from vqbench.video import write_video

log = logging.getLogger(__name__)


def environment() -> dict[str, Any]:
    """Package versions, git sha and device of this process."""
    import diffusers

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        sha = ""
    from vqbench import __version__

    return {
        "vqbench": __version__,
        "git_sha": sha or None,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
    }


def _pairs(prompts: list[Prompt], seeds: list[int]) -> list[tuple[Prompt, int]]:
    return [(p, s) for p in prompts for s in seeds]


def _generate(
    adapter: Any, pairs: list[tuple[Prompt, int]], spec: Any, quiet: bool, desc: str
) -> tuple[list[Video], float]:
    """Generate one video per pair with a progress bar; returns videos and wall seconds."""
    videos: list[Video] = []
    t0 = time.perf_counter()
    with tqdm(total=len(pairs), desc=desc, disable=quiet, unit="video") as bar:
        for i in range(0, len(pairs), spec.batch_size):
            chunk = pairs[i : i + spec.batch_size]
            videos += adapter.generate(
                [p.text for p, _ in chunk], [s for _, s in chunk], spec, progress=bar.update
            )
    return videos, time.perf_counter() - t0


def _latency(adapter: Any, pair: tuple[Prompt, int], spec: Any, cfg: RunConfig) -> dict[str, Any]:
    """Per-step and end-to-end latency (p50/p90) on one prompt, warm-up excluded."""
    from dataclasses import replace

    from metrics.efficiency import StepTimer, WallTimer, latency_summary

    one = replace(spec, batch_size=1)
    runs = cfg.latency.warmup + cfg.latency.iters
    ends: list[float] = []
    with StepTimer(adapter.denoiser()) as timer:
        for _ in range(runs):
            with WallTimer(adapter.device) as wall:
                adapter.generate([pair[0].text], [pair[1]], one)
            ends.append(wall.seconds)
    steps_per_run = max(1, len(timer.times) // runs)
    return {
        "step": latency_summary(timer.times, warmup=cfg.latency.warmup * steps_per_run),
        "end_to_end": latency_summary(ends, warmup=cfg.latency.warmup),
        "batch_size": 1,
    }


def _metrics(
    cfg: RunConfig, videos: list[Video], ctx: list[SampleContext], is_fp: bool
) -> dict[str, MetricResult]:
    out: dict[str, MetricResult] = {}
    for name in cfg.metrics:
        cls = METRICS.get(name)
        if is_fp and "fp_video" in getattr(cls, "requires", frozenset()):
            continue  # comparisons against FP are not defined for FP itself
        metric = cls(**cfg.metric_params.get(name, {}))
        metric.update(videos, ctx)
        out[name] = metric.compute()
    return out


def _write_setting(
    out_dir: Path,
    record: RunRecord,
    pairs: list[tuple[Prompt, int]],
    videos: list[Video],
    results: dict[str, MetricResult],
) -> None:
    import json

    rows = []
    for i, ((p, seed), v) in enumerate(zip(pairs, videos, strict=True)):
        vid = out_dir / "videos" / f"{i:04d}_{p.id}_s{seed}.mp4"
        write_video(v, vid)
        row = {"prompt_id": p.id, "prompt": p.text, "seed": seed, "video": str(vid.name)}
        for name, r in results.items():
            if len(r.per_sample) == len(pairs):
                row[name] = r.per_sample[i]
        rows.append(row)
    atomic_write_text(out_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    record.save(out_dir / "run.json")


def run(cfg: RunConfig) -> list[RunRecord]:
    """Execute ``cfg``; returns the FP record followed by one record per quantizer setting."""
    from metrics.efficiency import compression_ratio, peak_memory, reset_peak_memory, weight_bytes

    quiet = cfg.quiet
    run_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    root = Path(cfg.output_dir) / run_id
    gen_prompts = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    pairs = _pairs(gen_prompts, cfg.generation.seeds)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env = environment()

    adapter = MODELS.get(cfg.model.name, "model.name")(cfg.model.path)
    adapter.load(cfg.model.device, cfg.model.dtype)
    spec = adapter.resolve(cfg.generation)
    generation = {
        "spec": to_dict(spec),
        "seeds": list(cfg.generation.seeds),
        "prompts_hash": prompts_hash(gen_prompts),
        "num_videos": len(pairs),
    }

    def base_record(label: str) -> RunRecord:
        return RunRecord(
            run_id=f"{run_id}/{label}",
            created=created,
            model={**adapter.model_info(), "name": cfg.model.name},
            generation=generation,
            environment=env,
            config_hash=config_hash(cfg),
        )

    # ---- FP ------------------------------------------------------------------------------
    reset_peak_memory(adapter.device)
    fp_videos, fp_secs = _generate(adapter, pairs, spec, quiet, "FP")
    fp_ctx = [
        SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes) for p, s in pairs
    ]
    fp_bytes = weight_bytes(adapter.denoiser())
    fp_rec = base_record("fp")
    fp_results = _metrics(cfg, fp_videos, fp_ctx, is_fp=True)
    fp_rec.metrics = {k: v.to_dict() for k, v in fp_results.items()}
    fp_rec.efficiency = {
        "generation_seconds": fp_secs,
        "weight_bytes": fp_bytes,
        "compression_ratio": 1.0,
        "peak_memory": peak_memory(adapter.device),
    }
    if cfg.latency.enabled:
        fp_rec.efficiency["latency"] = _latency(adapter, pairs[0], spec, cfg)
    _write_setting(root / "fp", fp_rec, pairs, fp_videos, fp_results)
    records = [fp_rec]

    if not cfg.quantizers:
        return records

    # ---- calibration trajectories (shared by all quantizers) --------------------------------
    calib_prompts = load_prompts(
        cfg.calibration.prompts, cfg.calibration.num_prompts, "calibration.prompts"
    )
    log.info("capturing calibration trajectories on %d prompts", len(calib_prompts))
    calib = adapter.capture(
        [p.text for p in calib_prompts],
        [cfg.calibration.seed + i for i in range(len(calib_prompts))],
        spec,
        cfg.calibration.every_k_steps,
    )
    calib_info = {
        "prompts": cfg.calibration.prompts,
        "prompts_hash": prompts_hash(calib_prompts),
        "samples": len(calib),
        "every_k_steps": cfg.calibration.every_k_steps,
    }

    # ---- each quantizer -----------------------------------------------------------------
    for i, q in enumerate(cfg.quantizers):
        qcls = QUANTIZERS.get(q.name, f"quantizers[{i}].name")
        quantizer = qcls.from_spec(q.w_bits, q.a_bits, q.kernel, q.params)
        adapter.load(cfg.model.device, cfg.model.dtype)  # a fresh FP copy
        target = adapter.quant_target(spec)
        t0 = time.perf_counter()
        state = quantizer.calibrate(target, calib)
        calib_secs = time.perf_counter() - t0
        quantizer.quantize(target, state)
        reset_peak_memory(adapter.device)
        videos, secs = _generate(adapter, pairs, spec, quiet, q.label)
        ctx = [
            SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes, fp_video=fv)
            for (p, s), fv in zip(pairs, fp_videos, strict=True)
        ]
        results = _metrics(cfg, videos, ctx, is_fp=False)
        q_bytes = weight_bytes(adapter.denoiser())
        desc = quantizer.describe()
        rec = base_record(q.label)
        rec.quantizer = {
            "name": q.name,
            "version": desc.get("version", "1"),
            "w_bits": q.w_bits,
            "a_bits": q.a_bits,
            "tag": q.tag,
            "kernel": q.kernel,
            "config": desc.get("config", {}),
            "config_hash": desc.get("config_hash", config_hash(asdict(q))),
            "effective_bits": quantizer.effective_bits(target),
        }
        rec.calibration = {**calib_info, "seconds": calib_secs}
        rec.metrics = {k: v.to_dict() for k, v in results.items()}
        rec.efficiency = {
            "generation_seconds": secs,
            "weight_bytes": q_bytes,
            "fp_weight_bytes": fp_bytes,
            "compression_ratio": compression_ratio(fp_bytes, q_bytes),
            "peak_memory": peak_memory(adapter.device),
        }
        if cfg.latency.enabled:
            rec.efficiency["latency"] = _latency(adapter, pairs[0], spec, cfg)
        _write_setting(root / q.label, rec, pairs, videos, results)
        records.append(rec)
    return records
