"""``vqbench check``: a CI quality gate comparing results with a baseline, per-metric tolerances.

Gates file (YAML)::

    settings: ["*"]            # fnmatch patterns of setting labels to check (default: all)
    defaults: {abs_tol: 0.0, rel_tol: 0.0, use_ci: true}
    metrics:                   # only these metrics are gated
      psnr_fp: {abs_tol: 0.5}
      ssim_fp: {abs_tol: 0.01, rel_tol: 0.0}

A setting regresses on a metric when its worsening exceeds ``abs_tol + rel_tol * |baseline|``.
With ``use_ci`` the worsening is measured between the confidence intervals (the baseline's
pessimistic bound against the candidate's optimistic one), so only a change the CIs resolve
can fail; without it, between the point values. Settings missing from the candidate, failed
settings (``"status": "failed"``, with their reason), and metrics whose version, generation
group or set size N (set-level metrics such as FVD, unless ``allow_different_n``) differ from
the baseline's also fail (exit 1).

The check is strict about its inputs (``ValueError`` naming the file and field, exit 2): every
gated metric must be a registered metric, present in the baseline and in the candidate;
tolerances must be finite and >= 0; a failed setting in the baseline is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqbench.config import ConfigError, load_yaml
from vqbench.records import RunRecord
from vqbench.registry import METRICS
from vqbench.types import match_any

_GATE_KEYS = {"abs_tol", "rel_tol", "use_ci"}


@dataclass(frozen=True)
class Gate:
    """Tolerance of one metric."""

    abs_tol: float = 0.0
    rel_tol: float = 0.0
    use_ci: bool = True


@dataclass
class MetricView:
    """A metric value with its CI, version and direction."""

    value: float
    lo: float | None
    hi: float | None
    version: str
    higher_is_better: bool
    n: str | None = None  # set sizes of a set-level statistic (FVD); None for per-sample means


@dataclass
class Entry:
    """One setting of one model, from a record or a leaderboard row."""

    model: str
    setting: str
    group: str
    metrics: dict[str, MetricView] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None


@dataclass
class Finding:
    """The verdict on one (setting, metric)."""

    setting: str
    metric: str
    status: str  # ok | REGRESSION | MISSING | INCOMPARABLE | FAILED
    base: MetricView | None = None
    cand: MetricView | None = None
    allowed: float = 0.0
    note: str = ""


def load_gates(path: str | Path) -> tuple[list[str], dict[str, Gate]]:
    """Setting patterns and per-metric gates; ``ConfigError`` naming the file and bad field."""
    data = load_yaml(path)
    where = f"{path}: gates"
    unknown = set(data) - {"settings", "defaults", "metrics"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field")
    defaults = _gate_fields(data.get("defaults") or {}, f"{where}.defaults")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError(f"{where}.metrics: needs a mapping of metric name -> tolerances")
    for name in metrics:
        if name not in METRICS:
            raise ConfigError(
                f"{where}.metrics.{name}: unknown metric {name!r}{METRICS.suggest(str(name))}; "
                "see `vqbench ls metrics`"
            )
    gates = {
        name: Gate(**{**defaults, **_gate_fields(spec or {}, f"{where}.metrics.{name}")})
        for name, spec in metrics.items()
    }
    patterns = data.get("settings") or ["*"]
    if not isinstance(patterns, list):
        raise ConfigError(f"{where}.settings: expected a list of patterns")
    return [str(p) for p in patterns], gates


def _gate_fields(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping")
    bad = set(spec) - _GATE_KEYS
    if bad:
        raise ConfigError(f"{where}.{sorted(bad)[0]}: unknown field (known: {sorted(_GATE_KEYS)})")
    out: dict[str, Any] = {}
    for k in ("abs_tol", "rel_tol"):
        if k in spec:
            try:
                out[k] = float(spec[k])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}.{k}: expected a number, got {spec[k]!r}") from e
            if not math.isfinite(out[k]) or out[k] < 0:
                raise ConfigError(f"{where}.{k}: must be a finite number >= 0, got {spec[k]!r}")
    if "use_ci" in spec:
        out["use_ci"] = bool(spec["use_ci"])
    return out


# ---- loading entries ---------------------------------------------------------------------
def _model_name(r: RunRecord) -> str:
    return str(r.model.get("name") or r.model.get("id"))


def entry_from_record(r: RunRecord) -> Entry:
    """An :class:`Entry` from a run record."""
    from vqbench.report.tables import group_key, set_size

    status, error = r.status, r.error
    e = Entry(_model_name(r), r.label, group_key(r))
    e.status, e.error = status, error
    for name, m in r.metrics.items():
        if m["value"] is None:
            continue
        ci = m.get("ci") or (None, None)
        e.metrics[name] = MetricView(
            float(m["value"]),
            ci[0],
            ci[1],
            str(m["version"]),
            bool(m.get("higher_is_better", 1)),
            set_size(m),
        )
    return e


def entries_from_csv(path: Path) -> list[Entry]:
    """Entries from a ``leaderboard.csv`` written by ``vqbench report``."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)  # "" marks a missing value
    need = {"group", "model", "setting"}
    if not need <= set(df.columns):
        raise ConfigError(f"baseline: {path} is not a vqbench leaderboard (needs {sorted(need)})")
    cols = [c[: -len("_version")] for c in df.columns if c.endswith("_version")]
    out = []
    for row in df.to_dict("records"):
        e = Entry(row["model"], row["setting"], row["group"])
        e.status, e.error = row.get("status") or "ok", row.get("error") or None
        for c in cols:
            if row[c] == "":
                continue
            lo, hi = row.get(f"{c}_ci_lo", ""), row.get(f"{c}_ci_hi", "")
            n = row.get(f"{c}_set_n", "")
            e.metrics[c.split("@v")[0]] = MetricView(
                float(row[c]),
                float(lo) if lo else None,
                float(hi) if hi else None,
                row[f"{c}_version"],
                row.get(f"{c}_higher_is_better", "True") == "True",
                n or None,
            )
        out.append(e)
    return out


def load_entries(path: str | Path) -> list[Entry]:
    """Entries from a ``run.json``, a ``leaderboard.csv``, or a directory of either.

    A directory's ``leaderboard.csv`` wins over its records. For repeated (model, setting,
    calibration seed) records, the latest (by ``created``, then run id) is kept; the seeds of
    one setting are pooled into one entry (:mod:`vqbench.report.seeds`).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    if p.is_dir() and (p / "leaderboard.csv").is_file():
        p = p / "leaderboard.csv"
    if p.suffix == ".csv":
        return entries_from_csv(p)
    if p.is_file():
        records = [RunRecord.load(p)]
    else:
        records = [RunRecord.load(f) for f in sorted(p.rglob("run.json"))]
    records.sort(key=lambda r: (r.created, r.run_id))
    latest = {(_model_name(r), r.label, (r.quantizer or {}).get("seed")): r for r in records}
    from vqbench.report.seeds import pool_seeds  # a setting's calibration seeds: one entry

    return [entry_from_record(r) for r, _ in pool_seeds([(r, p) for r in latest.values()])]


# ---- comparing ---------------------------------------------------------------------------
def worsening(base: MetricView, cand: MetricView, use_ci: bool) -> float:
    """How much worse ``cand`` is than ``base`` (negative: better), CI-aware if asked."""
    if base.higher_is_better:
        b = base.lo if use_ci and base.lo is not None else base.value
        c = cand.hi if use_ci and cand.hi is not None else cand.value
        return b - c
    b = base.hi if use_ci and base.hi is not None else base.value
    c = cand.lo if use_ci and cand.lo is not None else cand.value
    return c - b


def compare(
    baseline: list[Entry],
    candidate: list[Entry],
    patterns: list[str],
    gates: dict[str, Gate],
    allow_different_n: bool = False,
) -> list[Finding]:
    """Findings for every gated (setting, metric) of the baseline, a MISSING finding for a
    baseline setting absent from the candidate and a FAILED one for every failed candidate
    setting the patterns select."""
    cand = {(e.model, e.setting): e for e in candidate}
    findings = []
    for c in candidate:
        if c.status != "ok" and match_any(c.setting, patterns):
            findings.append(
                Finding(f"{c.model}/{c.setting}", "*", "FAILED", note=c.error or "no reason given")
            )
    for b in baseline:
        if not match_any(b.setting, patterns):
            continue
        label = f"{b.model}/{b.setting}"
        c = cand.get((b.model, b.setting))
        if c is None:
            findings.append(Finding(label, "*", "MISSING", note="setting not in the results"))
            continue
        if c.status != "ok":
            continue  # its FAILED finding is above
        for name, gate in gates.items():
            bm = b.metrics.get(name)
            if bm is None:
                continue  # e.g. fidelity-to-FP metrics on the FP setting
            allowed = gate.abs_tol + gate.rel_tol * abs(bm.value)
            cm = c.metrics.get(name)
            f = Finding(label, name, "ok", bm, cm, allowed)
            if cm is None:
                f.status, f.note = "MISSING", "not measured"
            elif cm.version != bm.version:
                f.status, f.note = "INCOMPARABLE", f"metric version {bm.version} -> {cm.version}"
            elif c.group != b.group:
                f.status, f.note = "INCOMPARABLE", f"generation group {b.group} -> {c.group}"
            elif cm.n != bm.n and not allow_different_n:
                f.status, f.note = "INCOMPARABLE", f"computed at N = {bm.n} -> {cm.n}"
            elif worsening(bm, cm, gate.use_ci) > allowed:
                f.status = "REGRESSION"
                f.note = f"worse by {worsening(bm, cm, gate.use_ci):.4g}" + (
                    " beyond the CIs" if gate.use_ci else ""
                )
            findings.append(f)
    return findings


def _mv(m: MetricView | None) -> str:
    if m is None:
        return "-"
    ci = f" [{m.lo:.4g}, {m.hi:.4g}]" if m.lo is not None and m.hi is not None else ""
    return f"{m.value:.4g}{ci}"


def format_findings(findings: list[Finding], verbose: bool = False) -> str:
    """A readable diff table (failures only unless ``verbose``) and a one-line verdict."""
    shown = [f for f in findings if verbose or f.status != "ok"]
    head = ("setting", "metric", "baseline [CI]", "candidate [CI]", "delta", "allowed", "status")
    rows = [head]
    for f in shown:
        delta = f"{f.cand.value - f.base.value:+.4g}" if f.cand and f.base else "-"
        status = f"{f.status} ({f.note})" if f.note else f.status
        rows.append(
            (f.setting, f.metric, _mv(f.base), _mv(f.cand), delta, f"{f.allowed:.4g}", status)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    bad = [f for f in findings if f.status != "ok"]
    kinds = ("REGRESSION", "MISSING", "INCOMPARABLE", "FAILED")
    counts = {s: sum(f.status == s for f in bad) for s in kinds}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    verdict = (
        f"FAIL: {summary} (of {len(findings)} gated values)"
        if bad
        else f"PASS: {len(findings)} gated values within the gates"
    )
    return "\n".join((lines if shown else []) + [verdict])


def run_check(
    baseline: str | Path,
    gates: str | Path,
    results: str | Path,
    verbose: bool = False,
    allow_different_n: bool = False,
) -> tuple[bool, str]:
    """Compare ``results`` with ``baseline`` under ``gates``; ``(passed, report text)``.

    ``allow_different_n`` compares set-level metrics (FVD) computed at different N.
    """
    patterns, gate_map = load_gates(gates)
    base = load_entries(baseline)
    cand = load_entries(results)
    failed = [e for e in base if e.status != "ok"]
    if failed:
        raise ConfigError(
            f"{baseline}: baseline setting {failed[0].model}/{failed[0].setting} failed "
            f"({failed[0].error}); regenerate the baseline"
        )
    for label, entries, path in (("baseline", base, baseline), ("candidate", cand, results)):
        have = {m for e in entries for m in e.metrics}
        absent = sorted(set(gate_map) - have)
        if absent and not (label == "candidate" and all(e.status != "ok" for e in entries)):
            raise ConfigError(
                f"{gates}: gates.metrics.{absent[0]}: not in the {label} {path} "
                f"(it has {sorted(have)})"
            )
    findings = compare(base, cand, patterns, gate_map, allow_different_n)
    if not findings:
        raise ConfigError(f"{gates}: gates.settings: no baseline setting matches {patterns}")
    passed = all(f.status == "ok" for f in findings)
    return passed, format_findings(findings, verbose)
