"""A setting run with several calibration seeds, pooled into one leaderboard row.

Records of one comparability group that share a setting label and differ only in their
calibration seed (``quantizer.seed``, see ``calib_seeds`` in a sweep) become one record:

- a per-sample metric keeps every seed's values (``per_seed``, seeds x prompts); its value
  is the mean over seeds, ``per_sample`` the per-prompt mean over seeds, and its CI the
  crossed bootstrap over seeds and prompts (:func:`vqbench.stats.crossed_bootstrap_ci`);
- a set-level metric (FVD) has no per-prompt values: its value is the mean of the seeds'
  values and its CI the envelope of the seeds' intervals (lowest lower to highest upper
  bound), which covers each seed's sampling interval and the spread between seeds;
- a setting with a failed seed is failed: a partial set of seeds is never shown as whole;
- seeds whose quantizer configs differ beyond the seed (a stale record) are refused.

Paired comparisons (:func:`seed_paired_delta`) use every seed of both sides.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from vqbench.records import RunRecord
from vqbench.stats import CROSSED_METHOD, PairedDelta, crossed_bootstrap_ci

log = logging.getLogger(__name__)
ENVELOPE_METHOD = "envelope of the seeds' intervals"


def seed_count(r: RunRecord) -> int:
    """How many calibration seeds a (pooled) record holds: 1 for an unseeded setting."""
    return len((r.quantizer or {}).get("seeds") or [None])


def pool_seeds(pairs: list[tuple[RunRecord, Path]]) -> list[tuple[RunRecord, Path]]:
    """One ``(record, directory)`` per group and setting: seeds pooled (the directory of the
    lowest seed stands for the set). ``ValueError`` names a setting that appears twice
    without distinct calibration seeds."""
    from vqbench.report.tables import group_key

    buckets: dict[tuple[str, str], list[tuple[RunRecord, Path]]] = {}
    for r, d in pairs:
        buckets.setdefault((group_key(r), r.label), []).append((r, d))
    out = []
    for (key, label), items in buckets.items():
        if len(items) == 1:
            out.append(items[0])
            continue
        seeds = [(r.quantizer or {}).get("seed") for r, _ in items]
        if None in seeds or len(set(seeds)) != len(seeds):
            raise ValueError(
                f"{items[1][1]}: setting {label} of group {key} is also in {items[0][1]} "
                "without a distinct calibration seed; give each results dir once"
            )
        configs = {_config_without_seed(r) for r, _ in items}
        if len(configs) > 1:  # e.g. a stale seed from an older method version
            raise ValueError(
                f"{items[1][1]}: setting {label} of group {key} has seeds whose quantizer "
                f"configs differ beyond the seed (see {items[0][1]}); rerun the stale ones"
            )
        items.sort(key=lambda rd: rd[0].quantizer["seed"])
        out.append((pooled([r for r, _ in items]), items[0][1]))
    return sorted(out, key=lambda rd: rd[0].run_id)


def _config_without_seed(r: RunRecord) -> str:
    """The record's quantizer version and resolved config, the seed left out."""
    q = r.quantizer or {}
    config = {k: v for k, v in (q.get("config") or {}).items() if k != "seed"}
    return json.dumps([q.get("version"), config], sort_keys=True)


def pooled(records: list[RunRecord]) -> RunRecord:
    """The records of one setting's seeds as one record (see the module docstring)."""
    seeds = [r.quantizer["seed"] for r in records]
    out = copy.deepcopy(records[0])
    out.quantizer = {**out.quantizer, "seed": None, "seeds": seeds}
    secs = [float((r.calibration or {}).get("seconds") or 0.0) for r in records]
    out.calibration = {**(out.calibration or {}), "seconds": float(np.mean(secs))}
    out.calibration["seconds_per_seed"] = secs
    pairs = zip(seeds, records, strict=True)
    bad = [f"seed {s}: {r.error or 'no reason given'}" for s, r in pairs if r.status != "ok"]
    if bad:
        out.status, out.error, out.metrics = "failed", "; ".join(bad), {}
        return out
    names = set.intersection(*(set(r.metrics) for r in records))
    dropped = sorted(set().union(*(set(r.metrics) for r in records)) - names)
    if dropped:
        log.warning("%s: %s missing for some seeds; left out of the pooled row", out.label, dropped)
    out.metrics = {n: pool_metric([r.metrics[n] for r in records], seeds) for n in sorted(names)}
    return out


def pool_metric(results: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """One metric's results over seeds: mean value, per-seed values and a pooled CI."""
    out = dict(results[0])
    values = [r.get("value") for r in results]
    finite = all(v is not None and math.isfinite(float(v)) for v in values)
    out["value"] = float(np.mean(values)) if finite else None
    if not finite:
        log.warning("%s: a seed has no finite value; pooled value left empty", out.get("name"))
    out["seeds"], out["seed_values"] = list(seeds), values
    per = [r.get("per_sample") for r in results]
    if finite and all(per) and len({len(p) for p in per}) == 1:
        mat = np.asarray(per, dtype=np.float64)
        out["per_seed"] = mat.tolist()
        out["per_sample"] = mat.mean(0).tolist()
        ci = crossed_bootstrap_ci(mat)
        out["ci"], out["ci_method"] = (list(ci) if ci else None), CROSSED_METHOD
        return out
    out.pop("per_sample", None)
    cis = [r.get("ci") for r in results]
    ok = finite and all(c and c[0] is not None and c[1] is not None for c in cis)
    out["ci"] = [min(c[0] for c in cis), max(c[1] for c in cis)] if ok else None
    out["ci_method"] = ENVELOPE_METHOD
    return out


def seed_paired_delta(a: dict[str, Any], b: dict[str, Any]) -> PairedDelta | None:
    """Paired per-prompt delta ``a - b`` of one metric, over every seed of both sides, with
    the crossed bootstrap CI (seeds paired when both ran the same seeds); None when the
    prompts differ."""
    x = np.asarray(a.get("per_seed") or [a["per_sample"]], dtype=np.float64)
    y = np.asarray(b.get("per_seed") or [b["per_sample"]], dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        return None
    paired = a.get("per_seed") is not None and a.get("seeds") == b.get("seeds")
    d = x.mean(0) - y.mean(0)
    return PairedDelta(
        mean=float(d.mean()),
        n=len(d),
        ci=crossed_bootstrap_ci(x, y, paired_seeds=paired),
        deltas=dict(enumerate(d.tolist())),
        method=CROSSED_METHOD,
        seeds=max(len(x), len(y)),
    )
