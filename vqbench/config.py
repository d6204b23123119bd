"""Run configuration: dataclasses are the schema, YAML the file format, ``--set`` overrides.

``load_config(path, overrides)`` builds a :class:`RunConfig` from defaults, an optional YAML
file and ``a.b=c`` overrides; every invalid value raises ``ConfigError`` (a ``ValueError``)
whose message starts with the dotted field name. ``config_hash`` is stable across key order
and Python sessions.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vqbench.types import DIGEST_LENGTH, digest

OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "sequential")
STEP_PROGRESS: tuple[str, ...] = ("auto", "on", "off")


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
    seed: int | None = None  # calibration seed of a stochastic method (its ``seed`` param)

    @property
    def label(self) -> str:
        """Record label, e.g. ``rtn-W8A8`` or ``q_vdit-W4A6-noTMD``: the seeds of one setting
        share it (reports pool them)."""
        return setting_label(self.name, self.w_bits, self.a_bits, self.tag)

    @property
    def dirname(self) -> str:
        """The setting's directory and run-id part: the label, ``-seed<k>`` when seeded."""
        return self.label if self.seed is None else f"{self.label}-seed{self.seed}"

    def method_params(self) -> dict[str, Any]:
        """The method's params, with ``seed`` set from :attr:`seed` when given."""
        return dict(self.params) if self.seed is None else {**self.params, "seed": self.seed}


def setting_label(name: str, w_bits: int, a_bits: int, tag: str | None = None) -> str:
    """``<method>-W<w>A<a>`` or ``<method>-W<w>A<a>-<tag>``: a quantizer setting's label."""
    base = f"{name}-W{w_bits}A{a_bits}"
    return f"{base}-{tag}" if tag else base


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
    "imaging_quality",
    "temporal_flickering",
    "attribute_accuracy",
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
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
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
    """Check values against their allowed sets; raise ``ConfigError`` naming the first bad
    field (:func:`config_problems` lists them all)."""
    from vqbench.preflight import config_problems, raise_problems

    raise_problems(config_problems(cfg))
    return cfg


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b=c`` (or ``quantizers.0.w_bits=4``) override to a config dict;
    ``ConfigError`` naming the key for a path that does not fit the config's shape."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    key, _, raw = assignment.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"--set {key!r}: empty key component")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.lstrip("-").isdigit():
                raise ConfigError(f"{where}: {parts[i - 1]} is a list; use an index, e.g. .0")
            idx = int(part)
            if not 0 <= idx < len(node):
                raise ConfigError(f"{where}: index {idx} out of range ({len(node)} entries)")
            if last:
                node[idx] = _parse_scalar(raw)
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_scalar(raw)
            else:
                if part not in node or node[part] is None:
                    node[part] = [] if parts[i + 1].isdigit() else {}
                node = node[part]
        else:
            prev = ".".join(parts[:i])
            raise ConfigError(f"{where}: {prev} is a value ({node!r}), not a mapping or list")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last one silently, so a typo'd second ``model:`` would override the first unseen)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error naming the file on failure."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file not found: {p}")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {p} is not UTF-8 text ({e.reason} at byte {e.start})") from e
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
        deep_update(data, load_yaml(path))
    for o in overrides or []:
        apply_override(data, o)
    cfg = from_dict(RunConfig, data)
    return validate(cfg) if check else cfg


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    """Merge mapping ``new`` into ``base`` in place; a quantizer's ``params`` are replaced
    whole, other nested mappings merged key by key."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "params":
            deep_update(base[k], v)
        else:
            base[k] = v


def config_hash(obj: Any, length: int = DIGEST_LENGTH) -> str:
    """Stable short sha256 of a config (dataclass or dict), independent of key order."""
    return digest(to_dict(obj), length)


def run_hash(cfg: RunConfig) -> str:
    """``config_hash`` of a run, blind to settings that do not change results (quiet, cache);
    an unset quantizer ``seed`` is left out (records from before the field keep their hash)."""
    data = to_dict(dataclasses.replace(cfg, quiet=False, cache_dir=None))
    for q in data.get("quantizers") or []:
        if q.get("seed") is None:
            q.pop("seed", None)
    return digest(data)


#: the fields of :class:`GenerationSpec` that say *how* to sample (not *which* samples)
SAMPLING_FIELDS: tuple[str, ...] = (
    "steps",
    "guidance",
    "frames",
    "height",
    "width",
    "fps",
    "batch_size",
)


def sampling_spec(spec: GenerationSpec) -> dict[str, Any]:
    """How to sample, apart from which prompts and seeds (batching changes float rounding,
    so the batch size belongs here)."""
    return {k: getattr(spec, k) for k in SAMPLING_FIELDS}
