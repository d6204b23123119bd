"""``vqbench check``: passes on its baseline, fails with a readable diff on a planted regression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqbench.check import MetricView, load_gates, run_check, worsening
from vqbench.cli import main
from vqbench.config import ConfigError
from vqbench.records import RunRecord
from vqbench.report import write_report

GATES = """\
settings: ["*"]
defaults: {use_ci: true}
metrics:
  psnr_fp: {abs_tol: 0.5}
  fvd: {rel_tol: 0.05}
"""


def _metric(value: float, half: float, hib: bool = True, version: str = "1", n: int = 8) -> dict:
    return {
        "name": "m",
        "value": value,
        "n": n,
        "version": version,
        "higher_is_better": hib,
        "ci": [value - half, value + half],
        "per_sample": [],
        "params": {},
    }


def write_results(root: Path, psnr: float = 30.0, fvd: float = 100.0, **kw) -> Path:
    """Synthetic FP + rtn-W8A8 + rtn-W4A8 records under ``root`` (no model needed)."""
    gen = {"spec": {"steps": 4, "frames": 4}, "seeds": [0], "prompts_hash": "abc", "num_videos": 8}
    model = {"id": "mini", "name": "mini", "dtype": "float32", "revision": "r1"}
    version = kw.get("version", "1")
    for label, q, delta in [("fp", None, 0.0), ("rtn-W8A8", 8, 0.0), ("rtn-W4A8", 4, 3.0)]:
        quant = None
        metrics = {"fvd": _metric(fvd + 10 * delta, 5.0, hib=False, n=kw.get("fvd_n", 8))}
        if q is not None:
            quant = {
                "name": "rtn",
                "version": "1",
                "w_bits": q,
                "a_bits": 8,
                "kernel": "fake",
                "config": {},
                "config_hash": "h",
                "effective_bits": {"w_bits": q, "a_bits": 8},
            }
            metrics["psnr_fp"] = _metric(psnr - delta, 0.2, version=version)
        rec = RunRecord(
            run_id=f"run1/{label}",
            created="2026-01-01T00:00:00",
            model=model,
            generation=gen,
            quantizer=quant,
            metrics=metrics,
            efficiency={"weight_bytes": 1000 if q is None else 100 * q},
        )
        rec.save(root / "run1" / label / "run.json")
    return root


@pytest.fixture
def gates(tmp_path) -> Path:
    p = tmp_path / "gates.yaml"
    p.write_text(GATES)
    return p


def test_passes_on_its_own_baseline(tmp_path, gates, capsys):
    base = write_results(tmp_path / "base")
    assert main(["check", str(base), "--baseline", str(base), "--gates", str(gates)]) == 0
    assert capsys.readouterr().out.strip().startswith("PASS: 5 gated values")


def test_passes_within_tolerance_and_ci(tmp_path, gates):
    base = write_results(tmp_path / "base")
    cand = write_results(tmp_path / "cand", psnr=29.2, fvd=104.0)  # CI overlap + tolerances
    passed, text = run_check(base, gates, cand)
    assert passed, text


def test_fails_on_planted_regression_with_diff(tmp_path, gates, capsys):
    base = write_results(tmp_path / "base")
    cand = write_results(tmp_path / "cand", psnr=28.0)  # 2 dB worse: beyond CIs + 0.5 dB
    assert main(["check", str(cand), "--baseline", str(base), "--gates", str(gates)]) == 1
    out = capsys.readouterr().out
    assert "mini/rtn-W8A8" in out and "psnr_fp" in out and "REGRESSION" in out
    assert "30 [29.8, 30.2]" in out and "28 [27.8, 28.2]" in out and "-2" in out
    assert out.strip().splitlines()[-1] == "FAIL: 2 regression (of 5 gated values)"


def test_lower_is_better_regression(tmp_path, gates):
    base = write_results(tmp_path / "base")
    passed, text = run_check(base, gates, write_results(tmp_path / "cand", fvd=130.0))
    assert not passed and text.count("REGRESSION") == 3  # fvd on all three settings


def test_baseline_from_leaderboard_csv(tmp_path, gates):
    base = write_results(tmp_path / "base")
    write_report(base, tmp_path / "report", strips=0, quiet=True)
    csv = tmp_path / "report" / "leaderboard.csv"
    assert run_check(csv, gates, base)[0]
    passed, text = run_check(tmp_path / "report", gates, write_results(tmp_path / "c", psnr=27))
    assert not passed and "REGRESSION" in text


def test_missing_setting_and_version_change_fail(tmp_path, gates):
    base = write_results(tmp_path / "base")
    cand = write_results(tmp_path / "cand", version="2")
    passed, text = run_check(base, gates, cand)
    assert not passed and "INCOMPARABLE (metric version 1 -> 2)" in text
    (cand / "run1" / "rtn-W4A8" / "run.json").unlink()
    passed, text = run_check(base, gates, cand)
    assert "MISSING (setting not in the results)" in text


def test_worsening_uses_cis():
    base = MetricView(30.0, 29.0, 31.0, "1", True)
    cand = MetricView(29.0, 28.0, 30.0, "1", True)
    assert worsening(base, cand, use_ci=True) == pytest.approx(-1.0)
    assert worsening(base, cand, use_ci=False) == pytest.approx(1.0)


def test_bad_gates_are_one_line_errors(tmp_path):
    bad = tmp_path / "g.yaml"
    bad.write_text("metrics: {psnr_fp: {abs_tolerance: 1}}\n")
    with pytest.raises(ConfigError, match=r"gates.metrics.psnr_fp.abs_tolerance: unknown field"):
        load_gates(bad)
    bad.write_text("metrics: {psnr_fp: {abs_tol: -1}}\n")
    with pytest.raises(ConfigError, match="must be a finite number >= 0"):
        load_gates(bad)
    for value in (".nan", ".inf"):
        bad.write_text(f"metrics: {{psnr_fp: {{abs_tol: {value}}}}}\n")
        with pytest.raises(
            ValueError, match=r"g\.yaml: gates\.metrics\.psnr_fp\.abs_tol: must be a"
        ):
            load_gates(bad)


def test_unknown_gated_metric_is_an_error_not_a_pass(tmp_path, capsys):
    base = write_results(tmp_path / "base")
    g = tmp_path / "typo.yaml"
    g.write_text("metrics: {psnr_fp: {abs_tol: 0.5}, ssim_pf: {abs_tol: 0.01}}\n")
    with pytest.raises(
        ValueError, match=r"typo\.yaml: gates\.metrics\.ssim_pf: unknown metric.*ssim_fp"
    ):
        run_check(base, g, base)
    assert main(["check", str(base), "--baseline", str(base), "--gates", str(g)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqbench: error:") and "ssim_pf" in err and "\n" not in err


def test_gated_metric_must_be_in_baseline_and_candidate(tmp_path):
    base = write_results(tmp_path / "base")
    g = tmp_path / "g.yaml"
    g.write_text("metrics: {psnr_fp: {abs_tol: 0.5}, ssim_fp: {abs_tol: 0.01}}\n")
    with pytest.raises(ValueError, match=r"gates\.metrics\.ssim_fp: not in the baseline"):
        run_check(base, g, base)
    cand = write_results(tmp_path / "cand")
    for d in (cand / "run1").iterdir():
        rec = RunRecord.load(d / "run.json")
        rec.metrics.pop("psnr_fp", None)
        rec.save(d / "run.json")
    g.write_text("metrics: {psnr_fp: {abs_tol: 0.5}}\n")
    with pytest.raises(ValueError, match=r"gates\.metrics\.psnr_fp: not in the candidate"):
        run_check(base, g, cand)


def _fail(path: Path, reason: str) -> None:
    d = json.loads(path.read_text())
    d.update(status="failed", error=reason, metrics={})
    path.write_text(json.dumps(d))


def test_failed_setting_fails_with_its_reason(tmp_path, gates, capsys):
    base = write_results(tmp_path / "base")
    cand = write_results(tmp_path / "cand")
    _fail(cand / "run1" / "rtn-W4A8" / "run.json", "non-finite outputs at step 3")
    assert main(["check", str(cand), "--baseline", str(base), "--gates", str(gates)]) == 1
    out = capsys.readouterr().out
    assert "mini/rtn-W4A8" in out and "FAILED (non-finite outputs at step 3)" in out
    _fail(base / "run1" / "rtn-W8A8" / "run.json", "out of memory")
    with pytest.raises(ValueError, match="baseline setting mini/rtn-W8A8 failed"):
        run_check(base, gates, cand)


def test_fvd_at_different_n_is_incomparable_unless_allowed(tmp_path, gates):
    base = write_results(tmp_path / "base")
    cand = write_results(tmp_path / "cand", fvd_n=16)
    passed, text = run_check(base, gates, cand)
    assert not passed and "INCOMPARABLE (computed at N = 8 -> 16)" in text
    assert run_check(base, gates, cand, allow_different_n=True)[0]


def test_shipped_gates_file_loads():
    patterns, gates = load_gates(Path(__file__).parents[2] / "results/baselines/gates.yaml")
    assert patterns and gates and all(g.use_ci for g in gates.values())
