"""Leaderboard tables: run records flattened into comparable groups (pandas).

Records are compared only when they share the model, the generation spec (spec, seeds and
prompts) and the metric version: each group gets its own table, and a metric whose version
differs between records gets one column per version (``name@v<version>``).
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from vqbench.config import ConfigError, config_hash
from vqbench.records import RunRecord

#: identity columns of a leaderboard row, in display order
ID_COLUMNS = [
    "group",
    "model",
    "run",
    "setting",
    "status",
    "error",
    "method",
    "kernel",
    "dtype",
    "w_bits",
    "a_bits",
]
#: efficiency columns of a leaderboard row, in display order
EFF_COLUMNS = [
    "eff_w_bits",
    "eff_a_bits",
    "step_p50_ms",
    "e2e_p50_s",
    "weight_bytes",
    "compression",
    "peak_memory_bytes",
]


def load_record(path: str | Path) -> RunRecord:
    """``RunRecord.load`` that keeps ``status`` and ``error`` even where the record class
    predates them (records without a ``status`` are ``"ok"``)."""
    rec = RunRecord.load(path)
    if not hasattr(rec, "status"):
        d = json.loads(Path(path).read_text())
        rec.status, rec.error = d.get("status", "ok"), d.get("error")  # type: ignore[attr-defined]
    return rec


def record_status(r: RunRecord) -> tuple[str, str | None]:
    """``(status, error)`` of a record; ``("ok", None)`` for records without a status."""
    return str(getattr(r, "status", "ok") or "ok"), getattr(r, "error", None)


def set_size(m: dict[str, Any]) -> int | None:
    """N of a set-level statistic (no per-sample values, e.g. FVD), else None: such values
    depend on N and compare only at equal N."""
    return None if m.get("per_sample") else int(m["n"]) if m.get("n") is not None else None


def group_key(r: RunRecord) -> str:
    """Short hash of what makes records comparable: model identity and generation spec."""
    g = r.generation
    return config_hash(
        {
            "model": {k: r.model.get(k) for k in ("id", "revision", "dtype")},
            "spec": g.get("spec"),
            "seeds": g.get("seeds"),
            "prompts_hash": g.get("prompts_hash"),
        },
        length=8,
    )


def group_description(r: RunRecord) -> str:
    """Human-readable summary of a record's comparability group."""
    s = r.generation.get("spec", {})
    geo = f"{s.get('frames')}x{s.get('height')}x{s.get('width')}"
    n = r.generation.get("num_videos", "?")
    return (
        f"model {r.model.get('id')} ({r.model.get('dtype')}), prompts {s.get('prompts')} "
        f"[{r.generation.get('prompts_hash')}], {n} videos, {s.get('steps')} steps, "
        f"guidance {s.get('guidance')}, {geo}"
    )


def metric_columns(records: list[RunRecord]) -> dict[tuple[str, str], str]:
    """``(metric, version) -> column name``; versioned names only where versions differ."""
    versions: dict[str, set[str]] = {}
    for r in records:
        for name, m in r.metrics.items():
            versions.setdefault(name, set()).add(str(m["version"]))
    out = {}
    for name in sorted(versions):
        for v in sorted(versions[name]):
            out[(name, v)] = name if len(versions[name]) == 1 else f"{name}@v{v}"
    return out


def _memory(eff: dict[str, Any]) -> float | None:
    pm = eff.get("peak_memory") or {}
    val = pm.get("peak_allocated_bytes") or pm.get("peak_rss_bytes")
    return float(val) if val is not None else None


def record_row(r: RunRecord, columns: dict[tuple[str, str], str]) -> dict[str, Any]:
    """One leaderboard row: identity, metric values with CIs, efficiency."""
    q = r.quantizer or {}
    eff_bits = q.get("effective_bits") or {}
    eff = r.efficiency
    lat = eff.get("latency") or {}
    status, error = record_status(r)
    row: dict[str, Any] = {
        "group": group_key(r),
        "model": r.model.get("name") or r.model.get("id"),
        "run": r.run_id.split("/")[0],
        "setting": r.label,
        "status": status,
        "error": error,
        "method": q.get("name", "fp"),
        "kernel": q.get("kernel", "fp"),
        "dtype": r.model.get("dtype"),
        "w_bits": q.get("w_bits", 16),
        "a_bits": q.get("a_bits", 16),
        "eff_w_bits": eff_bits.get("w_bits", 16.0),
        "eff_a_bits": eff_bits.get("a_bits", 16.0),
        "step_p50_ms": lat["step"]["p50"] * 1e3 if "step" in lat else None,
        "e2e_p50_s": lat["end_to_end"]["p50"] if "end_to_end" in lat else None,
        "weight_bytes": eff.get("weight_bytes"),
        "compression": eff.get("compression_ratio"),
        "peak_memory_bytes": _memory(eff),
    }
    for name, m in r.metrics.items():
        col = columns[(name, str(m["version"]))]
        ci = m.get("ci") or (None, None)
        row[col] = m["value"]
        row[f"{col}_ci_lo"], row[f"{col}_ci_hi"] = ci[0], ci[1]
        row[f"{col}_version"] = str(m["version"])
        row[f"{col}_higher_is_better"] = bool(m.get("higher_is_better", True))
        row[f"{col}_set_n"] = set_size(m)
    return row


def leaderboard(records: list[RunRecord]) -> pd.DataFrame:
    """All records as one frame (one row per record), FP first within each group."""
    if not records:
        return pd.DataFrame(columns=ID_COLUMNS + EFF_COLUMNS)
    cols = metric_columns(records)
    rows = [record_row(r, cols) for r in records]
    df = pd.DataFrame(rows)
    ordered = ID_COLUMNS + EFF_COLUMNS
    metric_cols = [c for c in df.columns if c not in ordered]
    df = df[ordered + metric_cols]
    df["_fp"] = df["method"] != "fp"
    df = df.sort_values(["group", "_fp", "method", "w_bits", "a_bits", "setting"])
    return df.drop(columns="_fp").reset_index(drop=True)


def metric_names(df: pd.DataFrame) -> list[str]:
    """Metric value columns of a leaderboard frame."""
    return [c[: -len("_version")] for c in df.columns if c.endswith("_version")]


def groups(records: list[RunRecord]) -> dict[str, tuple[str, list[RunRecord]]]:
    """``group key -> (description, records)`` in first-seen order."""
    out: dict[str, tuple[str, list[RunRecord]]] = {}
    for r in records:
        k = group_key(r)
        out.setdefault(k, (group_description(r), []))[1].append(r)
    return out


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Formatted strings for humans: ``value [lo, hi]`` per metric, MiB for bytes."""
    metrics = [m for m in metric_names(df) if df[m].notna().any()]
    out = pd.DataFrame(
        {
            "setting": df["setting"],
            "kernel": df["kernel"],
            "W/A bits": [f"{w}/{a}" for w, a in zip(df["w_bits"], df["a_bits"], strict=True)],
            "eff. W/A bits": [
                f"{w:.2f}/{a:.2f}" for w, a in zip(df["eff_w_bits"], df["eff_a_bits"], strict=True)
            ],
        }
    )
    for m in metrics:
        arrow = "↑" if df[f"{m}_higher_is_better"].dropna().all() else "↓"
        cells = []
        for v, lo, hi in zip(df[m], df[f"{m}_ci_lo"], df[f"{m}_ci_hi"], strict=True):
            ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if _fmt(lo) != "-" else ""
            cells.append(_fmt(v) + ci if _fmt(v) != "-" else "-")
        out[f"{m} {arrow}"] = cells
    out["step p50 (ms)"] = [_fmt(v, 3) for v in df["step_p50_ms"]]
    out["weights (MiB)"] = [
        _fmt(v / 2**20, 3) if v is not None and v == v else "-" for v in df["weight_bytes"]
    ]
    return out.reset_index(drop=True)


def _markdown(frame: pd.DataFrame) -> str:
    head = list(frame.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def markdown_table(records: list[RunRecord]) -> str:
    """Markdown leaderboard: one table per comparability group, CIs in brackets."""
    if not records:
        return "(no run records)"
    df = leaderboard(records)
    parts = []
    for key, (desc, _) in groups(records).items():
        sub = df[df["group"] == key]
        parts.append(f"### group {key}\n\n{desc}\n\n{_markdown(display_frame(sub))}")
    return "\n\n".join(parts)


def matches(label: str, patterns: list[str] | None) -> bool:
    """Whether a setting label matches any fnmatch pattern (always, when there are none)."""
    return not patterns or any(fnmatch.fnmatchcase(label, p) for p in patterns)


def select(records: list[RunRecord], patterns: list[str] | None) -> list[RunRecord]:
    """Records whose setting label :func:`matches` ``patterns``."""
    return [r for r in records if matches(r.label, patterns)]


def paired_table(records: list[RunRecord], reference: str) -> str:
    """Markdown tables of paired per-sample differences ``setting - reference`` with bootstrap
    95% CIs, per comparability group that holds ``reference``.

    Only per-sample metrics pair (set-level ones such as FVD have no per-sample values); a
    bold cell's CI excludes 0. Raises ``ConfigError`` when no group has ``reference``.
    """
    from vqbench.stats import paired_deltas

    parts = []
    for key, (desc, recs) in groups(records).items():
        ref = next((r for r in recs if r.label == reference), None)
        if ref is None:
            continue
        names = [n for n, m in ref.metrics.items() if m.get("per_sample")]
        lines = [
            "| setting | " + " | ".join(f"Δ{n} {_arrow(ref, n)}" for n in names) + " |",
            "|" + "---|" * (len(names) + 1),
        ]
        for r in sorted(recs, key=lambda r: r.label):
            if r is ref:
                continue
            cells = []
            for n in names:
                a, b = (r.metrics.get(n) or {}).get("per_sample"), ref.metrics[n]["per_sample"]
                if not a or len(a) != len(b):
                    cells.append("-")
                    continue
                d = paired_deltas(dict(enumerate(a)), dict(enumerate(b)))
                text = f"{_fmt(d.mean, 3)} [{_fmt(d.ci[0], 3)}, {_fmt(d.ci[1], 3)}]"
                cells.append(f"**{text}**" if d.ci[0] > 0 or d.ci[1] < 0 else text)
            lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
        head = f"### group {key}: paired Δ against {reference}\n\n{desc}\n\n"
        parts.append(head + "\n".join(lines))
    if not parts:
        raise ConfigError(f"--paired: no comparability group holds a setting {reference!r}")
    return "\n\n".join(parts)


def _arrow(r: RunRecord, name: str) -> str:
    return "↑" if r.metrics[name].get("higher_is_better", True) else "↓"
