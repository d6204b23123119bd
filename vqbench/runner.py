"""One run: FP generation, calibration capture, then per quantizer: quantize, generate, measure.

One copy of the model is in memory at a time: the adapter is reloaded before each quantizer.
Each model setting (FP and every quantizer setting) gets a directory
``<output_dir>/<run_id>/<label>/`` with ``run.json``, ``samples.jsonl`` and its videos.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import subprocess
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from metrics.efficiency import (
    StepTimer,
    WallTimer,
    compression_ratio,
    latency_summary,
    peak_memory,
    reset_peak_memory,
    weight_bytes,
)
from vqbench.cache import CALIBRATION, FP_VIDEOS, QUANT_STATE, Cache, cache_key
from vqbench.config import LatencySpec, RunConfig, config_hash, to_dict
from vqbench.cpu_alloc import keep_heap_memory
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
    adapter: Any,
    pairs: list[tuple[Prompt, int]],
    spec: Any,
    quiet: bool,
    desc: str,
    timing: LatencySpec | None = None,
) -> tuple[list[Video], float, dict[str, Any] | None]:
    """Generate one video per pair with a progress bar; returns videos, wall seconds and,
    with an inline ``timing`` spec (``iters == 0``), the latency of these batches.

    Under torchrun the batches are sharded across ranks (see :mod:`vqbench.shard`).
    """
    from vqbench import shard

    t0 = time.perf_counter()
    batches = [pairs[i : i + spec.batch_size] for i in range(0, len(pairs), spec.batch_size)]
    rank, world, _ = shard.setup(str(adapter.device))
    mine = sum(len(b) for b in batches[rank::world])
    inline = timing is not None and timing.enabled and timing.iters == 0
    ends: list[float] = []
    steps: list[list[float]] = []

    def one(chunk: list[tuple[Prompt, int]]) -> list[Video]:
        with StepTimer(adapter.denoiser()) as timer, WallTimer(adapter.device) as wall:
            out = adapter.generate(
                [p.text for p, _ in chunk], [s for _, s in chunk], spec, progress=bar.update
            )
        ends.append(wall.seconds)
        steps.append(timer.times)
        return out

    with tqdm(total=mine, desc=desc, disable=quiet or rank > 0, unit="video") as bar:
        videos = shard.map_batches(one, batches)
    secs = time.perf_counter() - t0
    if not inline:
        return videos, secs, None
    warm = min(timing.warmup, len(ends) - 1)  # at least one measured batch
    latency = {
        "step": latency_summary([t for ts in steps[warm:] for t in ts]),
        "end_to_end": latency_summary(ends[warm:]),
        "batch_size": spec.batch_size,
        "warmup_batches": warm,
    }
    return videos, secs, latency


def _latency(
    adapter: Any, pair: tuple[Prompt, int], spec: Any, timing: LatencySpec
) -> dict[str, Any]:
    """Per-step and end-to-end latency (p50/p90) of ``timing.iters`` (at least 1)
    single-video runs on one prompt, after ``timing.warmup`` warm-up runs."""
    one = replace(spec, batch_size=1)
    runs = timing.warmup + max(timing.iters, 1)
    ends: list[float] = []
    with StepTimer(adapter.denoiser()) as timer:
        for _ in range(runs):
            with WallTimer(adapter.device) as wall:
                adapter.generate([pair[0].text], [pair[1]], one)
            ends.append(wall.seconds)
    steps_per_run = max(1, len(timer.times) // runs)
    return {
        "step": latency_summary(timer.times, warmup=timing.warmup * steps_per_run),
        "end_to_end": latency_summary(ends, warmup=timing.warmup),
        "batch_size": 1,
    }


def _metrics(
    cfg: RunConfig,
    adapter: Any,
    videos: list[Video],
    ctx: list[SampleContext],
    is_fp: bool,
) -> dict[str, MetricResult]:
    """Every configured metric; the adapter's defaults (backbones, reference videos) apply
    unless ``cfg.metric_params`` overrides them."""
    out: dict[str, MetricResult] = {}
    defaults = adapter.metric_defaults()
    for name in cfg.metrics:
        cls = METRICS.get(name)
        requires = getattr(cls, "requires", frozenset())
        if is_fp and "fp_video" in requires:
            continue  # comparisons against FP are not defined for FP itself
        params = {**defaults.get(name, {}), **cfg.metric_params.get(name, {})}
        metric = cls(**params)
        if "reference" in requires and not params.get("reference_dir"):
            refs = adapter.reference_videos(ctx)
            if refs is not None:
                metric.set_reference(refs)
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


def _cache_for(cfg: RunConfig, revision: Any) -> Cache | None:
    """The run cache: ``cfg.cache_dir`` if set; otherwise ``$VQBENCH_CACHE_DIR/runs`` (default
    ``~/.cache/vqbench/runs``) for models whose weights digest is known, since only then do
    the keys identify the content. Random-weight test models are not cached by default.
    """
    if cfg.cache_dir:
        return Cache(cfg.cache_dir)
    if revision is None:
        return None
    root = os.environ.get("VQBENCH_CACHE_DIR") or Path.home() / ".cache" / "vqbench"
    return Cache(Path(root) / "runs")


def run_hash(cfg: RunConfig) -> str:
    """``config_hash`` of a run, blind to settings that do not change results (quiet, cache)."""
    return config_hash(replace(cfg, quiet=False, cache_dir=None))


def cache_keys(cfg: RunConfig, spec: Any, revision: Any = None) -> dict[str, str]:
    """Cache keys of the FP videos and the calibration set of ``cfg`` (resolved ``spec``).

    ``revision`` is the loaded model's revision (weights digest) where the adapter knows it;
    with ``None`` the keys name the configured model only (what ``sweep --dry-run`` can know).
    """
    model = {**to_dict(cfg.model), "revision": revision}
    gen = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    pairs = [[p.id, p.text, s] for p, s in _pairs(gen, cfg.generation.seeds)]
    c = cfg.calibration
    calib = load_prompts(c.prompts, c.num_prompts, "calibration.prompts")
    return {
        FP_VIDEOS: cache_key(FP_VIDEOS, model=model, spec=to_dict(spec), pairs=pairs),
        CALIBRATION: cache_key(
            CALIBRATION,
            model=model,
            spec=to_dict(spec),
            prompts=[[p.id, p.text] for p in calib],
            seed=c.seed,
            every_k_steps=c.every_k_steps,
        ),
    }


def run(cfg: RunConfig, run_id: str | None = None, write_fp: bool = True) -> list[RunRecord]:
    """Execute ``cfg``; returns the FP record followed by one record per quantizer setting.

    ``run_id`` names the output directory (default: a timestamp); ``write_fp=False`` skips
    the FP record (a sweep writes it once per model). With ``cfg.cache_dir`` set, FP videos and
    the calibration set are read from and written to a content-addressed :class:`Cache`.
    Under torchrun, generation is sharded and only rank 0 returns and writes records.
    """
    from vqbench import shard

    quiet = cfg.quiet
    rank, _, device = shard.setup(cfg.model.device)
    if torch.device(device).type == "cpu":
        keep_heap_memory()  # large activations stop page-faulting (speed only)
    lead = rank == 0
    if run_id is None:
        run_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    root = Path(cfg.output_dir) / run_id
    gen_prompts = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    pairs = _pairs(gen_prompts, cfg.generation.seeds)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env = environment()

    adapter = MODELS.get(cfg.model.name, "model.name")(cfg.model.path)
    adapter.load(device, cfg.model.dtype)
    spec = adapter.resolve(cfg.generation)
    cache = _cache_for(cfg, adapter.model_info().get("revision"))
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
            config_hash=run_hash(cfg),
        )

    # ---- FP ------------------------------------------------------------------------------
    keys = cache_keys(cfg, spec, adapter.model_info().get("revision"))
    ids = cache_keys(cfg, spec)  # recorded with the entries for `sweep --dry-run`
    reset_peak_memory(adapter.device)
    if cache and cache.has(FP_VIDEOS, keys[FP_VIDEOS]):
        log.info("FP videos from cache entry %s", keys[FP_VIDEOS])
        fp_videos = cache.get_videos(keys[FP_VIDEOS])
        fp_meta = cache.meta(FP_VIDEOS, keys[FP_VIDEOS])
        fp_secs, fp_latency = fp_meta["generation_seconds"], fp_meta.get("latency")
    else:
        fp_videos, fp_secs, fp_latency = _generate(adapter, pairs, spec, quiet, "FP", cfg.latency)
        if cache and lead:
            meta = {"generation_seconds": fp_secs, "config_key": ids[FP_VIDEOS]}
            cache.put_videos(keys[FP_VIDEOS], fp_videos, {**meta, "latency": fp_latency})
    fp_bytes = weight_bytes(adapter.denoiser())
    records: list[RunRecord] = []
    if write_fp and lead:
        fp_ctx = [
            SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes) for p, s in pairs
        ]
        fp_rec = base_record("fp")
        fp_results = _metrics(cfg, adapter, fp_videos, fp_ctx, is_fp=True)
        fp_rec.metrics = {k: v.to_dict() for k, v in fp_results.items()}
        fp_rec.efficiency = {
            "generation_seconds": fp_secs,
            "weight_bytes": fp_bytes,
            "compression_ratio": 1.0,
            "peak_memory": peak_memory(adapter.device),
        }
        if cfg.latency.enabled:  # inline timing of cached FP videos comes from their entry
            inline = cfg.latency.iters == 0 and fp_latency
            lat = fp_latency if inline else _latency(adapter, pairs[0], spec, cfg.latency)
            fp_rec.efficiency["latency"] = lat
        _write_setting(root / "fp", fp_rec, pairs, fp_videos, fp_results)
        records.append(fp_rec)

    if not cfg.quantizers:
        return records

    # ---- calibration trajectories (shared by all quantizers) --------------------------------
    calib_prompts = load_prompts(
        cfg.calibration.prompts, cfg.calibration.num_prompts, "calibration.prompts"
    )
    if cache and cache.has(CALIBRATION, keys[CALIBRATION]):
        log.info("calibration set from cache entry %s", keys[CALIBRATION])
        calib = cache.get_calibration(keys[CALIBRATION])
    else:
        log.info("capturing calibration trajectories on %d prompts", len(calib_prompts))
        calib = adapter.capture(
            [p.text for p in calib_prompts],
            [cfg.calibration.seed + i for i in range(len(calib_prompts))],
            spec,
            cfg.calibration.every_k_steps,
        )
        if cache and lead:
            meta = {"prompts": cfg.calibration.prompts, "config_key": ids[CALIBRATION]}
            cache.put_calibration(keys[CALIBRATION], calib, meta)
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
        adapter.load(device, cfg.model.dtype)  # a fresh FP copy
        target = adapter.quant_target(spec)
        state_key = cache_key(  # the resolved config: a changed method default is a new state
            QUANT_STATE,
            calibration=keys[CALIBRATION],
            quantizer=to_dict(q),
            config=quantizer.config.hash(),
            spec=to_dict(spec),
        )
        t0 = time.perf_counter()
        state_cached = bool(cache and cache.has(QUANT_STATE, state_key))
        if state_cached:
            log.info("%s: calibration state from cache entry %s", q.label, state_key)
            state = cache.get_state(state_key)
            calib_secs = cache.meta(QUANT_STATE, state_key)["calibration_seconds"]
        else:
            state = quantizer.calibrate(target, calib)
            calib_secs = time.perf_counter() - t0
            if cache and lead:
                cache.put_state(state_key, state, {"calibration_seconds": calib_secs})
        quantizer.quantize(target, state)
        reset_peak_memory(adapter.device)
        videos, secs, latency = _generate(adapter, pairs, spec, quiet, q.label, cfg.latency)
        if not lead:
            continue
        ctx = [
            SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes, fp_video=fv)
            for (p, s), fv in zip(pairs, fp_videos, strict=True)
        ]
        results = _metrics(cfg, adapter, videos, ctx, is_fp=False)
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
        rec.calibration = {**calib_info, "seconds": calib_secs, "state_cached": state_cached}
        rec.metrics = {k: v.to_dict() for k, v in results.items()}
        rec.efficiency = {
            "generation_seconds": secs,
            "weight_bytes": q_bytes,
            "fp_weight_bytes": fp_bytes,
            "compression_ratio": compression_ratio(fp_bytes, q_bytes),
            "peak_memory": peak_memory(adapter.device),
        }
        if cfg.latency.enabled:
            rec.efficiency["latency"] = latency or _latency(adapter, pairs[0], spec, cfg.latency)
        _write_setting(root / q.label, rec, pairs, videos, results)
        records.append(rec)
    return records
