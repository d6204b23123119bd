"""``vqbench sweep``: a grid of models x quantizers x bit settings, resumable, local or Slurm.

Every cell is one :func:`vqbench.runner.run` with a single setting, written to
``<output_dir>/<model>/<label>/run.json``; the FP cell of each model runs first and the others
reuse its videos and calibration set through the content-addressed cache. A cell is done when
its ``run.json`` exists and carries the cell's config hash, so a killed sweep reruns only the
unfinished cells (``run.json`` is written last and atomically).
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vqbench.cache import CALIBRATION, FP_VIDEOS, Cache
from vqbench.config import (
    ConfigError,
    QuantSpec,
    RunConfig,
    apply_override,
    deep_update,
    from_dict,
    load_yaml,
    run_hash,
    to_dict,
    validate,
)
from vqbench.paths import check_name
from vqbench.records import RecordError, RunRecord
from vqbench.types import BITS as SUPPORTED_BITS
from vqbench.types import match_any

log = logging.getLogger(__name__)


@dataclass
class SlurmSpec:
    """Resources of one submitit job (one cell)."""

    cluster: str | None = None  # None: Slurm when available; "local" runs jobs as subprocesses
    partition: str | None = None
    timeout_min: int = 120
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    array_parallelism: int = 32
    additional: dict[str, Any] = field(default_factory=dict)  # slurm_additional_parameters


@dataclass
class SweepConfig:
    """A grid over ``models`` x ``quantizers`` x ``bits`` around one ``base`` run config."""

    base: RunConfig = field(default_factory=RunConfig)
    models: list[Any] = field(default_factory=lambda: ["mini"])  # names or ModelSpec mappings
    quantizers: list[str] = field(default_factory=lambda: ["rtn"])  # ["all"]: every registered
    bits: list[str] = field(default_factory=lambda: ["W8A8"])
    kernel: str = "fake"
    params: dict[str, Any] = field(default_factory=dict)  # quantizer name -> method params
    extra: list[QuantSpec] = field(default_factory=list)  # settings beyond the grid (ablations)
    # stochastic method name -> its calibration seeds: one cell per seed
    calib_seeds: dict[str, list[int]] = field(default_factory=dict)
    output_dir: str = "runs/sweep"
    cache_dir: str | None = None  # None: <output_dir>/.cache
    executor: str = "local"
    slurm: SlurmSpec = field(default_factory=SlurmSpec)


@dataclass
class Cell:
    """One run of the grid: the FP setting or one quantizer setting of one model."""

    model: str
    label: str
    cfg: RunConfig

    @property
    def is_fp(self) -> bool:
        return not self.cfg.quantizers

    def record_path(self, output_dir: str | Path) -> Path:
        return Path(output_dir) / self.model / self.label / "run.json"


def parse_bits(text: str) -> tuple[int, int]:
    """``"W4A8"`` -> ``(4, 8)``; ``ConfigError`` otherwise."""
    t = text.strip().upper()
    try:
        w, a = t[1:].split("A")
        if t[0] != "W":
            raise ValueError
        bits = int(w), int(a)
    except (ValueError, IndexError) as e:
        raise ConfigError(f"bits: expected 'W<w>A<a>' (e.g. W4A8), got {text!r}") from e
    if not set(bits) <= set(SUPPORTED_BITS):
        raise ConfigError(f"bits: {text!r} has a width outside {SUPPORTED_BITS}")
    return bits


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read and validate a sweep YAML (``--set`` keys as in the file, e.g. ``base.quiet=1``)."""
    data = to_dict(SweepConfig())
    data.update(load_yaml(path))
    base = to_dict(RunConfig())
    deep_update(base, data.get("base") or {})
    data["base"] = base
    for o in overrides or []:
        apply_override(data, o)
    sweep = from_dict(SweepConfig, data)
    if sweep.executor not in ("local", "submitit"):
        raise ConfigError(f"executor: must be 'local' or 'submitit', got {sweep.executor!r}")
    if not sweep.models or not sweep.quantizers or not sweep.bits:
        raise ConfigError("models, quantizers, bits: each needs at least one entry")
    cells(sweep)  # validates every cell config
    return sweep


def cells(sweep: SweepConfig) -> list[Cell]:
    """The grid in run order: per model, FP first, then quantizer x bits, then ``extra``.

    Bit settings a method does not support are left out of the grid (logged); an ``extra``
    setting must be supported, and every label must be unique.
    """
    from vqbench.registry import QUANTIZERS

    names = QUANTIZERS.names() if sweep.quantizers == ["all"] else sweep.quantizers
    bits = [parse_bits(b) for b in sweep.bits]
    seeds = sweep.calib_seeds
    _check_seeds(seeds, QUANTIZERS)
    cache_dir = sweep.cache_dir or str(Path(sweep.output_dir) / ".cache")
    out: list[Cell] = []
    seen: set[str] = set()
    for i, m in enumerate(sweep.models):
        model = {**to_dict(sweep.base.model), **({"name": m} if isinstance(m, str) else m)}
        key = check_name(str(model.pop("key", None) or model["name"]), f"models[{i}].key")
        if key in seen:
            raise ConfigError(f"models[{i}]: model {key!r} twice; give one a 'key'")
        seen.add(key)
        base = copy.deepcopy(sweep.base)
        base = replace(base, output_dir=sweep.output_dir, cache_dir=cache_dir, quantizers=[])
        base.model = from_dict(type(base.model), model, f"models[{i}]")
        out.append(Cell(key, "fp", validate(base)))
        for name in names:
            qcls = QUANTIZERS.get(name, "quantizers")
            for w, a in bits:
                if (w, a) not in getattr(qcls, "supported_bits", {(w, a)}):
                    log.warning("%s does not support W%dA%d: cell left out", name, w, a)
                    continue
                q = QuantSpec(name, w, a, sweep.kernel, dict(sweep.params.get(name, {})))
                for s in _seeded(q, seeds):
                    out.append(Cell(key, s.dirname, validate(replace(base, quantizers=[s]))))
        labels = {c.label for c in out if c.model == key}
        for j, q in enumerate(sweep.extra):
            qcls = QUANTIZERS.get(q.name, f"extra[{j}].name")
            if (q.w_bits, q.a_bits) not in getattr(qcls, "supported_bits", {(q.w_bits, q.a_bits)}):
                raise ConfigError(f"extra[{j}]: {q.name} does not support W{q.w_bits}A{q.a_bits}")
            for s in _seeded(q, seeds):
                if s.dirname in labels:
                    raise ConfigError(f"extra[{j}]: setting {s.dirname!r} is already in the sweep")
                labels.add(s.dirname)
                out.append(Cell(key, s.dirname, validate(replace(base, quantizers=[s]))))
    if not any(not c.is_fp for c in out):
        raise ConfigError("quantizers, bits: no quantizer supports any of the bit settings")
    return out


def _seeded(q: QuantSpec, seeds: dict[str, list[int]]) -> list[QuantSpec]:
    """``q`` once per calibration seed of its method (unless ``q`` names its own seed)."""
    wanted = seeds.get(q.name, [])
    if q.seed is not None or not wanted:
        return [copy.deepcopy(q)]
    return [replace(copy.deepcopy(q), seed=s) for s in wanted]


def _check_seeds(seeds: dict[str, list[int]], registry: Any) -> None:
    """``ConfigError`` for a seeded method that does not exist or draws no random numbers."""
    for name, values in seeds.items():
        where = f"calib_seeds.{name}"
        if len(set(values)) != len(values) or any(v < 0 for v in values):
            raise ConfigError(f"{where}: seeds must be distinct and >= 0, got {values}")
        if not registry.get(name, where).stochastic:
            raise ConfigError(f"{where}: {name}'s calibration is deterministic; drop it")


def sweep_problems(grid: list[Cell]) -> list[str]:
    """Every cell's pre-run problems (:func:`vqbench.preflight.run_problems`), each once."""
    from vqbench.preflight import run_problems

    out: dict[str, None] = {}
    for c in grid:
        for p in run_problems(c.cfg):
            out.setdefault(f"{c.model}/{c.label}: {p}")
    return list(out)


def is_done(cell: Cell, output_dir: str | Path) -> str:
    """``done``, ``stale`` (a record from another run config, or from another resolved
    quantizer config, e.g. after a method's defaults changed) or ``todo``."""
    from vqbench.registry import QUANTIZERS

    path = cell.record_path(output_dir)
    if not path.is_file():
        return "todo"
    try:
        rec = RunRecord.load(path)
    except RecordError:
        return "todo"
    if rec.run_hash != run_hash(cell.cfg):
        return "stale"
    for q in cell.cfg.quantizers:
        resolved = QUANTIZERS.get(q.name).from_spec(q.w_bits, q.a_bits, q.kernel, q.method_params())
        if (rec.quantizer or {}).get("config_hash") != resolved.config.hash():
            return "stale"
    return "done"


def run_cell(cell: Cell) -> str:
    """Run one cell in this process (also the submitit job function); returns its record path."""
    from vqbench.runner import run

    records = run(cell.cfg, run_id=cell.model, write_fp=cell.is_fp)
    return str(Path(cell.cfg.output_dir) / records[-1].run_id / "run.json")


def cache_status(cell: Cell) -> dict[str, bool]:
    """Whether the cell's FP videos and calibration set are cached (by the configured model).

    The cache key also holds the loaded model's revision; entries are matched on the
    configured identity recorded with them, so no model is loaded here.
    """
    from vqbench.keys import input_keys
    from vqbench.prompts import load_prompts
    from vqbench.registry import MODELS

    cfg = cell.cfg
    cache = Cache(cfg.cache_dir or "")
    adapter = MODELS.get(cfg.model.name)(cfg.model.path)
    gen = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    pairs = [(p, s) for p in gen for s in cfg.generation.seeds]
    c = cfg.calibration
    calib = load_prompts(c.prompts, c.num_prompts, "calibration.prompts")
    wanted = input_keys(cfg, adapter.resolve(cfg.generation), pairs, calib)
    out = {}
    for kind in (FP_VIDEOS, CALIBRATION):
        metas = (cache.root / kind).glob("*/meta.json")
        out[kind] = any(json.loads(p.read_text()).get("config_key") == wanted[kind] for p in metas)
    return out


def print_plan(sweep: SweepConfig, only: list[str] | None = None) -> None:
    """Print every cell (of those :func:`select_cells` keeps) with its status and the cache
    status of its inputs."""
    grid = select_cells(cells(sweep), only)
    print(f"{len(grid)} cells -> {sweep.output_dir} (cache {grid[0].cfg.cache_dir})")
    print(f"{'cell':<40} {'status':<6} fp_videos  calibration")
    for c in grid:
        st = cache_status(c)
        calib = "-" if c.is_fp else "cached" if st[CALIBRATION] else "missing"
        fp = "cached" if st[FP_VIDEOS] else "missing"
        print(f"{c.model + '/' + c.label:<40} {is_done(c, sweep.output_dir):<6} {fp:<10} {calib}")


def select_cells(grid: list[Cell], only: list[str] | None) -> list[Cell]:
    """The cells whose ``<model>/<setting dir>`` or setting dir matches one of the fnmatch
    patterns ``only`` (all cells when None); ``ConfigError`` for a pattern matching none."""
    if not only:
        return grid

    def hit(c: Cell, pats: list[str]) -> bool:
        return match_any(f"{c.model}/{c.label}", pats) or match_any(c.label, pats)

    for pat in only:
        if not any(hit(c, [pat]) for c in grid):
            raise ConfigError(f"--only: {pat!r} matches no cell of the sweep (see --dry-run)")
    return [c for c in grid if hit(c, only)]


def run_sweep(sweep: SweepConfig, only: list[str] | None = None) -> list[str]:
    """Run every unfinished cell (of those :func:`select_cells` keeps); returns the record
    paths of all of them.

    Raises ``RuntimeError`` naming the failed cells after running all the others.
    """
    from vqbench.preflight import raise_problems

    grid = select_cells(cells(sweep), only)
    raise_problems(sweep_problems(grid))  # every cell is checked before the first runs
    todo = [c for c in grid if is_done(c, sweep.output_dir) != "done"]
    log.info("%d of %d cells to run", len(todo), len(grid))
    failed: dict[str, str] = {}
    phases = [[c for c in todo if c.is_fp], [c for c in todo if not c.is_fp]]
    for phase in phases:
        if sweep.executor == "submitit":
            failed.update(_run_submitit(phase, sweep))
        else:
            failed.update(_run_local(phase, sweep.base.quiet))
    if failed:
        lines = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise RuntimeError(f"{len(failed)} cell(s) failed: {lines}")
    return [str(c.record_path(sweep.output_dir)) for c in grid]


def _run_local(todo: list[Cell], quiet: bool) -> dict[str, str]:
    failed = {}
    for c in tqdm(todo, desc="sweep", disable=quiet or not todo, unit="cell"):
        try:
            run_cell(c)
        except Exception as e:  # one broken cell must not stop the grid
            log.exception("cell %s/%s failed", c.model, c.label)
            failed[f"{c.model}/{c.label}"] = f"{type(e).__name__}: {e}"
    return failed


def _run_submitit(todo: list[Cell], sweep: SweepConfig) -> dict[str, str]:
    """One submitit job per cell (a job array); waits for all of them."""
    if not todo:
        return {}
    import submitit

    s = sweep.slurm
    folder = Path(sweep.output_dir) / ".submitit" / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster=s.cluster)
    params: dict[str, Any] = {
        "name": "vqbench-sweep",
        "timeout_min": s.timeout_min,
        "gpus_per_node": s.gpus_per_node,
        "cpus_per_task": s.cpus_per_task,
        "mem_gb": s.mem_gb,
        "slurm_array_parallelism": s.array_parallelism,
        "slurm_additional_parameters": s.additional,
    }
    if s.partition:
        params["slurm_partition"] = s.partition
    ex.update_parameters(**params)
    with ex.batch():
        jobs = [(c, ex.submit(run_cell, c)) for c in todo]
    failed = {}
    for c, job in tqdm(jobs, desc="sweep jobs", disable=sweep.base.quiet, unit="cell"):
        try:
            job.result()
        except Exception as e:  # submitit re-raises the job's error with its log path
            failed[f"{c.model}/{c.label}"] = f"job {job.job_id}: {str(e).splitlines()[-1]}"
    return failed
