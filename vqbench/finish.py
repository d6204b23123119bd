"""The end of every setting, FP and quantized alike: score the videos with every configured
metric, time the model if asked, and write videos, ``samples.jsonl`` and ``run.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vqbench.config import run_hash
from vqbench.measure import compression_ratio, peak_memory, single_video_latency, weight_bytes
from vqbench.paths import under
from vqbench.plan import Generated, LoadedModel, Plan, timed
from vqbench.prompts import Prompt
from vqbench.records import RunRecord
from vqbench.registry import METRICS
from vqbench.store import atomic_write_text
from vqbench.types import MetricResult, SampleContext, Video
from vqbench.video import write_video


def score(
    plan: Plan, m: LoadedModel, videos: list[Video], fp: list[Video] | None
) -> dict[str, MetricResult]:
    """Every configured metric on ``videos`` (``fp``: the FP videos, ``None`` for FP itself);
    the adapter's defaults (backbones, reference videos) apply unless ``metric_params``
    overrides them."""
    cfg, out = plan.cfg, {}
    ctx = [
        SampleContext(p.text, p.id, s, scene=p.scene, attributes=p.attributes, fp_video=fv)
        for (p, s), fv in zip(plan.pairs, fp or [None] * len(plan.pairs), strict=True)
    ]
    defaults = m.adapter.metric_defaults()
    for name in cfg.metrics:
        cls = METRICS.get(name)
        requires = getattr(cls, "requires", frozenset())
        if fp is None and "fp_video" in requires:
            continue  # comparisons against FP are not defined for FP itself
        params = {**defaults.get(name, {}), **cfg.metric_params.get(name, {})}
        metric = cls(**params)
        if "reference" in requires and not params.get("reference_dir"):
            refs = m.adapter.reference_videos(ctx)
            if refs is not None:
                metric.set_reference(refs)
        metric.update(videos, ctx)
        out[name] = metric.compute()
    return out


def finish_setting(
    plan: Plan,
    m: LoadedModel,
    label: str,
    gen: Generated,
    fp: Generated | None,
    parts: dict[str, Any] | None = None,
) -> RunRecord:
    """Score one setting (FP when ``fp`` is None), time it if asked, and write its record."""
    cfg, timings = plan.cfg, dict(plan.timings)
    with timed(timings, "metrics"):
        results = score(plan, m, gen.videos, None if fp is None else fp.videos)
    q_bytes = weight_bytes(list(m.adapter.denoisers().values()))
    eff: dict[str, Any] = {
        "generation_seconds": gen.seconds,
        "weight_bytes": q_bytes,
        "compression_ratio": compression_ratio(m.fp_bytes, q_bytes),
        "peak_memory": peak_memory(m.adapter.device),
    }
    if fp is not None:
        eff["fp_weight_bytes"] = m.fp_bytes
    if cfg.latency.enabled:  # inline timing of cached FP videos comes from their entry
        inline = cfg.latency.iters == 0 and gen.latency
        with timed(timings, "latency"):
            eff["latency"] = (
                gen.latency
                if inline
                else single_video_latency(m.adapter, plan.pairs[0], m.spec, cfg.latency)
            )
    record = _record(
        plan,
        m,
        label,
        metrics={k: v.to_dict() for k, v in results.items()},
        efficiency=eff,
        **(parts or {}),
    )
    record.timings = timings  # the write itself is not in its own record
    write_setting(under(plan.root, label), record, plan.pairs, gen.videos, results)
    return record


def fail_setting(
    plan: Plan, m: LoadedModel, label: str, parts: dict[str, Any], reason: str
) -> RunRecord:
    """Write the record of a setting that could not be scored: ``status`` failed, the
    reason, no metric values and no videos."""
    record = _record(
        plan,
        m,
        label,
        status="failed",
        error=reason,
        timings=dict(plan.timings),
        **parts,
    )
    record.save(under(plan.root, label, "run.json"))
    return record


def _record(plan: Plan, m: LoadedModel, label: str, **fields: Any) -> RunRecord:
    """A setting's record: what every setting of the run shares, plus ``fields``."""
    return RunRecord(
        run_id=f"{plan.run_id}/{label}",
        created=plan.created,
        model=m.info,
        generation=m.generation,
        environment=plan.env,
        run_hash=run_hash(plan.cfg),
        **fields,
    )


def write_setting(
    out_dir: Path,
    record: RunRecord,
    pairs: list[tuple[Prompt, int]],
    videos: list[Video],
    results: dict[str, MetricResult],
) -> None:
    """Videos, ``samples.jsonl`` (per-video metric values) and, last, ``run.json``."""
    rows = []
    for i, ((p, seed), v) in enumerate(zip(pairs, videos, strict=True)):
        vid = under(out_dir, "videos", f"{i:04d}_{p.id}_s{seed}.mp4")
        write_video(v, vid)
        row = {"prompt_id": p.id, "prompt": p.text, "seed": seed, "video": str(vid.name)}
        for name, r in results.items():
            if len(r.per_sample) == len(pairs):
                row[name] = r.per_sample[i]
        rows.append(row)
    atomic_write_text(out_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    record.save(out_dir / "run.json")
