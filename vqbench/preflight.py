"""Validation before any work: everything a run needs is checked before a model is loaded.

:func:`config_problems` checks the values of a config (names, ranges, each quantizer's params
through its own config class); :func:`run_problems` adds what needs the file system or the
machine (prompt suites, the output directory, the device, the model path, each metric's
weights, extras and frame count). ``vqbench validate`` prints every problem at once; ``run``
and ``sweep`` refuse to start with the first one (and the count of the others).
"""

from __future__ import annotations

import math
from typing import Any

from vqbench.adapters.options import model_option_problems
from vqbench.config import QuantSpec, RunConfig
from vqbench.types import BITS as SUPPORTED_BITS
from vqbench.types import DTYPES, KERNEL_MODES


def _finite(value: float | None, low: float, where: str, strict: bool = False) -> list[str]:
    if value is None:
        return []
    if not math.isfinite(value) or value < low or (strict and value == low):
        op = ">" if strict else ">="
        return [f"{where}: must be a finite number {op} {low:g}, got {value!r}"]
    return []


def config_problems(cfg: RunConfig) -> list[str]:
    """Every invalid value of ``cfg``, one line each (``field: what is wrong``); no model is
    loaded and no file but the prompt suites' names is looked at."""
    from vqbench.registry import METRICS, MODELS, QUANTIZERS, UnknownNameError

    out: list[str] = []

    def name_ok(reg: Any, name: str, where: str) -> bool:
        try:
            reg.check(name, where)
            return True
        except UnknownNameError as e:
            out.append(str(e))
            return False

    name_ok(MODELS, cfg.model.name, "model.name")
    if cfg.model.dtype not in DTYPES:
        out.append(f"model.dtype: must be one of {DTYPES}, got {cfg.model.dtype!r}")
    elif cfg.model.dtype == "float16" and cfg.model.device == "cpu":
        out.append("model.dtype: float16 is ~400x slower on CPU; use float32 or bfloat16")
    out += model_option_problems(cfg.model, bool(cfg.quantizers))
    g = cfg.generation
    if not g.seeds:
        out.append("generation.seeds: needs at least one seed")
    out += [f"generation.seeds: {s} must lie in [0, 2**63)" for s in g.seeds if not 0 <= s < 2**63]
    if len(set(g.seeds)) != len(g.seeds):
        out.append(f"generation.seeds: {g.seeds} repeats a seed")
    for where, n in (("generation", g.num_prompts), ("calibration", cfg.calibration.num_prompts)):
        if n is not None and n < 1:
            out.append(f"{where}.num_prompts: must be >= 1 (or null: the whole suite), got {n}")
    if g.batch_size < 1:
        out.append(f"generation.batch_size: must be >= 1, got {g.batch_size}")
    for name in ("steps", "frames", "height", "width"):
        v = getattr(g, name)
        if v is not None and v < 1:
            out.append(f"generation.{name}: must be >= 1, got {v}")
    out += _finite(g.guidance, 0.0, "generation.guidance")
    out += _finite(g.fps, 0.0, "generation.fps", strict=True)
    if cfg.calibration.every_k_steps < 1:
        out.append("calibration.every_k_steps: must be >= 1")
    for name in ("warmup", "iters"):
        if getattr(cfg.latency, name) < 0:
            out.append(f"latency.{name}: must be >= 0, got {getattr(cfg.latency, name)}")
    for i, q in enumerate(cfg.quantizers):
        out += _quant_problems(q, i, [p.dirname for p in cfg.quantizers[:i]], name_ok, QUANTIZERS)
    for i, m in enumerate(cfg.metrics):
        name_ok(METRICS, m, f"metrics[{i}]")
    if len(set(cfg.metrics)) != len(cfg.metrics):
        out.append(f"metrics: {cfg.metrics} names a metric twice")
    for name, params in cfg.metric_params.items():
        if name not in cfg.metrics:
            out.append(f"metric_params.{name}: not one of the run's metrics {cfg.metrics}")
        elif not isinstance(params, dict):
            out.append(f"metric_params.{name}: expected a mapping of parameters, got {params!r}")
    return out


def _quant_problems(
    q: QuantSpec, i: int, earlier: list[str], name_ok: Any, registry: Any
) -> list[str]:
    from vqbench.paths import UnsafePathError, check_name

    out: list[str] = []
    if not name_ok(registry, q.name, f"quantizers[{i}].name"):
        return out
    for attr in ("w_bits", "a_bits"):
        bits = getattr(q, attr)
        if bits not in SUPPORTED_BITS:
            out.append(
                f"quantizers[{i}].{attr}: {bits} is not a supported bit width {SUPPORTED_BITS}"
            )
    if q.kernel not in KERNEL_MODES:
        out.append(f"quantizers[{i}].kernel: must be one of {KERNEL_MODES}, got {q.kernel!r}")
    if q.tag:
        try:
            check_name(q.tag, f"quantizers[{i}].tag")
        except UnsafePathError as e:
            out.append(str(e))
    if q.dirname in earlier:
        out.append(f"quantizers[{i}].tag: setting {q.dirname!r} is used twice; set a tag")
    if q.seed is not None and "seed" in q.params:
        out.append(f"quantizers[{i}].seed: also set in params.seed; give the seed once")
    elif q.seed is not None and not getattr(registry.get(q.name), "stochastic", False):
        out.append(f"quantizers[{i}].seed: {q.name}'s calibration is deterministic; drop the seed")
    if out:
        return out
    try:  # the method's own config class checks its params (unknown names, ranges)
        registry.get(q.name).from_spec(q.w_bits, q.a_bits, q.kernel, q.method_params())
    except (ValueError, TypeError) as e:
        out.append(f"quantizers[{i}] ({q.label}): {e}")
    return out


def run_problems(cfg: RunConfig) -> list[str]:
    """:func:`config_problems` plus everything that needs the file system or the machine."""
    return run_checks(cfg)[0]


def run_checks(cfg: RunConfig) -> tuple[list[str], dict[str, list[Any]]]:
    """:func:`run_problems` and the prompt suites it read (``generation.prompts`` and, when
    the run quantizes, ``calibration.prompts``), so a run reads each file once."""
    from vqbench.prompts import load_prompts
    from vqbench.registry import MODELS

    out = config_problems(cfg)
    g, c = cfg.generation, cfg.calibration
    suites = [("generation.prompts", g.prompts, g.num_prompts)]
    if cfg.quantizers:
        suites.append(("calibration.prompts", c.prompts, c.num_prompts))
    loaded: dict[str, list[Any]] = {}
    for where, suite, n in suites:  # a count above the suite's size takes the whole suite
        try:
            loaded[where] = load_prompts(suite, n if n is not None and n > 0 else None, where)
        except ValueError as e:
            out.append(str(e))
    out += _dir_problems("output_dir", cfg.output_dir)
    if cfg.cache_dir:
        out += _dir_problems("cache_dir", cfg.cache_dir)
    else:  # the default run cache, used for models with a weights digest
        from vqbench.keys import default_cache_root

        out += _dir_problems("VQBENCH_CACHE_DIR", str(default_cache_root()))
    out += device_problems(cfg.model.device)
    if cfg.model.path is not None:
        from pathlib import Path

        if not Path(cfg.model.path).exists():
            out.append(f"model.path: {cfg.model.path} does not exist")
    if any(p.startswith("model.name") for p in out):
        return out, loaded
    adapter = MODELS.get(cfg.model.name)(cfg.model.path)
    spec = adapter.resolve(g)
    out += adapter.spec_problems(spec)
    out += metric_problems(cfg, adapter, spec, loaded.get("generation.prompts", []))
    return out, loaded


def metric_problems(cfg: RunConfig, adapter: Any, spec: Any, prompts: list[Any]) -> list[str]:
    """Each configured metric's own preflight (params, weights, extras, frame count), and
    real reference videos for the metrics that need them (from the model or a directory)."""
    from vqbench.registry import METRICS, UnknownNameError

    defaults = adapter.metric_defaults()
    out: list[str] = []
    for name in cfg.metrics:
        try:
            cls = METRICS.get(name)
        except UnknownNameError:
            continue  # reported by config_problems
        params = {**defaults.get(name, {}), **(cfg.metric_params.get(name) or {})}
        found = cls.preflight(
            params,
            frames=int(spec.frames or 0),
            height=int(spec.height or 0),
            width=int(spec.width or 0),
            device=cfg.model.device,
        )
        out += [f"metrics.{name}: {p}" for p in found]
        keys = getattr(cls, "attribute_keys", ())
        if "attributes" in getattr(cls, "requires", ()) and prompts:
            bare = [p.id for p in prompts if cls.missing_attributes(p.attributes)]
            if bare:
                out.append(
                    f"metrics.{name}: needs prompts that carry the attributes "
                    f"{'/'.join(keys)} (the mini world's suites); {bare[0]} does not"
                )
        wants_refs = "reference" in getattr(cls, "requires", ())
        if wants_refs and not params.get("reference_dir") and prompts:
            if not adapter.has_reference_videos(prompts):
                out.append(
                    f"metrics.{name}: needs real reference videos, which {cfg.model.name} "
                    f"does not render for these prompts; set metric_params.{name}.reference_dir"
                )
    return out


def device_problems(device: str) -> list[str]:
    """Whether ``device`` names a device this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        return [f"model.device: {device!r} is not a device name ({e})"]
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return [f"model.device: {device!r} but this machine has no CUDA GPU; use cpu"]
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return [f"model.device: {device!r} but only {torch.cuda.device_count()} GPU(s)"]
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return [f"model.device: {device!r} but MPS is not available; use cpu"]
    elif dev.type not in ("cpu", "cuda", "mps"):
        return [f"model.device: {device!r} is not supported (cpu, cuda[:N], mps)"]
    return []


def _dir_problems(where: str, path: str) -> list[str]:
    """A directory that exists or can be created, and can be written to (probed)."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        return [f"{where}: {p} exists and is not a directory"]
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return [f"{where}: {probe} (a parent of {p}) is not a directory"]
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".vqbench-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return [f"{where}: cannot write to {probe} ({e.strerror}); choose a writable directory"]
    return []


def raise_problems(problems: list[str]) -> None:
    """Raise ``ConfigError`` with the first problem (and the count of the others)."""
    from vqbench.config import ConfigError

    if problems:
        more = f" (and {len(problems) - 1} more: see `vqbench validate`)" if problems[1:] else ""
        raise ConfigError(problems[0] + more)
