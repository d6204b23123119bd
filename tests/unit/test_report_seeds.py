"""Calibration seeds: the crossed bootstrap, pooling a setting's seeds, seed-paired deltas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vqbench.records import RunRecord
from vqbench.report.seeds import ENVELOPE_METHOD, pool_seeds, seed_paired_delta
from vqbench.report.tables import leaderboard, paired_groups
from vqbench.stats import CROSSED_METHOD, crossed_bootstrap_ci, mean_ci

GEN = {"spec": {"steps": 2}, "seeds": [0], "prompts_hash": "p", "num_videos": 4}


def _metric(per: list[float], ci: list[float] | None = None) -> dict:
    return {
        "name": "psnr_fp",
        "value": float(np.mean(per)),
        "n": len(per),
        "version": "1",
        "higher_is_better": True,
        "ci": ci or [min(per), max(per)],
        "per_sample": per,
        "params": {},
    }


def _record(label: str, seed: int | None, per: list[float], status: str = "ok") -> RunRecord:
    name, bits = label.split("-")
    q = {"name": name, "version": "1", "w_bits": int(bits[1]), "a_bits": int(bits[3])}
    q.update(tag="", seed=seed, kernel="fake", config={}, config_hash="h", effective_bits={})
    metrics = {"psnr_fp": _metric(per)} if status == "ok" else {}
    fvd = {"name": "fvd", "value": 10.0 + (seed or 0), "n": 4, "version": "4"}
    fvd.update(higher_is_better=False, ci=[5.0 + (seed or 0), 20.0 + (seed or 0)], params={})
    if status == "ok":
        metrics["fvd"] = fvd
    run = f"r/{label}" + ("" if seed is None else f"-seed{seed}")
    return RunRecord(
        run_id=run,
        created="t",
        model={"id": "m", "name": "m", "dtype": "float32"},
        generation=GEN,
        quantizer=q,
        calibration={"seconds": 10.0 * (1 + (seed or 0))},
        metrics=metrics,
        status=status,
        error=None if status == "ok" else "boom",
    )


def test_crossed_bootstrap_degenerate_and_offsets():
    assert crossed_bootstrap_ci(np.full((3, 4), 2.5)) == (2.5, 2.5)
    a = np.arange(12.0).reshape(3, 4)
    assert crossed_bootstrap_ci(a, a, paired_seeds=True) == (0.0, 0.0)
    assert crossed_bootstrap_ci(a + 1.0, a, paired_seeds=True) == (1.0, 1.0)
    # a one-row b (no seeds) is subtracted as is: a constant shift moves the interval by it
    lo, hi = crossed_bootstrap_ci(a[:1] + 3.0, a[:1])
    assert (lo, hi) == (3.0, 3.0)
    assert crossed_bootstrap_ci([[1.0]]) is None


def test_crossed_bootstrap_covers_the_seed_spread():
    rng = np.random.default_rng(1)
    prompts = rng.normal(0, 0.1, 12)
    seeds = np.array([[-2.0], [0.0], [2.0]])  # the seeds differ far more than the prompts
    mat = seeds + prompts
    lo, hi = crossed_bootstrap_ci(mat)
    p_lo, p_hi = mean_ci(mat.mean(0))  # prompts only: blind to the seed spread
    assert hi - lo > 10 * (p_hi - p_lo)
    assert lo < mat.mean() < hi


def test_crossed_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        crossed_bootstrap_ci([[1.0, float("nan")]])
    with pytest.raises(ValueError, match="prompts"):
        crossed_bootstrap_ci(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="paired seeds"):
        crossed_bootstrap_ci(np.ones((2, 3)), np.ones((3, 3)), paired_seeds=True)


def _pairs(records: list[RunRecord]) -> list[tuple[RunRecord, Path]]:
    return [(r, Path(r.run_id)) for r in records]


def test_pool_seeds_one_row_with_mean_and_crossed_ci():
    per = {0: [30.0, 31.0, 32.0, 33.0], 1: [31.0, 32.0, 33.0, 34.0], 2: [32.0, 33.0, 34.0, 35.0]}
    recs = [_record("q_vdit-W4A6", s, v) for s, v in per.items()] + [
        _record("rtn-W4A6", None, [30.0, 30.0, 31.0, 31.0])
    ]
    pooled = {r.label: (r, d) for r, d in pool_seeds(_pairs(recs))}
    assert set(pooled) == {"q_vdit-W4A6", "rtn-W4A6"}
    r, d = pooled["q_vdit-W4A6"]
    assert d == Path("r/q_vdit-W4A6-seed0")  # the lowest seed's directory stands for the set
    m = r.metrics["psnr_fp"]
    assert m["value"] == pytest.approx(32.5) and m["per_sample"] == [31.0, 32.0, 33.0, 34.0]
    assert m["per_seed"] == [per[0], per[1], per[2]] and m["ci_method"] == CROSSED_METHOD
    assert m["ci"][0] < 32.5 < m["ci"][1]
    fvd = r.metrics["fvd"]  # set-level: the mean, and the envelope of the seeds' intervals
    assert fvd["value"] == pytest.approx(11.0) and fvd["ci"] == [5.0, 22.0]
    assert fvd["ci_method"] == ENVELOPE_METHOD and "per_sample" not in fvd
    assert r.quantizer["seeds"] == [0, 1, 2] and r.calibration["seconds"] == pytest.approx(20.0)
    df = leaderboard([r for r, _ in pooled.values()])
    assert dict(zip(df["setting"], df["seeds"], strict=True)) == {"q_vdit-W4A6": 3, "rtn-W4A6": 1}


def test_pool_seeds_failed_seed_and_duplicates():
    recs = [_record("q_vdit-W4A6", 0, [1.0, 2.0]), _record("q_vdit-W4A6", 1, [], "failed")]
    ((r, _),) = pool_seeds(_pairs(recs))
    assert r.status == "failed" and r.error == "seed 1: boom" and r.metrics == {}
    twice = [_record("rtn-W4A6", None, [1.0, 2.0]), _record("rtn-W4A6", None, [1.0, 2.0])]
    with pytest.raises(ValueError, match="without a distinct calibration seed"):
        pool_seeds(_pairs(twice))
    stale = [_record("q_vdit-W4A6", 0, [1.0, 2.0]), _record("q_vdit-W4A6", 1, [1.0, 2.0])]
    stale[0].quantizer["version"] = "0"  # a seed left over from an older method version
    with pytest.raises(ValueError, match="configs differ beyond the seed"):
        pool_seeds(_pairs(stale))


def test_seed_paired_delta_uses_every_seed():
    a = {"per_seed": [[2.0, 3.0], [4.0, 5.0]], "per_sample": [3.0, 4.0], "seeds": [0, 1]}
    b = {"per_sample": [1.0, 1.0]}
    d = seed_paired_delta(a, b)
    assert d.mean == pytest.approx(2.5) and d.seeds == 2 and d.method == CROSSED_METHOD
    assert d.deltas == {0: 2.0, 1: 3.0}
    same = seed_paired_delta(a, {**a})  # paired seeds: identical sides give exactly 0
    assert same.mean == 0.0 and same.ci == (0.0, 0.0)
    assert seed_paired_delta(a, {"per_sample": [1.0, 2.0, 3.0]}) is None


def test_paired_groups_pool_seeds_against_an_unseeded_reference():
    recs = [_record("q_vdit-W4A6", s, [30.0 + s, 31.0 + s, 32.0, 33.0]) for s in range(3)]
    recs.append(_record("rtn-W4A6", None, [29.0, 30.0, 31.0, 32.0]))
    pooled = [r for r, _ in pool_seeds(_pairs(recs))]
    (g,) = paired_groups(pooled, "rtn-W4A6")
    ((label, cells, failure),) = g.rows
    assert label == "q_vdit-W4A6" and failure is None
    assert cells["psnr_fp"].seeds == 3 and cells["psnr_fp"].mean == pytest.approx(1.5)


def test_check_gates_the_pooled_seeds_not_the_latest_one(tmp_path):
    from vqbench.check import load_entries

    for s, per in ((0, [10.0, 10.0]), (1, [20.0, 20.0]), (2, [30.0, 30.0])):
        r = _record("q_vdit-W4A6", s, per)
        r.created = f"t{2 - s}"  # seed 0 is the latest record
        r.save(tmp_path / f"q_vdit-W4A6-seed{s}" / "run.json")
    (entry,) = load_entries(tmp_path)
    assert entry.setting == "q_vdit-W4A6" and entry.metrics["psnr_fp"].value == 20.0
