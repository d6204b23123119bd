"""The runner's stages: cache keys that depend only on their inputs, and per-stage timings."""

from __future__ import annotations

from vqbench.cli import main
from vqbench.records import find_records

BASE = ["--set", "model.name=tiny-latte", "--set", "calibration.prompts=tiny"]
BASE += ["--set", "metrics=[psnr_fp]", "--set", "latency.enabled=false", "-q"]
BASE += ["--set", "quantizers=[{name: smoothquant, w_bits: 8, a_bits: 8}]"]


def _run(out, cache, *sets: str):
    args = ["run", *BASE, "--set", f"output_dir={out}", "--set", f"cache_dir={cache}"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return {r.label: r for r in find_records(out)}


def test_changing_the_eval_suite_reuses_the_calibration_and_the_state(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path / "a", cache, "generation.prompts=tiny", "generation.num_prompts=1")
    second = _run(tmp_path / "b", cache, "generation.prompts=tiny", "generation.seeds=[3, 4]")
    q1, q2 = first["smoothquant-W8A8"], second["smoothquant-W8A8"]
    assert not q1.calibration["state_cached"]
    assert q2.calibration["state_cached"]  # other eval prompts and seeds: same calibration
    assert q2.generation["num_videos"] != q1.generation["num_videos"]
    # how to sample is part of the key: other steps recalibrate
    third = _run(tmp_path / "c", cache, "generation.prompts=tiny", "generation.steps=3")
    assert not third["smoothquant-W8A8"].calibration["state_cached"]


def test_records_carry_stage_timings_and_the_isa(tmp_path):
    recs = _run(tmp_path / "a", tmp_path / "cache", "generation.prompts=tiny")
    q = recs["smoothquant-W8A8"]
    for stage in ("prepare", "load", "fp_generation", "capture", "calibrate", "generate"):
        assert q.timings[stage] >= 0.0, stage
    assert "capture" not in recs["fp"].timings  # FP is finished before calibration
    assert q.environment["cpu_capability"] and q.environment["cpu_model"]
    assert q.quantizer["kernel_backend"] == "fake" and q.quantizer["kernel_fusion"] is None
    assert q.status == "ok" and q.error is None


def test_real_kernel_records_name_their_backend(tmp_path):
    recs = _run(
        tmp_path / "a", tmp_path / "cache", "generation.prompts=tiny", "quantizers.0.kernel=real"
    )
    q = recs["smoothquant-W8A8"].quantizer
    assert q["kernel_backend"] in ("int_mm", "fbgemm")
    assert q["kernel_fusion"] == "inductor" or q["kernel_fusion"].startswith("eager (")


def test_records_carry_what_the_state_asks_to_record(tmp_path):
    q = "quantizers=[{name: efficientdm, w_bits: 8, a_bits: 8, params: {iters: 3}}]"
    for run_id in ("a", "b"):  # fresh, then from the cached state
        recs = _run(tmp_path / run_id, tmp_path / "cache", "generation.prompts=tiny", q)
        calib = recs["efficientdm-W8A8"].calibration
        (distill,) = (s["distill"] for s in calib["state"].values())
        assert isinstance(distill["guard_fired"], bool) and distill["eval_rows"] > 0
        assert distill["curve"][0] == [0, distill["start_loss"]]
    assert calib["state_cached"]
