"""What a reader sees of a leaderboard frame: labels, formatted cells and the metric order.

- :func:`precision_label`: ``FP32`` (the model's dtype) for the FP row, ``W4A8`` otherwise;
- :func:`storage_label`: how weights are stored where bits and bytes differ (``W6`` in int8,
  ``W3`` in int4 slots packed two per byte), as ``memory_bytes()`` counts them;
- :func:`metric_order`: metrics by how well they separate the settings (spread of the
  settings' values over the typical CI width), saturated ones (no setting's CI clear of the
  others') last;
- :func:`display_frame`: the formatted table (``value [lo, hi]``, arrows, failed settings).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

DTYPE_LABELS = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "bfloat16": "BF16"}
DTYPE_BITS = {"float32": 32, "float64": 64, "float16": 16, "bfloat16": 16}
FAKE_LATENCY_NOTE = "fake quantization overhead, not speed"


def fmt(v: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant digits; ``-`` for missing values."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}g}"
    return str(v)


def metric_names(df: pd.DataFrame) -> list[str]:
    """Metric value columns of a leaderboard frame."""
    return [c[: -len("_version")] for c in df.columns if c.endswith("_version")]


def dtype_name(dtype: Any) -> str:
    """``"float32"`` from ``"torch.float32"`` or ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def is_fp(row: Any) -> bool:
    """Whether a leaderboard row is the FP setting."""
    return str(row["method"]) == "fp"


def precision_label(row: Any) -> str:
    """``FP32``/``BF16``/... (from the model dtype) for FP, ``W<w>A<a>`` for a quantized row."""
    if is_fp(row):
        return DTYPE_LABELS.get(dtype_name(row.get("dtype")), "FP")
    return f"W{int(row['w_bits'])}A{int(row['a_bits'])}"


def storage_label(row: Any) -> str:
    """How the weights behind the ``weights (MiB)`` column are stored."""
    if is_fp(row):
        return DTYPE_LABELS.get(dtype_name(row.get("dtype")), "FP").lower()
    w = int(row["w_bits"])
    if w > 8:
        return f"{w}-bit"
    if w > 4:
        return "int8" if w == 8 else f"int8 ({w}-bit values)"
    return "int4, 2/byte" if w == 4 else f"int4, 2/byte ({w}-bit values)"


def separation(df: pd.DataFrame, metric: str) -> float:
    """Spread of the settings' values divided by their median CI width (0 if undefined)."""
    v = df[metric].astype(float)
    ok = v.notna()
    if ok.sum() < 2:
        return 0.0
    lo, hi = df[f"{metric}_ci_lo"].astype(float), df[f"{metric}_ci_hi"].astype(float)
    width = (hi - lo)[ok & lo.notna() & hi.notna()]
    spread = float(v[ok].max() - v[ok].min())
    typical = float(width.median()) if len(width) else 0.0
    if typical <= 0:
        return math.inf if spread > 0 else 0.0
    return spread / typical


def saturated(df: pd.DataFrame, metric: str) -> bool:
    """True when no two settings' CIs are disjoint (the metric does not separate them)."""
    ok = df[metric].notna()
    lo = df.loc[ok, f"{metric}_ci_lo"].astype(float)
    hi = df.loc[ok, f"{metric}_ci_hi"].astype(float)
    if ok.sum() < 2:
        return True
    if lo.isna().all():
        return float(df.loc[ok, metric].astype(float).std()) == 0.0
    return bool(lo.max() <= hi.min())


def metric_order(df: pd.DataFrame) -> list[tuple[str, bool]]:
    """``(metric, saturated)`` for every measured metric: separating ones first (most
    separating first), saturated ones last; ties by name."""
    names = [m for m in metric_names(df) if df[m].notna().any()]
    info = [(m, saturated(df, m), separation(df, m)) for m in names]
    info.sort(key=lambda t: (t[1], -t[2], t[0]))
    return [(m, sat) for m, sat, _ in info]


def arrow(df: pd.DataFrame, metric: str) -> str:
    """``↑`` when higher is better for every record of the column, else ``↓``."""
    return (
        "↑" if df[f"{metric}_higher_is_better"].dropna().astype(str).isin(["True"]).all() else "↓"
    )


def _cell(v: Any, lo: Any, hi: Any) -> str:
    if fmt(v) == "-":
        return "-"
    return fmt(v) + (f" [{fmt(lo)}, {fmt(hi)}]" if fmt(lo) != "-" else "")


def _latency(row: Any) -> str:
    text = fmt(row["step_p50_ms"], 3)
    return text + " †" if row["kernel"] == "fake" and text != "-" else text


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Formatted strings for humans: ``value [lo, hi]`` per metric (in :func:`metric_order`,
    saturated ones marked), the FP dtype, the weight storage, MiB for bytes, and failed
    settings with their reason and no numbers."""
    df = df.reset_index(drop=True)
    rows = [r for _, r in df.iterrows()]
    status = [str(r.get("status") or "ok") for r in rows]
    failed = [s != "ok" for s in status]
    out = pd.DataFrame({"setting": df["setting"]})
    if any(failed):
        out["status"] = [
            f"failed: {r.get('error') or 'no reason given'}" if f else "ok"
            for r, f in zip(rows, failed, strict=True)
        ]
    out["kernel"] = df["kernel"]
    out["precision"] = [precision_label(r) for r in rows]
    if "seeds" in df.columns:  # calibration seeds pooled in the row (older CSVs lack it)
        out["seeds"] = [fmt(r["seeds"]) for r in rows]
    out["eff. W/A bits"] = [
        "-" if f or is_fp(r) else f"{float(r['eff_w_bits']):.2f}/{float(r['eff_a_bits']):.2f}"
        for r, f in zip(rows, failed, strict=True)
    ]
    out["weight storage"] = [storage_label(r) for r in rows]
    for m, sat in metric_order(df[[not f for f in failed]]):
        head = f"{m} {arrow(df, m)}" + (" (saturated)" if sat else "")
        out[head] = [
            "-" if f else _cell(r[m], r[f"{m}_ci_lo"], r[f"{m}_ci_hi"])
            for r, f in zip(rows, failed, strict=True)
        ]
    out["step p50 (ms)"] = [
        fmt(r["step_p50_ms"], 3)
        + (" †" if r["kernel"] == "fake" and fmt(r["step_p50_ms"]) != "-" else "")
        for r in rows
    ]
    out["weights (MiB)"] = [
        fmt(float(v) / 2**20, 3) if v is not None and v == v and v != "" else "-"
        for v in df["weight_bytes"]
    ]
    return out
