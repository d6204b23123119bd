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
import logging
import time
import uuid
from typing import Any

import torch

from vqbench import shard
from vqbench.cache import CALIBRATION, FP_VIDEOS, QUANT_STATE, cache_key
from vqbench.config import QuantSpec, RunConfig, to_dict
from vqbench.cpu_alloc import bf16_native, keep_heap_memory
from vqbench.environment import environment
from vqbench.finish import fail_setting, finish_setting
from vqbench.guards import check_quantized, finite_outputs
from vqbench.keys import input_keys, run_cache
from vqbench.measure import (
    generate_timed,
    reset_peak_memory,
    weight_bytes,
)
from vqbench.paths import check_name, under
from vqbench.plan import Generated, LoadedModel, Plan, timed
from vqbench.preflight import raise_problems, run_checks
from vqbench.prompts import Prompt, prompts_hash
from vqbench.records import RunRecord
from vqbench.registry import MODELS, QUANTIZERS
from vqbench.types import CalibrationSet, NonFiniteError, QuantTarget

log = logging.getLogger(__name__)


def _default_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _pairs(prompts: list[Prompt], seeds: list[int]) -> list[tuple[Prompt, int]]:
    return [(p, s) for p in prompts for s in seeds]


# ---- stage 1: prepare -------------------------------------------------------------------
def prepare(cfg: RunConfig, run_id: str | None = None) -> Plan:
    """Resolve ``cfg``: every check first, prompts read once, every quantizer built."""
    t0 = time.perf_counter()
    problems, suites = run_checks(cfg)
    raise_problems(problems)
    run_id = check_name(run_id, "run_id") if run_id else _default_run_id()
    rank, _, device = shard.setup(cfg.model.device)
    if torch.device(device).type == "cpu":
        keep_heap_memory()  # large activations stop page-faulting (speed only)
        if cfg.model.dtype == "bfloat16" and not bf16_native():
            log.warning(
                "model.dtype bfloat16 is emulated on this CPU (no AVX-512 BF16/AMX), "
                "80-400x slower than float32: running float32 (the record says so)"
            )
            cfg.model.dtype = "float32"
    gen, calib = suites["generation.prompts"], suites.get("calibration.prompts", [])
    quantizers = [
        (
            q,
            QUANTIZERS.get(q.name, f"quantizers[{i}].name").from_spec(
                q.w_bits, q.a_bits, q.kernel, q.method_params()
            ),
        )
        for i, q in enumerate(cfg.quantizers)
    ]
    return Plan(
        cfg=cfg,
        run_id=run_id,
        root=under(cfg.output_dir, run_id),
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
        adapter.configure(cfg.model, quiet=cfg.quiet)  # options persist across reloads
        adapter.load(plan.device, cfg.model.dtype)
        spec = adapter.resolve(cfg.generation)
        info = {**adapter.model_info(), "name": cfg.model.name}
        keys = input_keys(cfg, spec, plan.pairs, plan.calib_prompts, info.get("revision"))
        ids = input_keys(cfg, spec, plan.pairs, plan.calib_prompts)
        fp_bytes = weight_bytes(list(adapter.denoisers().values()))
    cache = run_cache(cfg, None if info.get("random") else info.get("revision"))
    generation = {
        "spec": to_dict(spec),
        "seeds": list(cfg.generation.seeds),
        "prompts_hash": prompts_hash(plan.prompts),
        "num_videos": len(plan.pairs),
    }
    return LoadedModel(adapter, spec, info, cache, keys, ids, fp_bytes, generation)


# ---- stage 2: FP generation ---------------------------------------------------------------
def fp_stage(plan: Plan, m: LoadedModel) -> Generated:
    """The FP videos: from the cache, or generated (and cached by the lead process)."""
    key, cache = m.keys[FP_VIDEOS], m.cache
    with timed(plan.timings, "fp_generation"):
        reset_peak_memory(m.adapter.device)
        videos = cache.get_videos(key) if cache else None
        if videos is not None and len(videos) == len(plan.pairs):
            log.info("FP videos from cache entry %s", key)
            meta = cache.meta(FP_VIDEOS, key)
            return Generated(videos, meta["generation_seconds"], meta.get("latency"))
        fp = generate_stage(plan, m, "FP")
        if cache and plan.lead:
            meta = {"generation_seconds": fp.seconds, "config_key": m.ids[FP_VIDEOS]}
            cache.put_videos(key, fp.videos, {**meta, "latency": fp.latency})
    return fp


def generate_stage(plan: Plan, m: LoadedModel, desc: str) -> Generated:
    """One video per (prompt, seed) with the model as it is now (FP or quantized)."""
    with finite_outputs(m.adapter.denoisers(), desc):
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
        calib = cache.get_calibration(key) if cache else None
        if calib is not None:
            log.info("calibration set from cache entry %s", key)
        else:
            log.info("capturing calibration trajectories on %d prompts", len(plan.calib_prompts))
            calib = m.adapter.capture(
                [p.text for p in plan.calib_prompts],
                [c.seed + i for i in range(len(plan.calib_prompts))],
                m.spec,
                c.every_k_steps,
                images=[p.image for p in plan.calib_prompts],
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
    # weight counts before quantizing: QuantLinear layers are no longer ``nn.Linear``
    sizes = [sum(lin.weight.numel() for lin in t.linears().values()) for t in targets]
    m.quantized = True  # from here on the model is (being) changed in place
    calib_secs, cached, reported = 0.0, [], {}
    for target in targets:
        rows = m.adapter.calibration_for(target.name, calib)
        key = cache_key(  # the resolved config: a changed method default is a new state
            QUANT_STATE,
            calibration=m.keys[CALIBRATION],
            quantizer={k: v for k, v in to_dict(q).items() if k not in ("tag", "seed")},
            config=quantizer.config.hash(),
            target=target.name,
        )
        with timed(plan.timings, "calibrate"):
            state, from_cache, secs = _calibrated_state(plan, m, quantizer, target, rows, key)
        calib_secs += secs
        cached.append(from_cache)
        if state.meta.get("record"):  # what the quantizer asks to be recorded from its state
            reported[target.name] = {k: state.meta[k] for k in state.meta["record"]}
        with timed(plan.timings, "quantize"):
            quantizer.quantize(target, state)
    effective = _effective_bits(quantizer, targets, sizes)
    replaced = check_quantized(m.adapter.denoisers(), targets, effective)
    info = quantizer_info(q, quantizer)
    info.update(
        effective_bits=effective, targets=[t.name for t in targets], replaced_layers=replaced
    )
    calibration: dict[str, Any] = {"seconds": calib_secs, "state_cached": all(cached)}
    if reported:
        calibration["state"] = reported
    return {"quantizer": info, "calibration": calibration}


def quantizer_info(q: QuantSpec, quantizer: Any) -> dict[str, Any]:
    """The quantizer part of a record, before (or without) quantizing."""
    desc = quantizer.describe()
    return {
        "name": q.name,
        "version": desc["version"],
        "w_bits": q.w_bits,
        "a_bits": q.a_bits,
        "tag": q.tag,
        "seed": q.seed,
        "kernel": q.kernel,
        "kernel_backend": desc.get("kernel_backend"),
        "kernel_fusion": desc.get("kernel_fusion"),
        "config": desc["config"],
        "config_hash": desc["config_hash"],  # the hash the cached state was keyed on
        "effective_bits": {},
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
    state = m.cache.get_state(key) if m.cache else None
    if state is not None:
        log.info("calibration state of %s from cache entry %s", target.name, key)
        return state, True, m.cache.meta(QUANT_STATE, key)["calibration_seconds"]
    t0 = time.perf_counter()
    state = quantizer.calibrate(target, rows)
    secs = time.perf_counter() - t0
    if m.cache and plan.lead:
        m.cache.put_state(key, state, {"calibration_seconds": secs})
    return state, False, secs


def _effective_bits(quantizer: Any, targets: list[QuantTarget], sizes: list[int]) -> dict[str, Any]:
    """The quantizer's effective bits; over several denoisers, averaged by their weight
    counts ``sizes`` (taken before quantizing)."""
    parts = [quantizer.effective_bits(t) for t in targets]
    if len(parts) == 1:
        return parts[0]
    total = sum(sizes)
    if total <= 0:
        raise RuntimeError("quantization targets hold no linear weights: adapter bug")
    out: dict[str, Any] = {
        k: round(sum(p[k] * s for p, s in zip(parts, sizes, strict=True)) / total, 4)
        for k in ("w_bits", "a_bits")
    }
    for k in ("quantized_layers", "fp_layers", "w8_layers"):
        out[k] = sum(int(p.get(k, 0)) for p in parts)
    return out


def run(cfg: RunConfig, run_id: str | None = None, write_fp: bool = True) -> list[RunRecord]:
    """Execute ``cfg``; returns the FP record followed by one record per quantizer setting.

    ``run_id`` names the output directory (default: a timestamp); ``write_fp=False`` skips
    the FP record (a sweep writes it once per model). FP videos, the calibration set and the
    quantizer states are read from and written to the run cache (:func:`vqbench.keys.run_cache`).
    A quantized setting whose model produces non-finite values is recorded as ``failed``
    (with the reason, without metrics) and the run goes on; non-finite FP videos stop it.
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
        parts: dict[str, Any] = {"quantizer": quantizer_info(q, quantizer)}
        try:
            parts = quantize_stage(plan, m, q, quantizer, calib)
            parts["calibration"] = {**calib_info, **parts["calibration"]}
            with timed(plan.timings, "generate"):
                reset_peak_memory(m.adapter.device)
                gen = generate_stage(plan, m, q.label)
        except NonFiniteError as e:
            log.error("%s failed: %s", q.label, e)
            if plan.lead:
                records.append(fail_setting(plan, m, q.dirname, parts, str(e)))
            continue
        if plan.lead:
            records.append(finish_setting(plan, m, q.dirname, gen, fp, parts))
    return records
