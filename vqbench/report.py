"""Reports over run records: a markdown table (leaderboards and plots come later)."""

from __future__ import annotations

from vqbench.records import RunRecord


def markdown_table(records: list[RunRecord]) -> str:
    """One row per record: setting, kernel, effective bits, metric values with 95% CIs."""
    if not records:
        return "(no run records)"
    names = sorted({m for r in records for m in r.metrics})
    head = ["run", "setting", "kernel", "W bits", "A bits", *names, "step p50 (ms)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        q = r.quantizer or {}
        eff = q.get("effective_bits", {})
        cells = [
            r.run_id.split("/")[0],
            r.label,
            q.get("kernel", "-"),
            f"{eff['w_bits']:.2f}" if "w_bits" in eff else "16",
            f"{eff['a_bits']:.2f}" if "a_bits" in eff else "16",
        ]
        for n in names:
            m = r.metrics.get(n)
            if m is None or m["value"] is None:
                cells.append("-")
            elif m.get("ci"):
                cells.append(f"{m['value']:.4g} [{m['ci'][0]:.4g}, {m['ci'][1]:.4g}]")
            else:
                cells.append(f"{m['value']:.4g}")
        lat = r.efficiency.get("latency", {}).get("step", {})
        cells.append(f"{lat['p50'] * 1e3:.1f}" if "p50" in lat else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
