"""One run as explicit stages: prepare, FP generation, calibration capture, then per setting
quantize, generate and score, and write.

- :func:`prepare` resolves and validates everything before a model is loaded: prompts are
  read once, every quantizer is built from its config;
- :func:`load_model` loads the adapter and computes every cache key once;
- :func:`fp_stage`, :func:`capture_stage`, :func:`quantize_stage` and :func:`generate_stage`
  do the work; :func:`finish_setting` scores and writes any setting, FP or quantized.

One copy of the model is in memory at a time: the adapter is reloaded only before a setting
that follows a quantized one. Each setting gets ``<output_dir>/<run_id>/<label>/`` with
``run.json``, ``samples.jsonl`` and its videos.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqbench import shard
from vqbench.cache import CALIBRATION, FP_VIDEOS, QUANT_STATE, Cache, cache_key
from vqbench.config import GenerationSpec, QuantSpec, RunConfig, config_hash, run_hash, to_dict
from vqbench.cpu_alloc import keep_heap_memory
from vqbench.environment import environment
from vqbench.keys import input_keys, run_cache
from vqbench.measure import (
    compression_ratio,
    generate_timed,
    peak_memory,
    reset_peak_memory,
    single_video_latency,
    weight_bytes,
)
from vqbench.prompts import Prompt, load_prompts, prompts_hash
from vqbench.records import RunRecord
from vqbench.registry import METRICS, MODELS, QUANTIZERS
from vqbench.store import atomic_write_text
from vqbench.types import CalibrationSet, MetricResult, QuantTarget, SampleContext, Video
from vqbench.video import write_video

log = logging.getLogger(__name__)

__all__ = ["Plan", "LoadedModel", "Generated", "run", "prepare", "load_model", "run_hash"]


@dataclass
class Plan:
    """A run resolved and validated before any model is loaded (the prepare stage)."""

    cfg: RunConfig
    run_id: str
    root: Path
    created: str
    env: dict[str, Any]
    prompts: list[Prompt]
    pairs: list[tuple[Prompt, int]]
    calib_prompts: list[Prompt]
    quantizers: list[tuple[QuantSpec, Any]]
    device: str
    lead: bool  # rank 0 (or the only process): scores and writes
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """The loaded adapter and everything keyed on the model's identity, computed once."""

    adapter: Any
    spec: GenerationSpec
    info: dict[str, Any]
    cache: Cache | None
    keys: dict[str, str]  # content keys of the FP videos and the calibration set
    ids: dict[str, str]  # the same keys without the weights digest (for `sweep --dry-run`)
    fp_bytes: int
    quantized: bool = False  # quantized in place: reload before the next setting


@dataclass
class Generated:
    """The videos of one setting with their wall time and (inline) latency."""

    videos: list[Video]
    seconds: float
    latency: dict[str, Any] | None


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall seconds of the block to ``timings[stage]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _pairs(prompts: list[Prompt], seeds: list[int]) -> list[tuple[Prompt, int]]:
    return [(p, s) for p in prompts for s in seeds]


# ---- stage 1: prepare -------------------------------------------------------------------
def prepare(cfg: RunConfig, run_id: str | None = None) -> Plan:
    """Resolve ``cfg``: prompts read once, every quantizer built (its params validated)."""
    t0 = time.perf_counter()
    rank, _, device = shard.setup(cfg.model.device)
    if torch.device(device).type == "cpu":
        keep_heap_memory()  # large activations stop page-faulting (speed only)
    run_id = run_id or _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    gen = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    c = cfg.calibration
    calib = load_prompts(c.prompts, c.num_prompts, "calibration.prompts") if cfg.quantizers else []
    quantizers = [
        (
            q,
            QUANTIZERS.get(q.name, f"quantizers[{i}].name").from_spec(
                q.w_bits, q.a_bits, q.kernel, q.params
            ),
        )
        for i, q in enumerate(cfg.quantizers)
    ]
    return Plan(
        cfg=cfg,
        run_id=run_id,
        root=Path(cfg.output_dir) / run_id,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        env=environment(),
        prompts=gen,
        pairs=_pairs(gen, list(cfg.generation.seeds)),
        calib_prompts=calib,
        quantizers=quantizers,
        device=device,
        lead=rank == 0,
        timings={"prepare": time.perf_counter() - t0},
    )


def load_model(plan: Plan) -> LoadedModel:
    """Load the adapter in FP and compute the cache keys of its FP videos and calibration."""
    cfg = plan.cfg
    with timed(plan.timings, "load"):
        adapter = MODELS.get(cfg.model.name, "model.name")(cfg.model.path)
        adapter.load(plan.device, cfg.model.dtype)
        spec = adapter.resolve(cfg.generation)
        info = {**adapter.model_info(), "name": cfg.model.name}
        keys = input_keys(cfg, spec, plan.pairs, plan.calib_prompts, info.get("revision"))
        ids = input_keys(cfg, spec, plan.pairs, plan.calib_prompts)
        fp_bytes = weight_bytes(list(adapter.denoisers().values()))
    return LoadedModel(
        adapter, spec, info, run_cache(cfg, info.get("revision")), keys, ids, fp_bytes
    )


# ---- stage 2: FP generation ---------------------------------------------------------------
def fp_stage(plan: Plan, m: LoadedModel) -> Generated:
    """The FP videos: from the cache, or generated (and cached by the lead process)."""
    key, cache = m.keys[FP_VIDEOS], m.cache
    with timed(plan.timings, "fp_generation"):
        reset_peak_memory(m.adapter.device)
        if cache and cache.has(FP_VIDEOS, key):
            log.info("FP videos from cache entry %s", key)
            meta = cache.meta(FP_VIDEOS, key)
            return Generated(cache.get_videos(key), meta["generation_seconds"], meta.get("latency"))
        fp = generate_stage(plan, m, "FP")
        if cache and plan.lead:
            meta = {"generation_seconds": fp.seconds, "config_key": m.ids[FP_VIDEOS]}
            cache.put_videos(key, fp.videos, {**meta, "latency": fp.latency})
    return fp


def generate_stage(plan: Plan, m: LoadedModel, desc: str) -> Generated:
    """One video per (prompt, seed) with the model as it is now (FP or quantized)."""
    videos, secs, latency = generate_timed(
        m.adapter, plan.pairs, m.spec, plan.cfg.quiet, desc, plan.cfg.latency
    )
    return Generated(videos, secs, latency)


# ---- stage 3: calibration capture ------------------------------------------------------------
def capture_stage(plan: Plan, m: LoadedModel) -> tuple[CalibrationSet, dict[str, Any]]:
    """FP trajectories on the calibration prompts (shared by every quantizer), and their
    description for the records."""
    c, key, cache = plan.cfg.calibration, m.keys[CALIBRATION], m.cache
    with timed(plan.timings, "capture"):
        if cache and cache.has(CALIBRATION, key):
            log.info("calibration set from cache entry %s", key)
            calib = cache.get_calibration(key)
        else:
            log.info("capturing calibration trajectories on %d prompts", len(plan.calib_prompts))
            calib = m.adapter.capture(
                [p.text for p in plan.calib_prompts],
                [c.seed + i for i in range(len(plan.calib_prompts))],
                m.spec,
                c.every_k_steps,
            )
            if cache and plan.lead:
                meta = {"prompts": c.prompts, "config_key": m.ids[CALIBRATION]}
                cache.put_calibration(key, calib, meta)
    info = {
        "prompts": c.prompts,
        "prompts_hash": prompts_hash(plan.calib_prompts),
        "samples": len(calib),
        "every_k_steps": c.every_k_steps,
    }
    return calib, info


# ---- stage 4: one setting: quantize, generate, score -------------------------------------
def quantize_stage(
    plan: Plan, m: LoadedModel, q: QuantSpec, quantizer: Any, calib: CalibrationSet
) -> dict[str, Any]:
    """Calibrate (or load the cached state of) and quantize every denoiser of the model in
    place; returns the quantizer and calibration parts of the record."""
    cfg = plan.cfg
    if m.quantized:  # a fresh FP copy
        with timed(plan.timings, "load"):
            m.adapter.load(plan.device, cfg.model.dtype)
    targets: list[QuantTarget] = m.adapter.quant_targets(m.spec)
    calib_secs, cached = 0.0, []
    for target in targets:
        rows = m.adapter.calibration_for(target.name, calib)
        key = cache_key(  # the resolved config: a changed method default is a new state
            QUANT_STATE,
            calibration=m.keys[CALIBRATION],
            quantizer={k: v for k, v in to_dict(q).items() if k != "tag"},
            config=quantizer.config.hash(),
            target=target.name,
        )
        with timed(plan.timings, "calibrate"):
            state, from_cache, secs = _calibrated_state(plan, m, quantizer, target, rows, key)
        calib_secs += secs
        cached.append(from_cache)
        with timed(plan.timings, "quantize"):
            quantizer.quantize(target, state)
    m.quantized = True
    desc = quantizer.describe()
    return {
        "quantizer": {
            "name": q.name,
            "version": desc.get("version", "1"),
            "w_bits": q.w_bits,
            "a_bits": q.a_bits,
            "tag": q.tag,
            "kernel": q.kernel,
            "kernel_backend": desc.get("kernel_backend"),
            "config": desc.get("config", {}),
            "config_hash": desc.get("config_hash", config_hash(to_dict(q))),
            "effective_bits": _effective_bits(quantizer, targets),
            "targets": [t.name for t in targets],
        },
        "calibration": {"seconds": calib_secs, "state_cached": all(cached)},
    }


def _calibrated_state(
    plan: Plan,
    m: LoadedModel,
    quantizer: Any,
    target: QuantTarget,
    rows: CalibrationSet,
    key: str,
) -> tuple[Any, bool, float]:
    """``(state, from_cache, calibration seconds)`` of one target: the cached state (with
    the seconds its calibration took) or a fresh calibration."""
    if m.cache and m.cache.has(QUANT_STATE, key):
        log.info("calibration state of %s from cache entry %s", target.name, key)
        return m.cache.get_state(key), True, m.cache.meta(QUANT_STATE, key)["calibration_seconds"]
    t0 = time.perf_counter()
    state = quantizer.calibrate(target, rows)
    secs = time.perf_counter() - t0
    if m.cache and plan.lead:
        m.cache.put_state(key, state, {"calibration_seconds": secs})
    return state, False, secs


def _effective_bits(quantizer: Any, targets: list[QuantTarget]) -> dict[str, Any]:
    """The quantizer's effective bits; over several denoisers, averaged by weight count."""
    parts = [quantizer.effective_bits(t) for t in targets]
    if len(parts) == 1:
        return parts[0]
    sizes = [sum(lin.weight.numel() for lin in t.linears().values()) for t in targets]
    total = sum(sizes) or 1
    out: dict[str, Any] = {
        k: round(sum(p[k] * s for p, s in zip(parts, sizes, strict=True)) / total, 4)
        for k in ("w_bits", "a_bits")
    }
    for k in ("quantized_layers", "fp_layers", "w8_layers"):
        out[k] = sum(int(p.get(k, 0)) for p in parts)
    return out


def score(
    plan: Plan, m: LoadedModel, videos: list[Video], fp: list[Video] | None
) -> dict[str, MetricResult]:
    """Every configured metric on ``videos`` (``fp``: the FP videos, ``None`` for FP itself);
    the adapter's defaults (backbones, reference videos) apply unless ``metric_params``
    overrides them."""
    cfg, out = plan.cfg, {}
    ctx = [
        SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes, fp_video=fv)
        for (p, s), fv in zip(plan.pairs, fp or [None] * len(plan.pairs), strict=True)
    ]
    defaults = m.adapter.metric_defaults()
    for name in cfg.metrics:
        cls = METRICS.get(name)
        requires = getattr(cls, "requires", frozenset())
        if fp is None and "fp_video" in requires:
            continue  # comparisons against FP are not defined for FP itself
        params = {**defaults.get(name, {}), **cfg.metric_params.get(name, {})}
        metric = cls(**params)
        if "reference" in requires and not params.get("reference_dir"):
            refs = m.adapter.reference_videos(ctx)
            if refs is not None:
                metric.set_reference(refs)
        metric.update(videos, ctx)
        out[name] = metric.compute()
    return out


def finish_setting(
    plan: Plan,
    m: LoadedModel,
    label: str,
    gen: Generated,
    fp: Generated | None,
    parts: dict[str, Any] | None = None,
) -> RunRecord:
    """Score one setting (FP when ``fp`` is None), time it if asked, and write its record."""
    cfg, timings = plan.cfg, dict(plan.timings)
    with timed(timings, "metrics"):
        results = score(plan, m, gen.videos, None if fp is None else fp.videos)
    q_bytes = weight_bytes(list(m.adapter.denoisers().values()))
    eff: dict[str, Any] = {
        "generation_seconds": gen.seconds,
        "weight_bytes": q_bytes,
        "compression_ratio": compression_ratio(m.fp_bytes, q_bytes),
        "peak_memory": peak_memory(m.adapter.device),
    }
    if fp is not None:
        eff["fp_weight_bytes"] = m.fp_bytes
    if cfg.latency.enabled:  # inline timing of cached FP videos comes from their entry
        inline = cfg.latency.iters == 0 and gen.latency
        with timed(timings, "latency"):
            eff["latency"] = (
                gen.latency
                if inline
                else single_video_latency(m.adapter, plan.pairs[0], m.spec, cfg.latency)
            )
    record = RunRecord(
        run_id=f"{plan.run_id}/{label}",
        created=plan.created,
        model=m.info,
        generation=_generation_info(plan, m),
        environment=plan.env,
        run_hash=run_hash(cfg),
        metrics={k: v.to_dict() for k, v in results.items()},
        efficiency=eff,
        **(parts or {}),
    )
    with timed(timings, "write"):
        record.timings = timings
        write_setting(plan.root / label, record, plan.pairs, gen.videos, results)
    return record


def _generation_info(plan: Plan, m: LoadedModel) -> dict[str, Any]:
    return {
        "spec": to_dict(m.spec),
        "seeds": list(plan.cfg.generation.seeds),
        "prompts_hash": prompts_hash(plan.prompts),
        "num_videos": len(plan.pairs),
    }


# ---- stage 5: write --------------------------------------------------------------------------
def write_setting(
    out_dir: Path,
    record: RunRecord,
    pairs: list[tuple[Prompt, int]],
    videos: list[Video],
    results: dict[str, MetricResult],
) -> None:
    """Videos, ``samples.jsonl`` (per-video metric values) and, last, ``run.json``."""
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


def run(cfg: RunConfig, run_id: str | None = None, write_fp: bool = True) -> list[RunRecord]:
    """Execute ``cfg``; returns the FP record followed by one record per quantizer setting.

    ``run_id`` names the output directory (default: a timestamp); ``write_fp=False`` skips
    the FP record (a sweep writes it once per model). FP videos, the calibration set and the
    quantizer states are read from and written to the run cache (:func:`vqbench.keys.run_cache`).
    Under torchrun, generation is sharded and only rank 0 returns and writes records.
    """
    plan = prepare(cfg, run_id)
    m = load_model(plan)
    fp = fp_stage(plan, m)
    records = []
    if write_fp and plan.lead:
        records.append(finish_setting(plan, m, "fp", fp, None))
    if not plan.quantizers:
        return records
    calib, calib_info = capture_stage(plan, m)
    for q, quantizer in plan.quantizers:
        for stage in ("calibrate", "quantize", "generate"):
            plan.timings.pop(stage, None)
        parts = quantize_stage(plan, m, q, quantizer, calib)
        parts["calibration"] = {**calib_info, **parts["calibration"]}
        with timed(plan.timings, "generate"):
            reset_peak_memory(m.adapter.device)
            gen = generate_stage(plan, m, q.label)
        if plan.lead:
            records.append(finish_setting(plan, m, q.label, gen, fp, parts))
    return records
