"""Report plots (matplotlib, Agg): bit-width vs quality, Pareto fronts, FP-vs-quantized strips."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vqbench.video import read_video  # noqa: E402

COSTS = {  # cost axis -> (leaderboard column, axis label, scale)
    "latency": ("step_p50_ms", "denoiser step p50 (ms)", 1.0),
    "memory": ("weight_bytes", "weight memory (MiB)", 1 / 2**20),
}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _yerr(sub: pd.DataFrame, m: str) -> np.ndarray | None:
    lo, hi = sub[f"{m}_ci_lo"].astype(float), sub[f"{m}_ci_hi"].astype(float)
    if lo.isna().all():
        return None
    v = sub[m].astype(float)
    return np.vstack([(v - lo).clip(lower=0).fillna(0), (hi - v).clip(lower=0).fillna(0)])


def bits_vs_quality(df: pd.DataFrame, metric: str, path: Path) -> Path:
    """One line per method over bit settings (most bits first), CI error bars, FP dashed."""
    q = df[(df["method"] != "fp") & df[metric].notna()]
    settings = (
        q[["w_bits", "a_bits"]].drop_duplicates().sort_values(["w_bits", "a_bits"], ascending=False)
    )
    labels = [f"W{w}A{a}" for w, a in settings.itertuples(index=False)]
    xpos = {lab: i for i, lab in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method, sub in q.groupby("method", sort=True):
        sub = sub.sort_values(["w_bits", "a_bits"], ascending=False)
        x = [xpos[f"W{w}A{a}"] for w, a in zip(sub["w_bits"], sub["a_bits"], strict=True)]
        ax.errorbar(
            x,
            sub[metric].astype(float),
            yerr=_yerr(sub, metric),
            marker="o",
            capsize=3,
            label=str(method),
        )
    fp = df[(df["method"] == "fp") & df[metric].notna()]
    if len(fp):
        ax.axhline(float(fp[metric].iloc[0]), color="k", ls="--", lw=1, label="FP")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("bit setting")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs bit-width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def pareto_front(cost: np.ndarray, quality: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Indices of the points not dominated in (lower cost, better quality), by cost."""
    sign = 1.0 if higher_is_better else -1.0
    order = np.lexsort((-sign * quality, cost))
    front, best = [], -np.inf
    for i in order:
        if sign * quality[i] > best:
            front.append(i)
            best = sign * quality[i]
    return np.asarray(front, dtype=int)


def quality_vs_cost(df: pd.DataFrame, metric: str, cost: str, path: Path) -> Path | None:
    """Scatter of ``metric`` against a cost axis with the Pareto front; None without data."""
    col, label, scale = COSTS[cost]
    sub = df[df[metric].notna() & df[col].notna()]
    if sub.empty:
        return None
    hib = bool(sub[f"{metric}_higher_is_better"].iloc[0])
    x = sub[col].astype(float).to_numpy() * scale
    y = sub[metric].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method in sorted(sub["method"].unique()):
        mask = (sub["method"] == method).to_numpy()
        ax.scatter(x[mask], y[mask], label=method, zorder=3)
    for xi, yi, lab in zip(x, y, sub["setting"], strict=True):
        ax.annotate(lab, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(x, y, hib)
    ax.plot(x[front], y[front], "k--", lw=1, label="Pareto front", zorder=2)
    ax.set_xlabel(label)
    ax.set_ylabel(f"{metric} ({'higher' if hib else 'lower'} is better)")
    ax.set_title(f"{metric} vs {cost}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _samples(record_dir: Path) -> dict[tuple[str, int], dict]:
    path = record_dir / "samples.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["prompt_id"], int(r["seed"])): r for r in rows}


def frame_strip(
    settings: list[tuple[str, Path]], key: tuple[str, int], path: Path, frames: int = 4
) -> Path | None:
    """Rows FP and each quantized setting, ``frames`` evenly spaced frames of one sample."""
    rows, names, prompt = [], [], ""
    for label, record_dir in settings:
        row = _samples(record_dir).get(key)
        video = record_dir / "videos" / row["video"] if row else None
        if video is None or not video.is_file():
            continue
        prompt = row["prompt"]
        v = read_video(video, num_frames=frames)
        rows.append(np.concatenate(list(v.frames), axis=1))
        names.append(label)
    if len(rows) < 2:
        return None
    h = max(r.shape[0] for r in rows)
    w = max(r.shape[1] for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.6 * frames, 1.6 * len(rows) * h / w * frames))
    for ax, img, name in zip(np.atleast_1d(axes), rows, names, strict=True):
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=8, loc="left")
    fig.suptitle(f"{key[0]} (seed {key[1]}): {prompt[:80]}", fontsize=8)
    return _save(fig, path)


def strips_for_group(
    settings: list[tuple[str, Path]], out_dir: Path, max_prompts: int = 4, frames: int = 4
) -> list[Path]:
    """Frame strips for the first ``max_prompts`` samples of the FP setting (``settings[0]``)."""
    if not settings:
        return []
    keys = list(_samples(settings[0][1]))[:max_prompts]
    out = []
    for k in keys:
        p = frame_strip(settings, k, out_dir / f"strip_{_safe(k[0])}_s{k[1]}.png", frames)
        if p is not None:
            out.append(p)
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
