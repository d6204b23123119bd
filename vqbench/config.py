"""Run configuration: dataclasses are the schema, YAML the file format, ``--set`` overrides.

``load_config(path, overrides)`` builds a :class:`RunConfig` from defaults, an optional YAML
file and ``a.b=c`` overrides; every invalid value raises ``ConfigError`` (a ``ValueError``)
whose message starts with the dotted field name. ``config_hash`` is stable across key order
and Python sessions.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 16)
KERNEL_MODES: tuple[str, ...] = ("fake", "real")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field."""


@dataclass
class ModelSpec:
    """Which model to load and how."""

    name: str = "mini"
    path: str | None = None  # local directory or file; None = the adapter's default
    dtype: str = "float32"
    device: str = "cpu"
    offload: str = "none"  # none | model | sequential (diffusers CPU offload; GPU only)
    vae_tiling: bool = False  # decode in tiles (big frames, less memory)
    vae_slicing: bool = False  # decode one sample at a time
    step_progress: str = "auto"  # auto | on | off: a bar over sampling steps (never if quiet)


@dataclass
class GenerationSpec:
    """How videos are generated. ``None`` fields take the model adapter's defaults."""

    prompts: str = "mini_default"  # a suite name in prompts/ or a path to a .jsonl file
    num_prompts: int | None = None  # first n prompts of the suite; None = all
    seeds: list[int] = field(default_factory=lambda: [0])  # one video per prompt and seed
    steps: int | None = None
    guidance: float | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    batch_size: int = 4


@dataclass
class CalibrationSpec:
    """Which FP trajectories are captured for calibration."""

    prompts: str = "mini_calib"
    num_prompts: int | None = 8
    seed: int = 1234
    every_k_steps: int = 1  # capture every k-th sampling step


@dataclass
class QuantSpec:
    """One quantizer setting: method name, bits, kernel mode and method parameters."""

    name: str = "rtn"
    w_bits: int = 8
    a_bits: int = 8
    kernel: str = "fake"
    params: dict[str, Any] = field(default_factory=dict)
    tag: str = ""  # optional suffix telling apart settings of one method (ablations)

    @property
    def label(self) -> str:
        """Record label, e.g. ``rtn-W8A8`` or ``q_vdit-W4A6-noTMD``."""
        base = f"{self.name}-W{self.w_bits}A{self.a_bits}"
        return f"{base}-{self.tag}" if self.tag else base


@dataclass
class LatencySpec:
    """Latency of the denoiser step and of end-to-end sampling.

    ``iters > 0``: ``warmup`` + ``iters`` extra single-video runs on the first prompt.
    ``iters == 0`` (default): the main generation's batches are timed instead, at no extra
    cost; the first ``warmup`` batches (at most all but one) are the warm-up.
    """

    enabled: bool = True
    warmup: int = 1
    iters: int = 0


#: `vqbench run` with no arguments: the three seed methods at one bit setting, every metric
#: that runs offline on the mini world (VBench dimensions need user-provided weights)
DEFAULT_QUANTIZERS = (
    QuantSpec("qvd", 4, 8),
    QuantSpec("q_vdit", 4, 8),
    QuantSpec("s2q_vdit", 4, 8),
)
DEFAULT_METRICS = (
    "psnr_fp",
    "ssim_fp",
    "fvd",
    "fvd_fp",
    "clipsim",
    "clipsim_evalcrafter",
    "clip_temp",
    "scene_consistency",
)


@dataclass
class RunConfig:
    """A whole run: FP generation plus each quantizer, then metrics."""

    model: ModelSpec = field(default_factory=ModelSpec)
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    quantizers: list[QuantSpec] = field(
        default_factory=lambda: copy.deepcopy(list(DEFAULT_QUANTIZERS))
    )
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    metric_params: dict[str, Any] = field(default_factory=dict)  # metric name -> kwargs
    latency: LatencySpec = field(default_factory=LatencySpec)
    output_dir: str = "runs"
    cache_dir: str | None = None  # None: $VQBENCH_CACHE_DIR/runs, for models with a weights digest
    quiet: bool = False


# --------------------------------------------------------------------------------------
# dict <-> dataclass
# --------------------------------------------------------------------------------------
def to_dict(obj: Any) -> Any:
    """Plain-JSON view of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from e
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from e
    if tp is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        path = f"{where}.{key}" if where else key
        raise ConfigError(f"{path}: unknown field{hint}")
    kwargs = {}
    for name in names & set(data):
        path = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(data[name], hints[name], path)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------
# validation, overrides, loading, hashing
# --------------------------------------------------------------------------------------
def validate(cfg: RunConfig) -> RunConfig:
    """Check values against their allowed sets; raise ``ConfigError`` naming the field."""
    from vqbench.registry import METRICS, MODELS, QUANTIZERS

    MODELS.check(cfg.model.name, "model.name")
    if cfg.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: must be one of {DTYPES}, got {cfg.model.dtype!r}")
    from vqbench.adapters.options import model_option_problems

    for problem in model_option_problems(cfg.model, bool(cfg.quantizers)):
        raise ConfigError(problem)
    if cfg.model.dtype == "float16" and cfg.model.device == "cpu":
        raise ConfigError("model.dtype: float16 is ~400x slower on CPU; use float32 or bfloat16")
    g = cfg.generation
    if not g.seeds:
        raise ConfigError("generation.seeds: needs at least one seed")
    if g.num_prompts is not None and g.num_prompts < 1:
        raise ConfigError(f"generation.num_prompts: must be >= 1, got {g.num_prompts}")
    if g.batch_size < 1:
        raise ConfigError(f"generation.batch_size: must be >= 1, got {g.batch_size}")
    for name in ("steps", "frames", "height", "width"):
        v = getattr(g, name)
        if v is not None and v < 1:
            raise ConfigError(f"generation.{name}: must be >= 1, got {v}")
    if cfg.calibration.every_k_steps < 1:
        raise ConfigError("calibration.every_k_steps: must be >= 1")
    for name in ("warmup", "iters"):
        if getattr(cfg.latency, name) < 0:
            raise ConfigError(f"latency.{name}: must be >= 0, got {getattr(cfg.latency, name)}")
    for i, q in enumerate(cfg.quantizers):
        QUANTIZERS.check(q.name, f"quantizers[{i}].name")
        for attr in ("w_bits", "a_bits"):
            bits = getattr(q, attr)
            if bits not in SUPPORTED_BITS:
                raise ConfigError(
                    f"quantizers[{i}].{attr}: {bits} is not a supported bit width {SUPPORTED_BITS}"
                )
        if q.kernel not in KERNEL_MODES:
            raise ConfigError(f"quantizers[{i}].kernel: must be one of {KERNEL_MODES}")
        if q.label in [p.label for p in cfg.quantizers[:i]]:
            raise ConfigError(f"quantizers[{i}].tag: label {q.label!r} is used twice; set a tag")
    for i, m in enumerate(cfg.metrics):
        METRICS.check(m, f"metrics[{i}]")
    return cfg


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b=c`` (or ``quantizers.0.w_bits=4``) override to a config dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if part not in node or node[part] is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
    last = parts[-1]
    value = _parse_scalar(raw)
    if isinstance(node, list):
        idx = int(last)
        if idx >= len(node):
            raise ConfigError(f"{key}: index {idx} out of range ({len(node)} entries)")
        node[idx] = value
    else:
        node[last] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error naming the file on failure."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"config: malformed YAML in {p}{where}: {getattr(e, 'problem', e)}"
        ) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {p} must hold a mapping at top level")
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, check: bool = True
) -> RunConfig:
    """Defaults, then the YAML file, then ``--set`` overrides; validated."""
    data = to_dict(RunConfig())
    if path is not None:
        _deep_update(data, load_yaml(path))
    for o in overrides or []:
        apply_override(data, o)
    cfg = from_dict(RunConfig, data)
    return validate(cfg) if check else cfg


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "params":
            _deep_update(base[k], v)
        else:
            base[k] = v


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short sha256 of a config (dataclass or dict), independent of key order."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
