"""Writes the mini-world tables of the seed methods' READMEs from the sweep records.

Each README under ``quantizers/<method>/`` holds one generated table between the lines
``<!-- mini-table:begin -->`` and ``<!-- mini-table:end -->``; this script rewrites what is
between them (``results/make_mini.sh`` runs it after the leaderboard). Per track (model) and
bit setting, a row per setting that ran: calibration seeds, PSNR and FVD against FP with
their 95% CIs, and the paired PSNR delta against the table's reference setting. The paired
CIs are the report's (``vqbench.report.tables.paired_delta``): a t-interval over prompts, or
with several seeds on either side the crossed bootstrap over every seed and prompt. A
setting that did not run is left out of its table (and named under it)::

    .venv/bin/python results/method_tables.py scratch/sweep_mini scratch/sweep_mini_outlier
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vqbench.records import RunRecord
from vqbench.report import load_records
from vqbench.report.display import fmt
from vqbench.report.tables import paired_delta, resolved

BASELINES = [f"{m}-{{b}}" for m in ("rtn", "smoothquant", "quarot", "viditq", "gptq", "ptq4dit")]
#: README -> (reference setting, {bit setting: the settings of its rows}); ``{b}``: the bits
TABLES: dict[str, tuple[str, dict[str, list[str]]]] = {
    "quantizers/q_vdit/README.md": (
        "q_vdit-{b}",
        {
            "W4A6": ["q_vdit-{b}", "q_vdit-{b}-gamma0", "q_vdit-{b}-gamma1", "q_vdit-{b}-gamma10"]
            + ["efficientdm-{b}", *BASELINES],
            "W8A8": ["q_vdit-{b}", "efficientdm-{b}", *BASELINES],
        },
    ),
    "quantizers/efficientdm/README.md": (
        "efficientdm-{b}",
        {b: ["efficientdm-{b}", "q_vdit-{b}", *BASELINES] for b in ("W4A6", "W8A8")},
    ),
    "quantizers/s2q_vdit/README.md": (
        "s2q_vdit-{b}",
        {
            "W4A6": ["s2q_vdit-{b}", "s2q_vdit-{b}-stratified", "gptq-{b}-sym", *BASELINES],
            "W8A8": ["s2q_vdit-{b}", "gptq-{b}-sym", *BASELINES],
        },
    ),
    "quantizers/qvd/README.md": (
        "qvd-{b}-base",
        {
            "W8A8": ["qvd-{b}", "qvd-{b}-base", "gptq-{b}", "rtn-{b}"],
            "W4A8": ["qvd-{b}", "qvd-{b}-base", "qvd-{b}-htdq-minmax", "qvd-{b}-no-scri"]
            + ["gptq-{b}", "rtn-{b}"],
            "W4A4": ["qvd-{b}", "qvd-{b}-base", "gptq-{b}", "rtn-{b}"],
        },
    ),
}
BEGIN, END = "<!-- mini-table:begin -->", "<!-- mini-table:end -->"


def _value(r: RunRecord, metric: str) -> str:
    m = r.metrics.get(metric) or {}
    ci = m.get("ci")
    text = fmt(m.get("value"), 4)
    return f"{text} [{fmt(ci[0], 4)}, {fmt(ci[1], 4)}]" if ci and text != "-" else text


def _delta(r: RunRecord, ref: RunRecord) -> str:
    if r is ref:
        return "(reference)"
    d = paired_delta(r.metrics.get("psnr_fp") or {}, ref.metrics.get("psnr_fp") or {})
    if d is None:
        return "-"
    ci = f" [{d.ci[0]:+.2f}, {d.ci[1]:+.2f}]" if d.ci else ""
    text = f"{d.mean:+.2f}{ci}"
    return f"**{text}**" if resolved(d) else text


def table(records: dict[tuple[str, str], RunRecord], spec: tuple[str, dict]) -> str:
    """The markdown of one README's table over every track that holds its reference."""
    ref_pat, rows = spec
    lines = [
        "| track | setting | seeds | PSNR vs FP ↑ | FVD vs FP ↓ | Δ PSNR vs reference |",
        "|---|---|---|---|---|---|",
    ]
    missing = []
    for track in sorted({m for m, _ in records}):
        for b, settings in rows.items():
            ref = records.get((track, ref_pat.format(b=b)))
            if ref is None or ref.status != "ok":
                missing.append(f"{track}/{ref_pat.format(b=b)}")
                continue
            for s in settings:
                label = s.format(b=b)
                r = records.get((track, label))
                if r is None:
                    missing.append(f"{track}/{label}")
                    continue
                seeds = len((r.quantizer or {}).get("seeds") or [None])
                if r.status != "ok":
                    lines.append(f"| {track} | {label} | {seeds} | failed: {r.error} | | |")
                    continue
                name = f"**{label}**" if r is ref else label
                lines.append(
                    f"| {track} | {name} | {seeds} | {_value(r, 'psnr_fp')} | "
                    f"{_value(r, 'fvd_fp')} | {_delta(r, ref)} |"
                )
    out = "\n".join(lines)
    if missing:
        out += "\n\nNot run (no record): " + ", ".join(f"`{m}`" for m in missing) + "."
    return out


def main() -> None:
    """Rewrite the generated table of every README in :data:`TABLES`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="sweep output dirs (records)")
    args = ap.parse_args()
    recs = {(r.model.get("name"), r.label): r for r, _ in load_records(list(args.results))}
    command = "results/method_tables.py " + " ".join(args.results)
    for path, spec in TABLES.items():
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path}: no '{BEGIN}' ... '{END}' block to fill")
        body = f"{BEGIN}\n<!-- made by {command}; do not edit by hand -->\n\n"
        body += table(recs, spec) + f"\n\n{END}"
        start, end = text.index(BEGIN), text.index(END) + len(END)
        p.write_text(text[:start] + body + text[end:], encoding="utf-8")
        print(f"{path}: table written")


if __name__ == "__main__":
    main()
