"""``RunRecord``: the versioned schema of ``run.json`` and of ``samples.jsonl`` rows."""

from __future__ import annotations

import json
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
_QUANT_KEYS = ("name", "version", "w_bits", "a_bits", "kernel", "config", "config_hash")
_METRIC_KEYS = ("value", "n", "version", "ci", "params")


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
    for key in ("id", "dtype"):
        if key not in d["model"]:
            raise RecordError(f"model.{key}: missing")
    for key in ("spec", "seeds", "prompts_hash"):
        if key not in d["generation"]:
            raise RecordError(f"generation.{key}: missing")
    q = d.get("quantizer")
    if q is not None:
        for key in _QUANT_KEYS:
            if key not in q:
                raise RecordError(f"quantizer.{key}: missing")
        if q["kernel"] not in KERNEL_MODES:
            raise RecordError(
                f"quantizer.kernel: must be one of {KERNEL_MODES}, got {q['kernel']!r}"
            )
        if "effective_bits" not in q:
            raise RecordError("quantizer.effective_bits: missing")
    for name, m in d["metrics"].items():
        if not isinstance(m, dict):
            raise RecordError(f"metrics.{name}: expected an object")
        for key in _METRIC_KEYS:
            if key not in m:
                raise RecordError(f"metrics.{name}.{key}: missing")
        if not isinstance(m["value"], int | float) and m["value"] is not None:
            raise RecordError(f"metrics.{name}.value: expected a number")


def find_records(root: str | Path) -> list[RunRecord]:
    """All ``run.json`` records below ``root``, sorted by run id (``RecordError`` if invalid)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results dir not found: {root}")
    records = [RunRecord.load(p) for p in sorted(root.rglob("run.json"))]
    return sorted(records, key=lambda r: r.run_id)
