"""Leaderboard tables: run records flattened into comparable groups (pandas).

Records are compared only when they share the model, the generation spec (spec, seeds and
prompts) and the metric version: each group gets its own table, and a metric whose version
differs between records gets one column per version (``name@v<version>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from vqbench.config import ConfigError, config_hash
from vqbench.records import RunRecord
from vqbench.report.display import DTYPE_BITS, display_frame, dtype_name, metric_names
from vqbench.report.display import fmt as _fmt
from vqbench.report.seeds import seed_count, seed_paired_delta
from vqbench.stats import PairedDelta, paired_deltas
from vqbench.types import match_any

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
    "seeds",
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


def set_size(m: dict[str, Any]) -> str | None:
    """The set sizes of a set-level statistic (no per-sample values, e.g. FVD): ``"N"`` or
    ``"N/N_reference"``; None for per-sample means. Such values depend on N and compare only
    at equal sizes."""
    if m.get("per_sample") or m.get("n") is None:
        return None
    n_ref = (m.get("params") or {}).get("n_reference")
    return f"{int(m['n'])}" if n_ref is None else f"{int(m['n'])}/{int(n_ref)}"


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
    out = (
        f"model {r.model.get('id')} ({r.model.get('dtype')}), prompts {s.get('prompts')} "
        f"[{r.generation.get('prompts_hash')}], {n} videos, {s.get('steps')} steps, "
        f"guidance {s.get('guidance')}, {geo}"
    )
    rep, base = r.model.get("reparametrisation"), r.model.get("base_model") or {}
    if rep:  # a derived model (mini-outlier): say what it is, in every report
        out += (
            f"; a {rep.get('kind', 'reparametrisation')} of {base.get('id', '?')} "
            f"({', '.join(f'{k}={v}' for k, v in rep.items() if k != 'kind')}): "
            "the same function with realistic activation statistics"
        )
    return out


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
    status, error = r.status, r.error
    fp_bits = DTYPE_BITS.get(dtype_name(r.model.get("dtype")), 16)
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
        "w_bits": q.get("w_bits", fp_bits),
        "a_bits": q.get("a_bits", fp_bits),
        "seeds": seed_count(r),
        "eff_w_bits": eff_bits.get("w_bits", float(fp_bits)),
        "eff_a_bits": eff_bits.get("a_bits", float(fp_bits)),
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


def groups(records: list[RunRecord]) -> dict[str, tuple[str, list[RunRecord]]]:
    """``group key -> (description, records)`` in first-seen order."""
    out: dict[str, tuple[str, list[RunRecord]]] = {}
    for r in records:
        k = group_key(r)
        out.setdefault(k, (group_description(r), []))[1].append(r)
    return out


def check_set_sizes(df: pd.DataFrame, allow_different_n: bool = False) -> None:
    """``ConfigError`` when a set-level metric (FVD) of one group was computed at different
    set sizes N: its values are not comparable (FVD's small-N bias differs). ``allow_different_n``
    turns the refusal off."""
    if allow_different_n or df.empty:
        return
    for m in metric_names(df):
        col = f"{m}_set_n"
        if col not in df.columns:
            continue
        for key, sub in df.groupby("group", sort=False):
            sizes = sorted({str(v) for v in sub[col] if v is not None and v == v and v != ""})
            if len(sizes) > 1:
                raise ConfigError(
                    f"{m}: group {key} holds values computed at N = {', '.join(sizes)}, which do "
                    "not compare (pass --allow-different-n to show them side by side)"
                )


def _markdown(frame: pd.DataFrame) -> str:
    head = list(frame.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def markdown_table(records: list[RunRecord], allow_different_n: bool = False) -> str:
    """Markdown leaderboard: one table per comparability group, CIs in brackets."""
    if not records:
        return "(no run records)"
    df = leaderboard(records)
    check_set_sizes(df, allow_different_n)
    parts = []
    for key, (desc, _) in groups(records).items():
        sub = df[df["group"] == key]
        parts.append(f"### group {key}\n\n{desc}\n\n{_markdown(display_frame(sub))}")
    return "\n\n".join(parts)


def matches(label: str, patterns: list[str] | None) -> bool:
    """Whether a setting label matches any fnmatch pattern (always, when there are none)."""
    return not patterns or match_any(label, patterns)


def select(records: list[RunRecord], patterns: list[str] | None) -> list[RunRecord]:
    """Records whose setting label :func:`matches` ``patterns``."""
    return [r for r in records if matches(r.label, patterns)]


@dataclass
class PairedGroup:
    """Paired deltas of one comparability group against its ``reference`` setting."""

    key: str
    description: str
    reference: str
    metrics: list[str]
    higher_is_better: dict[str, bool]
    rows: list[tuple[str, dict[str, PairedDelta | None], str | None]]  # label, cells, failure


def paired_delta(a: dict[str, Any], b: dict[str, Any]) -> PairedDelta | None:
    """Paired per-sample delta ``a - b`` of one metric's results: the t-interval over prompts,
    or with several calibration seeds on either side the crossed bootstrap over every seed
    and prompt; None when either has no per-sample values or their prompts differ."""
    x, y = a.get("per_sample"), b.get("per_sample")
    if not (x and y and len(x) == len(y)):
        return None
    if "per_seed" in a or "per_seed" in b:
        return seed_paired_delta(a, b)
    return paired_deltas(dict(enumerate(x)), dict(enumerate(y)))


def paired_groups(records: list[RunRecord], reference: str) -> list[PairedGroup]:
    """Per group holding ``reference``: each other setting's paired per-sample deltas
    ``setting - reference`` (``vqbench.stats.paired_deltas``, t-interval; with several
    calibration seeds on either side the crossed bootstrap over seeds and prompts,
    :func:`vqbench.report.seeds.seed_paired_delta`). Only per-sample
    metrics pair (set-level ones such as FVD have none). ``ConfigError`` if no group has it."""
    out = []
    for key, (desc, recs) in groups(records).items():
        ref = next((r for r in recs if r.label == reference and r.status == "ok"), None)
        if ref is None:
            continue
        names = [n for n, m in ref.metrics.items() if m.get("per_sample")]
        hib = {n: bool(ref.metrics[n].get("higher_is_better", True)) for n in names}
        rows = []
        for r in sorted(recs, key=lambda r: r.label):
            if r is ref:
                continue
            status, error = r.status, r.error
            if status != "ok":
                rows.append((r.label, dict.fromkeys(names), error or "no reason given"))
                continue
            cells: dict[str, PairedDelta | None] = {}
            for n in names:
                cells[n] = paired_delta(r.metrics.get(n) or {}, ref.metrics[n])
            rows.append((r.label, cells, None))
        out.append(PairedGroup(key, desc, reference, names, hib, rows))
    if not out:
        raise ConfigError(f"--paired: no comparability group holds a setting {reference!r}")
    return out


def resolved(d: PairedDelta | None) -> bool:
    """Whether a paired delta's CI excludes 0."""
    return d is not None and d.ci is not None and (d.ci[0] > 0 or d.ci[1] < 0)


def paired_table(records: list[RunRecord], reference: str) -> str:
    """Markdown tables of paired per-sample differences ``setting - reference`` with 95% CIs
    (t-interval), per comparability group that holds ``reference``; a bold cell's CI
    excludes 0. Raises ``ConfigError`` when no group has ``reference``."""
    parts = []
    for g in paired_groups(records, reference):
        arrows = {n: "↑" if g.higher_is_better[n] else "↓" for n in g.metrics}
        lines = [
            "| setting | " + " | ".join(f"Δ{n} {arrows[n]}" for n in g.metrics) + " |",
            "|" + "---|" * (len(g.metrics) + 1),
        ]
        for label, cells, failure in g.rows:
            if failure is not None:
                lines.append(f"| {label} | failed: {failure} |" + " |" * (len(g.metrics) - 1))
                continue
            texts = []
            for n in g.metrics:
                d = cells[n]
                if d is None:
                    texts.append("-")
                    continue
                ci = f" [{_fmt(d.ci[0], 3)}, {_fmt(d.ci[1], 3)}]" if d.ci else ""
                text = f"{_fmt(d.mean, 3)}{ci}"
                texts.append(f"**{text}**" if resolved(d) else text)
            lines.append(f"| {label} | " + " | ".join(texts) + " |")
        head = f"### group {g.key}: paired Δ against {reference}\n\n{g.description}\n\n"
        seeded = any(d is not None and d.seeds > 1 for _, c, _ in g.rows for d in c.values())
        foot = (
            "\n\nCIs: a t-interval over prompts; where either side ran several calibration "
            "seeds, a crossed bootstrap over seeds and prompts (every seed of both sides)."
            if seeded
            else ""
        )
        parts.append(head + "\n".join(lines) + foot)
    return "\n\n".join(parts)
