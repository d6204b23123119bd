"""End to end: ``vqbench run`` on the tiny random Latte, and one-line errors for bad input."""

from __future__ import annotations

import json
import math

import pytest

from vqbench.cli import main
from vqbench.records import RunRecord, find_records, validate_record

TINY = ["--set", "model.name=tiny-latte", "--set", "generation.prompts=tiny"]
TINY += ["--set", "calibration.prompts=tiny", "--set", "latency.iters=2"]
TINY += ["--set", "metrics=[psnr_fp, ssim_fp]", "-q"]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[RunRecord]:
    out = tmp_path_factory.mktemp("runs")
    cfg = out / "run.yaml"
    cfg.write_text(
        "quantizers:\n"
        "  - {name: rtn, w_bits: 8, a_bits: 8}\n"
        "  - {name: rtn, w_bits: 4, a_bits: 4}\n"
    )
    assert main(["run", "-c", str(cfg), "--set", f"output_dir={out}", *TINY]) == 0
    return find_records(out)


def test_run_writes_schema_valid_records(records):
    labels = sorted(r.label for r in records)
    assert labels == ["fp", "rtn-W4A4", "rtn-W8A8"]
    for r in records:
        validate_record(r.to_dict())
        assert r.schema_version == 1
        assert r.efficiency["latency"]["step"]["n"] > 0


def test_w8a8_is_closer_to_fp_than_w4a4(records):
    psnr = {r.label: r.metrics["psnr_fp"]["value"] for r in records if r.quantizer}
    assert math.isfinite(psnr["rtn-W8A8"])
    assert psnr["rtn-W8A8"] > psnr["rtn-W4A4"]
    eff = next(r for r in records if r.label == "rtn-W4A4").quantizer["effective_bits"]
    assert (
        eff["w_bits"]
        < next(r for r in records if r.label == "rtn-W8A8").quantizer["effective_bits"]["w_bits"]
    )


def test_samples_and_report(records, tmp_path, capsys):
    r = next(r for r in records if r.label == "rtn-W8A8")
    assert r.metrics["psnr_fp"]["ci"] is not None
    capsys.readouterr()
    root = tmp_path  # report over an empty dir prints a placeholder
    assert main(["report", str(root)]) == 0
    assert "no run records" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "quantizers.0.name=rtm"], "quantizers[0].name: unknown quantizer 'rtm'"),
        (["--set", "model.name=latt"], "model.name: unknown model 'latt'"),
        (["--set", "metrics.0=psnr"], "metrics[0]: unknown metric 'psnr'"),
        (["--set", "quantizers.0.w_bits=7"], "quantizers[0].w_bits: 7 is not a supported"),
        (["--set", "generation.prompts=/nonexistent/p.jsonl"], "generation.prompts: prompts file"),
    ],
)
def test_bad_input_one_line_error(args, needle, capsys):
    assert main(["validate", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "did you mean" in err if "unknown" in needle else needle in err
    assert len(err.splitlines()) == 1


def test_malformed_yaml_and_empty_suite(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mini\n")
    assert main(["validate", "-c", str(bad)]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["validate", "--set", f"generation.prompts={empty}"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_validate_prints_plan(capsys):
    assert main(["validate", *TINY[:-1]]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    # the default quantizers: the three seed methods at one bit setting
    assert plan["settings"] == ["fp", "qvd-W4A8", "q_vdit-W4A8", "s2q_vdit-W4A8"]
    assert plan["videos_per_setting"] == 2


def test_inline_latency_times_the_generation_batches(tmp_path):
    """``latency.iters=0`` times the main generation's batches; cached FP videos keep theirs."""
    args = [*TINY, "--set", "latency.iters=0", "--set", "generation.batch_size=1"]
    args += ["--set", "quantizers=[{name: rtn}]", "--set", f"cache_dir={tmp_path / 'cache'}"]
    for run_id in ("first", "second"):
        out = tmp_path / run_id
        assert main(["run", "--set", f"output_dir={out}", *args]) == 0
    first, second = ({r.label: r for r in find_records(tmp_path / d)} for d in ("first", "second"))
    for r in first.values():
        lat = r.efficiency["latency"]
        n = r.generation["num_videos"]
        assert lat["batch_size"] == 1 and lat["warmup_batches"] == 1
        assert lat["end_to_end"]["n"] == n - 1 and lat["step"]["n"] % (n - 1) == 0
    assert second["fp"].efficiency["latency"] == first["fp"].efficiency["latency"]


def test_cached_fp_without_inline_timing_is_timed_separately(tmp_path):
    base = [*TINY, "--set", "quantizers=[]", "--set", f"cache_dir={tmp_path / 'cache'}"]
    for run_id, iters in (("separate", 2), ("inline", 0)):
        args = ["--set", f"output_dir={tmp_path / run_id}", "--set", f"latency.iters={iters}"]
        assert main(["run", *base, *args]) == 0
    for run_id in ("separate", "inline"):  # the cache entry holds no inline timing
        (fp,) = find_records(tmp_path / run_id)
        assert fp.efficiency["latency"]["batch_size"] == 1
