"""Report plots (matplotlib, Agg): bit-width vs quality, Pareto fronts, FP-vs-quantized strips.

Latency plots use real-kernel timings only (plus FP); with none, every point is a fake-kernel
timing and the plot is watermarked "fake quantization overhead, not speed". Point labels are
placed where they overlap no other label (the FP point and the Pareto front are labelled;
the rest are told apart by the legend's colours). Frame strips show each quantized setting's
frames with an amplified ``|quantized - FP|`` row below them.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from vqbench.paths import check_name, under  # noqa: E402
from vqbench.report.display import FAKE_LATENCY_NOTE  # noqa: E402
from vqbench.video import read_video  # noqa: E402

DIFF_GAIN = 8
"""Amplification of the ``|quantized - FP|`` rows of the frame strips."""

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


def _title(text: str, saturated: bool) -> str:
    return text + ("  [saturated: no setting's CI clears the others']" if saturated else "")


def bits_vs_quality(df: pd.DataFrame, metric: str, path: Path, saturated: bool = False) -> Path:
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
    ax.set_title(_title(f"{metric} vs bit-width", saturated), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
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


def latency_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Rows a latency plot may use and whether they are fake-kernel timings: FP plus the
    real-kernel settings, or (with no real-kernel setting) all rows, flagged fake."""
    real = df["kernel"] == "real"
    if real.any():
        return df[real | (df["method"] == "fp")], False
    return df, bool((df["kernel"] == "fake").any())


def place_labels(ax: plt.Axes, points: list[tuple[float, float, str]], fontsize: int = 7) -> int:
    """Annotate ``points`` at the first of several offsets whose text box overlaps no
    earlier label and stays in the axes; a point with no free offset is left unlabelled.
    Returns the number of labels placed."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    offsets = [(4, 4), (4, -10), (-4, 4), (-4, -10), (8, 12), (8, -18), (-8, 12), (-8, -18)]
    boxes: list = []
    for x, y, text in points:
        for dx, dy in offsets:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=fontsize,
                ha="left" if dx > 0 else "right",
            )
            box = ann.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
            if inside and box.y1 <= frame.y1 and not any(box.overlaps(b) for b in boxes):
                boxes.append(box)
                break
            ann.remove()
    return len(boxes)


def quality_vs_cost(
    df: pd.DataFrame, metric: str, cost: str, path: Path, saturated: bool = False
) -> Path | None:
    """Scatter of ``metric`` against a cost axis with the Pareto front; None without data.

    Latency: see :func:`latency_rows` (fake-kernel timings are watermarked)."""
    col, label, scale = COSTS[cost]
    fake = False
    if cost == "latency":
        df, fake = latency_rows(df)
    sub = df[df[metric].notna() & df[col].notna()]
    if sub.empty:
        return None
    hib = bool(sub[f"{metric}_higher_is_better"].astype(str).eq("True").iloc[0])
    x = sub[col].astype(float).to_numpy() * scale
    y = sub[metric].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in sorted(sub["method"].unique()):
        mask = (sub["method"] == method).to_numpy()
        ax.scatter(x[mask], y[mask], label=method, zorder=3, s=18)
    front = pareto_front(x, y, hib)
    ax.plot(x[front], y[front], "k--", lw=1, label="Pareto front", zorder=2)
    ax.set_xlabel(label + (" (fake-quantized kernels)" if fake else ""))
    ax.set_ylabel(f"{metric} ({'higher' if hib else 'lower'} is better)")
    ax.set_title(_title(f"{metric} vs {cost}", saturated), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if fake:
        ax.text(
            0.5,
            0.5,
            FAKE_LATENCY_NOTE,
            transform=ax.transAxes,
            ha="center",
            va="center",
            rotation=20,
            fontsize=17,
            color="red",
            alpha=0.35,
            zorder=5,
        )
    fig.tight_layout()
    labels = sub["setting"].to_numpy()
    fp = np.flatnonzero((sub["method"] == "fp").to_numpy())
    chosen = list(dict.fromkeys([*fp.tolist(), *front.tolist()]))
    place_labels(ax, [(x[i], y[i], str(labels[i])) for i in chosen])
    return _save(fig, path)


def _samples(record_dir: Path) -> dict[tuple[str, int], dict]:
    """A record's ``samples.jsonl`` rows by (prompt id, seed); ``ValueError`` naming the file
    for a malformed file or a video name that is not a plain file name of the record."""
    path = record_dir / "samples.jsonl"
    if not path.is_file():
        return {}
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out = {(str(r["prompt_id"]), int(r["seed"])): r for r in rows}
        for r in rows:
            check_name(str(r["video"]), f"{path}: video")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed samples file ({e})") from e
    return out


def strip_rows(
    settings: list[tuple[str, Path]], key: tuple[str, int], frames: int = 4
) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Rows of a frame strip and the sample's prompt: FP's frames, then per quantized setting
    its frames and its ``|quantized - FP|`` x ``DIFF_GAIN`` row. ``settings[0]`` is FP."""
    rows: list[tuple[str, np.ndarray]] = []
    prompt, fp_frames = "", None
    for label, record_dir in settings:
        row = _samples(record_dir).get(key)
        video = under(record_dir, "videos", row["video"]) if row else None
        if video is None or not video.is_file():
            continue
        prompt = row["prompt"]
        try:
            v = read_video(video, num_frames=frames).frames
        except Exception as e:  # decord and PyAV raise their own errors on a corrupt file
            raise ValueError(f"{video}: cannot decode video ({type(e).__name__}: {e})") from e
        rows.append((label, np.concatenate(list(v), axis=1)))
        if label == settings[0][0]:
            fp_frames = v
        elif fp_frames is not None and v.shape == fp_frames.shape:
            err = np.abs(v.astype(np.int16) - fp_frames.astype(np.int16))
            amp = np.clip(err * DIFF_GAIN, 0, 255).astype(np.uint8)
            name = f"|{label} - FP| x{DIFF_GAIN} (mean {float(err.mean()):.1f}/255)"
            rows.append((name, np.concatenate(list(amp), axis=1)))
    return rows, prompt


def frame_strip(
    settings: list[tuple[str, Path]], key: tuple[str, int], path: Path, frames: int = 4
) -> Path | None:
    """:func:`strip_rows` of one sample drawn one above the other; None with < 2 rows."""
    rows, prompt = strip_rows(settings, key, frames)
    if len(rows) < 2:
        return None
    h = max(r.shape[0] for _, r in rows)
    w = max(r.shape[1] for _, r in rows)
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(1.6 * frames, (1.6 * h / w * frames + 0.25) * len(rows))
    )
    for ax, (name, img) in zip(np.atleast_1d(axes), rows, strict=True):
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=7, loc="left")
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
