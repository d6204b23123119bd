"""Reports over run records: leaderboard (markdown, CSV, HTML) and matplotlib plots.

``write_report(results_dir, out_dir)`` writes ``leaderboard.md``, ``leaderboard.csv``,
``index.html`` and ``plots/<group>/*.png`` (bit-width vs quality, quality vs latency and
memory with the Pareto front, FP-vs-quantized frame strips).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from vqbench.records import RunRecord
from vqbench.report.tables import (
    display_frame,
    groups,
    leaderboard,
    markdown_table,
    matches,
    metric_names,
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


def load_records(root: str | Path) -> list[tuple[RunRecord, Path]]:
    """``(record, its directory)`` for every ``run.json`` below ``root``, sorted by run id."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"results dir not found: {root}")
    pairs = [(RunRecord.load(p), p.parent) for p in sorted(root.rglob("run.json"))]
    return sorted(pairs, key=lambda rp: rp[0].run_id)


def _strip_order(r: RunRecord) -> tuple:
    """FP first, then by method and most bits first."""
    q = r.quantizer or {}
    return (bool(q), q.get("name", ""), -q.get("w_bits", 16), -q.get("a_bits", 16), r.label)


def write_report(
    results_dir: str | Path,
    out_dir: str | Path,
    strips: int = 4,
    quiet: bool = False,
    settings: list[str] | None = None,
) -> dict[str, Path]:
    """Write the full report of ``results_dir`` into ``out_dir``; returns the main files.

    ``settings``: fnmatch patterns of setting labels to keep (default: every record).
    """
    from vqbench.report import html, plots

    out = Path(out_dir)
    pairs = [(r, d) for r, d in load_records(results_dir) if matches(r.label, settings)]
    records = [r for r, _ in pairs]
    dirs = {r.run_id: d for r, d in pairs}
    df = leaderboard(records)
    files = {
        "markdown": atomic_write_text(out / "leaderboard.md", markdown_table(records) + "\n"),
        "csv": atomic_write_text(out / "leaderboard.csv", df.to_csv(index=False)),
    }
    sections = []
    grouped = groups(records)
    for key, (desc, recs) in tqdm(grouped.items(), desc="report", disable=quiet, unit="group"):
        sub = df[df["group"] == key]
        plot_dir = out / "plots" / key
        made: list[Path] = []
        for m in [m for m in metric_names(sub) if sub[m].notna().any()]:
            name = plots._safe(m)
            if (sub["method"] != "fp").any() and sub.loc[sub["method"] != "fp", m].notna().any():
                made.append(plots.bits_vs_quality(sub, m, plot_dir / f"bits_{name}.png"))
            for cost in plots.COSTS:
                p = plots.quality_vs_cost(sub, m, cost, plot_dir / f"{cost}_{name}.png")
                if p is not None:
                    made.append(p)
        ordered = sorted(recs, key=_strip_order)
        settings = [(r.label, dirs[r.run_id]) for r in ordered]
        strip_paths = []
        if strips and ordered and ordered[0].quantizer is None:
            strip_paths = plots.strips_for_group(settings, plot_dir, max_prompts=strips)
        sections.append(
            {
                "key": key,
                "description": desc,
                "table": display_frame(sub),
                "plots": made,
                "strips": strip_paths,
            }
        )
    notes = [
        f"{len(records)} run records from {results_dir}; records are compared only within a "
        "group (same model, generation spec, prompts and seeds; one column per metric version).",
        "Brackets hold 95% confidence intervals. Quality numbers name their detector in the "
        "record's metric params: mini-world detectors are not the papers' detectors.",
    ]
    page = html.render("vqbench leaderboard", sections, out, notes)
    files["html"] = atomic_write_text(out / "index.html", page)
    return files
