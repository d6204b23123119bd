"""Paper tables: the leaderboard and the paired comparisons as LaTeX, CSV or markdown.

``vqbench report RESULTS --format latex|csv|md [--paired SETTING]``. Every number carries its
95% CI, every metric column its direction (↑ higher is better, ↓ lower), and the best value
of each column is bold (in CSV: a ``best`` column). In paired tables the best delta is bold
and a ``*`` marks a delta whose CI excludes 0. LaTeX output is a booktabs ``tabular`` per
group (``\\usepackage{booktabs}``), ready for ``\\input``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pandas as pd

from vqbench.records import RunRecord
from vqbench.report.display import fmt, metric_order, precision_label
from vqbench.report.tables import (
    check_set_sizes,
    groups,
    leaderboard,
    paired_groups,
    resolved,
)

FORMATS = ("latex", "csv", "md")
_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{"}
_LATEX_ESCAPES.update({"}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    text = text.replace("\\", r"\textbackslash{}")
    return "".join(_LATEX_ESCAPES.get(c, c) for c in text)


def _best(values: list[float | None], higher_is_better: bool) -> float | None:
    present = [v for v in values if v is not None and v == v]
    if not present:
        return None
    return max(present) if higher_is_better else min(present)


class _Table:
    """Rows of cells ``(value, lo, hi, bold, star)`` under a header, rendered per format;
    ``marks`` are suffixes of header names (e.g. a saturated metric's)."""

    def __init__(
        self, title: str, head: list[str], arrows: list[str], note: str, marks: list[str]
    ) -> None:
        self.title, self.head, self.arrows, self.note = title, head, arrows, note
        self.marks = marks
        self.rows: list[tuple[list[str], list[tuple | None]]] = []

    def add(self, ids: list[str], cells: list[tuple | None]) -> None:
        self.rows.append((ids, cells))

    def n_ids(self) -> int:
        return len(self.rows[0][0]) if self.rows else 1


def _num(
    cell: tuple | None,
    style: Callable[[str], str],
    ci: Callable[[str], str],
    num: Callable[[str], str] = str,
    missing: str = "-",
) -> str:
    if cell is None:
        return missing
    v, lo, hi, bold, star = cell
    text = num(fmt(v))
    text = style(text) if bold else text
    text += "*" if star else ""
    has_ci = lo is not None and lo == lo
    return text + (ci(f"[{num(fmt(lo))}, {num(fmt(hi))}]") if has_ci else "")


def latex_number(text: str) -> str:
    """A formatted number in math mode, ``1.5e-05`` as ``1.5\\times10^{-5}``."""
    mant, _, exp = text.partition("e")
    return rf"${mant}\times10^{{{int(exp)}}}$" if exp else f"${text}$"


def _latex_bold(text: str) -> str:
    return "$\\mathbf{" + text.strip("$") + "}$"


def _latex_ci(text: str) -> str:
    return " {\\scriptsize " + text + "}"


def _heads(t: _Table, delta: str) -> list[str]:
    return [
        f"{h.replace('Δ', delta)} {a}{m}" for h, a, m in zip(t.head, t.arrows, t.marks, strict=True)
    ]


def _md(t: _Table, id_head: list[str]) -> str:
    head = id_head + _heads(t, "Δ")
    lines = [f"#### {t.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ids, cells in t.rows:
        nums = [_num(c, lambda s: f"**{s}**", lambda s: f" {s}") for c in cells]
        lines.append("| " + " | ".join(ids + nums) + " |")
    return "\n".join([*lines, "", t.note])


def _latex(t: _Table, id_head: list[str]) -> str:
    arrow = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}
    cols = "l" * len(id_head) + "r" * len(t.head)
    delta = r"$\Delta$"
    head = [latex_escape(h) for h in id_head] + [
        f"{latex_escape(h).replace('Δ', delta)} {arrow[a]}{latex_escape(m)}"
        for h, a, m in zip(t.head, t.arrows, t.marks, strict=True)
    ]
    lines = [
        f"% {latex_escape(t.title)}",
        f"% {latex_escape(t.note)}",
        "% needs \\usepackage{booktabs}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for ids, cells in t.rows:
        nums = [_num(c, _latex_bold, _latex_ci, latex_number, "---") for c in cells]
        lines.append(" & ".join([latex_escape(i) for i in ids] + nums) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _csv(tables: list[_Table], id_head: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    for t in tables:
        head = ["table", *id_head]
        for h, full in zip(t.head, _heads(t, "Δ"), strict=True):
            head += [full, f"{h} ci_lo", f"{h} ci_hi", f"{h} best"]
        w.writerow(head)
        for ids, cells in t.rows:
            row = [t.title, *ids]
            for c in cells:
                row += ["", "", "", ""] if c is None else [c[0], c[1], c[2], c[3]]
            w.writerow(row)
    return buf.getvalue()


def _render(tables: list[_Table], id_head: list[str], fmt_: str) -> str:
    if fmt_ not in FORMATS:
        raise ValueError(f"--format: must be one of {FORMATS}, got {fmt_!r}")
    if fmt_ == "csv":
        return _csv(tables, id_head)
    one = _md if fmt_ == "md" else _latex
    return "\n\n".join(one(t, id_head) for t in tables)


def leaderboard_tables(df: pd.DataFrame, descriptions: dict[str, str]) -> list[_Table]:
    """One table per group: setting, precision, then metrics in reading order."""
    out = []
    for key, sub in df.groupby("group", sort=False):
        ok = sub[sub["status"].fillna("ok") == "ok"]
        order = metric_order(ok)
        arrows = []
        best = {}
        for m, _ in order:
            hib = ok[f"{m}_higher_is_better"].dropna().astype(str).eq("True").all()
            arrows.append("↑" if hib else "↓")
            best[m] = _best(ok[m].astype(float).tolist(), bool(hib))
        marks = [" (saturated)" if sat else "" for _, sat in order]
        note = (
            "Best value per column in bold; brackets: 95% CIs; (saturated): no setting's CI "
            "clears the others'."
        )
        title = f"group {key}: {descriptions.get(str(key), '')}".strip()
        t = _Table(title, [m for m, _ in order], arrows, note, marks)
        for _, r in sub.iterrows():
            ids = [str(r["setting"]), precision_label(r)]
            if str(r.get("status") or "ok") != "ok":
                reason = r.get("error") or "no reason given"
                t.add([f"{ids[0]} (failed: {reason})", ids[1]], [None] * len(order))
                continue
            cells = []
            for m, _ in order:
                v = r[m]
                if v is None or v != v:
                    cells.append(None)
                    continue
                lo, hi = r[f"{m}_ci_lo"], r[f"{m}_ci_hi"]
                bold = best[m] is not None and float(v) == best[m]
                cells.append((float(v), lo, hi, bold, False))
            t.add(ids, cells)
        out.append(t)
    return out


def paired_tables(records: list[RunRecord], reference: str) -> list[_Table]:
    """One table per group holding ``reference``: paired deltas with their CIs (t-interval;
    crossed bootstrap over seeds and prompts where a side ran several seeds)."""
    out = []
    for g in paired_groups(records, reference):
        arrows = ["↑" if g.higher_is_better[n] else "↓" for n in g.metrics]
        note = (
            f"Paired per-sample deltas against {reference} (t-interval 95% CIs); best delta per "
            "column in bold; * marks a delta whose CI excludes 0."
        )
        title = f"group {g.key}: paired deltas against {reference}"
        t = _Table(title, [f"Δ{n}" for n in g.metrics], arrows, note, [""] * len(arrows))
        best = {
            n: _best([c[n].mean if c[n] else None for _, c, f in g.rows if f is None], hib)
            for n, hib in g.higher_is_better.items()
        }
        for label, cells, failure in g.rows:
            if failure is not None:
                t.add([f"{label} (failed: {failure})"], [None] * len(g.metrics))
                continue
            row = []
            for n in g.metrics:
                d = cells[n]
                if d is None:
                    row.append(None)
                    continue
                lo, hi = d.ci if d.ci else (None, None)
                row.append((d.mean, lo, hi, d.mean == best[n], resolved(d)))
            t.add([label], row)
        out.append(t)
    return out


def export(
    records: list[RunRecord],
    fmt_: str,
    paired: str | None = None,
    allow_different_n: bool = False,
) -> str:
    """The leaderboard (or, with ``paired``, the paired comparisons) as ``fmt_`` text."""
    if fmt_ not in FORMATS:
        raise ValueError(f"--format: must be one of {FORMATS}, got {fmt_!r}")
    if paired is not None:
        return _render(paired_tables(records, paired), ["setting"], fmt_)
    if not records:
        return ""
    df = leaderboard(records)
    check_set_sizes(df, allow_different_n)
    desc = {k: d for k, (d, _) in groups(records).items()}
    return _render(leaderboard_tables(df, desc), ["setting", "precision"], fmt_)
