"""``RunRecord``: the versioned schema of ``run.json`` and of ``samples.jsonl`` rows."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vqbench.config import setting_label
from vqbench.store import atomic_write_text
from vqbench.types import KERNEL_MODES

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed")


class RecordError(ValueError):
    """A run record that does not match the schema; the message names the field."""


@dataclass
class RunRecord:
    """One model setting's results: FP (``quantizer`` is None) or one quantizer setting."""

    run_id: str
    created: str
    model: dict[str, Any]
    generation: dict[str, Any]
    quantizer: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    efficiency: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    run_hash: str = ""  # config_hash of the run config (see vqbench.config.run_hash)
    status: str = "ok"  # "ok" or "failed" (then ``error`` says why and there are no metrics)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> wall seconds
    schema_version: int = SCHEMA_VERSION

    @property
    def label(self) -> str:
        """``fp``, ``<method>-W<w>A<a>`` or ``<method>-W<w>A<a>-<tag>``."""
        if not self.quantizer:
            return "fp"
        q = self.quantizer
        return setting_label(q["name"], q["w_bits"], q["a_bits"], q.get("tag"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        validate_record(d)
        return cls(**{k: d[k] for k in _FIELDS if k in d})

    def save(self, path: str | Path) -> Path:
        validate_record(self.to_dict())
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(f"{p}: not valid JSON ({e.msg})") from e
        except UnicodeDecodeError as e:
            raise RecordError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from e
        except OSError as e:
            raise RecordError(f"{p}: cannot read ({e.strerror or e})") from e
        try:
            return cls.from_dict(d)
        except RecordError as e:
            raise RecordError(f"{p}: {e}") from e


_FIELDS = (
    "run_id",
    "created",
    "model",
    "generation",
    "quantizer",
    "calibration",
    "metrics",
    "efficiency",
    "environment",
    "run_hash",
    "status",
    "error",
    "timings",
    "schema_version",
)

_REQUIRED = {
    "run_id": str,
    "created": str,
    "model": dict,
    "generation": dict,
    "metrics": dict,
    "efficiency": dict,
    "schema_version": int,
}


def validate_record(d: Any) -> None:
    """Raise :class:`RecordError` naming the first field that violates the schema."""
    if not isinstance(d, dict):
        raise RecordError("record: expected a JSON object")
    for key, tp in _REQUIRED.items():
        if key not in d:
            raise RecordError(f"{key}: missing")
        if not isinstance(d[key], tp):
            raise RecordError(f"{key}: expected {tp.__name__}, got {type(d[key]).__name__}")
    if d["schema_version"] > SCHEMA_VERSION:
        raise RecordError(
            f"schema_version: {d['schema_version']} is newer than this vqbench ({SCHEMA_VERSION})"
        )
    status = d.get("status", "ok")
    if status not in STATUSES:
        raise RecordError(f"status: must be one of {STATUSES}, got {status!r}")
    if status == "failed" and d["metrics"]:
        raise RecordError("metrics: a failed setting carries no metric values")
    _typed(d["model"], "model", {"id": str, "dtype": str})
    _typed(d["generation"], "generation", {"spec": dict, "seeds": list, "prompts_hash": str})
    if not all(_is_int(x) for x in d["generation"]["seeds"]):
        raise RecordError("generation.seeds: expected a list of integers")
    for key in ("run_hash", "error"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise RecordError(f"{key}: expected a string")
    for key, v in d["efficiency"].items():
        if v is not None and not isinstance(v, dict) and not _is_number(v):
            raise RecordError(f"efficiency.{key}: expected a number or an object, got {v!r}")
    q = d.get("quantizer")
    if q is not None:
        if not isinstance(q, dict):
            raise RecordError("quantizer: expected an object")
        _typed(q, "quantizer", _QUANT_KEYS)
        if not (_is_int(q["w_bits"]) and _is_int(q["a_bits"])):
            raise RecordError("quantizer.w_bits/a_bits: expected integers")
        if q["kernel"] not in KERNEL_MODES:
            raise RecordError(
                f"quantizer.kernel: must be one of {KERNEL_MODES}, got {q['kernel']!r}"
            )
        if not isinstance(q.get("effective_bits"), dict):
            raise RecordError("quantizer.effective_bits: missing or not an object")
    for name, m in d["metrics"].items():
        if not isinstance(m, dict):
            raise RecordError(f"metrics.{name}: expected an object")
        _typed(m, f"metrics.{name}", _METRIC_KEYS)
        where = f"metrics.{name}"
        if not _is_number(m["value"]) or not math.isfinite(m["value"]):
            raise RecordError(f"{where}.value: expected a finite number, got {m['value']!r}")
        if not _is_int(m["n"]) or m["n"] < 0:
            raise RecordError(f"{where}.n: expected a count, got {m['n']!r}")
        ci = m["ci"]
        if ci is not None and not (
            isinstance(ci, list) and len(ci) == 2 and all(_is_number(x) for x in ci)
        ):
            raise RecordError(f"{where}.ci: expected null or [low, high], got {ci!r}")
        if not all(_is_number(x) or x is None for x in m.get("per_sample", [])):
            raise RecordError(f"{where}.per_sample: expected a list of numbers")


#: required keys of the record's parts and their JSON types
_QUANT_KEYS = {
    "name": str,
    "version": str,
    "w_bits": int,
    "a_bits": int,
    "kernel": str,
    "config": dict,
    "config_hash": str,
}
_METRIC_KEYS = {"value": object, "n": int, "version": str, "ci": object, "params": dict}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _typed(part: dict[str, Any], where: str, keys: dict[str, type]) -> None:
    """Every key of ``keys`` present in ``part`` with its type (``RecordError`` otherwise)."""
    for key, tp in keys.items():
        if key not in part:
            raise RecordError(f"{where}.{key}: missing")
        if tp is not object and not isinstance(part[key], tp):
            raise RecordError(
                f"{where}.{key}: expected {tp.__name__}, got {type(part[key]).__name__}"
            )


def find_records(root: str | Path) -> list[RunRecord]:
    """All ``run.json`` records below ``root``, sorted by run id (``RecordError`` if invalid)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results dir not found: {root}")
    records = [RunRecord.load(p) for p in sorted(root.rglob("run.json"))]
    return sorted(records, key=lambda r: r.run_id)
