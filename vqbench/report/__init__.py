"""Reports over run records: leaderboard (markdown, CSV, HTML), matplotlib plots, and
paper tables (:mod:`vqbench.report.export`: LaTeX, CSV, markdown).

``write_report(results_dir, out_dir)`` writes ``leaderboard.md``, ``leaderboard.csv``,
``index.html`` and ``plots/<group>/*.png`` (bit-width vs quality, quality vs memory and
latency with the Pareto front, FP-vs-quantized frame strips with difference rows). Failed
settings appear with their reason and no numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from vqbench.records import RunRecord
from vqbench.report.display import FAKE_LATENCY_NOTE, display_frame, metric_order
from vqbench.report.seeds import pool_seeds
from vqbench.report.tables import (
    _markdown,
    check_set_sizes,
    groups,
    leaderboard,
    markdown_table,
    matches,
    paired_table,
    select,
)
from vqbench.store import atomic_write_text

__all__ = [
    "load_records",
    "markdown_table",
    "leaderboard",
    "paired_table",
    "select",
    "write_report",
]

log = logging.getLogger(__name__)


def load_records(root: str | Path | list[str | Path]) -> list[tuple[RunRecord, Path]]:
    """``(record, its directory)`` for every ``run.json`` below ``root`` (or below each of a
    list of roots, e.g. the output dirs of several sweeps), sorted by run id; the
    calibration seeds of one setting pooled into one record (:mod:`vqbench.report.seeds`)."""
    return pool_seeds(_load_raw(root))


def _load_raw(root: str | Path | list[str | Path]) -> list[tuple[RunRecord, Path]]:
    if isinstance(root, list):
        pairs = [p for r in root for p in _load_raw(r)]
        seen: dict[tuple[str, str], Path] = {}
        for rec, d in pairs:
            if (key := (rec.run_id, rec.label)) in seen:
                raise ValueError(
                    f"{d}: run {rec.run_id} setting {rec.label} is also in {seen[key]}; "
                    "give each results dir once"
                )
            seen[key] = d
        return sorted(pairs, key=lambda rp: rp[0].run_id)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results dir not found: {root}")
    if root.is_file() and root.suffix == ".csv":
        raise ValueError(
            f"{root}: a leaderboard.csv holds no run records; only `report --out` reads it "
            "(point the other report modes at the records' directory)"
        )
    files = [root] if root.is_file() else sorted(root.rglob("run.json"))
    pairs = [(RunRecord.load(p), p.parent) for p in files]
    return sorted(pairs, key=lambda rp: rp[0].run_id)


def _strip_order(r: RunRecord) -> tuple:
    """FP first, then by method and most bits first."""
    q = r.quantizer or {}
    return (bool(q), q.get("name", ""), -q.get("w_bits", 16), -q.get("a_bits", 16), r.label)


def _csv_frame(path: Path) -> pd.DataFrame:
    """A leaderboard frame from a ``leaderboard.csv`` (older files lack some columns)."""
    head = pd.read_csv(path, nrows=0).columns
    text_cols = [c for c in head if c.endswith(("_version", "_set_n")) or c in ("group", "error")]
    df = pd.read_csv(path, dtype=dict.fromkeys(text_cols, str))
    for col, default in (("status", "ok"), ("error", None), ("dtype", None)):
        if col not in df.columns:
            df[col] = default
    df["status"] = df["status"].fillna("ok")
    return df


def _plots(sub: pd.DataFrame, plot_dir: Path) -> list[tuple[Path, str]]:
    """Every plot of a group in reading order: metrics by how well they separate the
    settings (saturated ones last, marked), per metric bits, memory, then latency."""
    from vqbench.report import plots

    made: list[tuple[Path, str]] = []
    ok = sub[sub["status"].fillna("ok") == "ok"]
    for rank, (m, sat) in enumerate(metric_order(ok), start=1):
        name = plots._safe(m)
        tag = f"{rank}. {m}" + (" (saturated)" if sat else "")
        quant = ok[ok["method"] != "fp"]
        if len(quant) and quant[m].notna().any():
            path = plots.bits_vs_quality(ok, m, plot_dir / f"bits_{name}.png", sat)
            made.append((path, f"{tag} vs bit-width"))
        for cost in ("memory", "latency"):
            p = plots.quality_vs_cost(ok, m, cost, plot_dir / f"{cost}_{name}.png", sat)
            if p is not None:
                made.append((p, f"{tag} vs {cost}"))
    return made


def _group_notes(sub: pd.DataFrame) -> list[str]:
    notes = []
    if (sub["kernel"] == "fake").any():
        notes.append(
            f"† fake-quantized kernels: their step latency is {FAKE_LATENCY_NOTE}; latency "
            "plots use real-kernel timings only"
            + ("" if (sub["kernel"] == "real").any() else " (none here: they are watermarked)")
            + "."
        )
    notes.append(
        "weights (MiB): the packed storage of 'weight storage' (6-bit weights occupy int8, "
        "3-bit weights 4-bit slots packed two per byte), so W6 and W8 weigh the same."
    )
    return notes


def write_report(
    results_dir: str | Path | list[str | Path],
    out_dir: str | Path,
    strips: int = 4,
    quiet: bool = False,
    settings: list[str] | None = None,
    allow_different_n: bool = False,
) -> dict[str, Path]:
    """Write the full report of ``results_dir`` into ``out_dir``; returns the main files.

    ``results_dir``: a directory of run records (or a list of them), or a
    ``leaderboard.csv`` written by an earlier report (tables and plots only: no frame
    strips, no records to describe groups).
    ``settings``: fnmatch patterns of setting labels to keep (default: every record).
    ``allow_different_n``: show set-level metrics (FVD) computed at different N side by side
    instead of refusing.
    """
    from vqbench.report import html, plots

    out = Path(out_dir)
    roots = results_dir if isinstance(results_dir, list) else [results_dir]
    src = Path(roots[0]) if len(roots) == 1 else None
    if src is not None and src.suffix == ".csv":
        df = _csv_frame(src)
        df = df[[matches(str(s), settings) for s in df["setting"]]].reset_index(drop=True)
        records, dirs = [], {}
        desc = f"(from {src.name}: no run records, so no frame strips)"
        grouped = {k: (desc, []) for k in df["group"].unique()}
        md = "\n\n".join(
            f"### group {k}\n\n{desc}\n\n{_markdown(display_frame(df[df['group'] == k]))}"
            for k in grouped
        )
    else:
        pairs = [(r, d) for r, d in load_records(list(roots)) if matches(r.label, settings)]
        records = [r for r, _ in pairs]
        dirs = {r.run_id: d for r, d in pairs}
        df = leaderboard(records)
        grouped = groups(records)
        md = markdown_table(records, allow_different_n)
    check_set_sizes(df, allow_different_n)
    files = {
        "markdown": atomic_write_text(out / "leaderboard.md", md + "\n"),
        "csv": atomic_write_text(out / "leaderboard.csv", df.to_csv(index=False)),
    }
    sections = []
    for key, (desc, recs) in tqdm(grouped.items(), desc="report", disable=quiet, unit="group"):
        sub = df[df["group"] == key]
        plot_dir = out / "plots" / str(key)
        ordered = sorted((r for r in recs if r.status == "ok"), key=_strip_order)
        strip_paths = []
        if strips and ordered and ordered[0].quantizer is None:
            chosen = [(r.label, dirs[r.run_id]) for r in ordered]
            strip_paths = plots.strips_for_group(chosen, plot_dir, max_prompts=strips)
        sections.append(
            {
                "key": str(key),
                "description": desc,
                "table": display_frame(sub),
                "plots": _plots(sub, plot_dir),
                "strips": strip_paths,
                "notes": _group_notes(sub),
            }
        )
    notes = [
        f"{len(df)} settings from {', '.join(str(r) for r in roots)}; settings are compared "
        "only within a group "
        "(same model, generation spec, prompts and seeds; one column per metric version).",
        "Brackets hold 95% confidence intervals. Metrics are ordered by how far apart they "
        "put the settings relative to their CIs; '(saturated)' marks a metric under which no "
        "setting's CI clears the others'. Quality numbers name their detector in the "
        "record's metric params: mini-world detectors are not the papers' detectors.",
    ]
    page = html.render("vqbench leaderboard", sections, out, notes)
    files["html"] = atomic_write_text(out / "index.html", page)
    return files
