"""A catalogue of bad inputs and faults, each run as a careless or hostile user would.

Every case asserts the exit code, that the error is one line naming the problem, that
nothing was written outside ``output_dir`` (and the inputs and cache dirs), and that the
finished result already in ``output_dir`` is untouched (see ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox import SEED_RECORD, TINY, Sandbox, assert_clean, invoke


@dataclass
class Case:
    """One bad input: argv (given the sandbox), expected exit code and message pattern."""

    id: str
    argv: Callable[[Sandbox], list[str]]
    pattern: str
    code: int = 2
    nothing_written: bool = True  # no new run directory under out/


def _run(*sets: str) -> Callable[[Sandbox], list[str]]:
    def make(s: Sandbox) -> list[str]:
        extra = [x for v in sets for x in ("--set", v)]
        return s.run(*extra)

    return make


def _with_file(name: str, text: str | bytes, *sets: str) -> Callable[[Sandbox], list[str]]:
    """A run whose ``--set`` values may name ``{file}``: the written input file."""

    def make(s: Sandbox) -> list[str]:
        path = s.write(name, text)
        extra = [x for v in sets for x in ("--set", v.format(file=path))]
        return s.run(*extra)

    return make


def _config(text: str) -> Callable[[Sandbox], list[str]]:
    def make(s: Sandbox) -> list[str]:
        raw = text.encode("utf-8", "surrogateescape")  # \udcff stands for a raw 0xff byte
        return ["run", "-c", str(s.write("cfg.yaml", raw)), "--set", f"output_dir={s.out}"]

    return make


RUN_CASES = [
    Case("unknown-model", _run("model.name=lattee"), r"model\.name.*did you mean 'latte'"),
    Case("unknown-quantizer", _run("quantizers=[{name: rnt}]"), r"quantizers\[0\]\.name.*rtn"),
    Case("unknown-metric", _run("metrics=[psnr_pf]"), r"metrics\[0\].*psnr_fp"),
    Case("bits-7", _run("quantizers.0.w_bits=7"), r"w_bits: 7 is not a supported bit width"),
    Case("bits-string", _run("quantizers.0.a_bits=eight"), r"a_bits: expected an integer"),
    Case("kernel", _run("quantizers.0.kernel=fast"), r"kernel: must be one of"),
    Case("quant-param", _run("quantizers.0.params.alpah=0.5"), r"quantizers\[0\].*alpah"),
    Case(
        "quant-param-range",
        _run("quantizers=[{name: smoothquant, w_bits: 8, a_bits: 8, params: {alpha: 3}}]"),
        r"alpha",
    ),
    Case(
        "quant-param-nan",
        _run("quantizers=[{name: smoothquant, params: {momentum: .nan}}]"),
        r"momentum: must be a finite number",
    ),
    Case(
        "quant-param-negative",
        _run("quantizers=[{name: quarot, params: {damp: -1.0}}]"),
        r"damp: must be >= 0",
    ),
    Case("metric-params-key", _run("metric_params.fvd={}"), r"metric_params\.fvd: not one of"),
    Case("metric-param", _run("metric_params.psnr_fp.bogus=1"), r"psnr_fp.*bogus"),
    Case("metric-params-type", _run("metric_params.psnr_fp=3"), r"metric_params\.psnr_fp"),
    Case("metric-param-nan", _run("metric_params.psnr_fp.max_db=.nan"), r"max_db: must be finite"),
    Case(
        "metric-param-range",
        _run("metrics=[ssim_fp]", "metric_params.ssim_fp.sigma=0"),
        r"sigma must be positive",
    ),
    Case(
        "metric-detector",
        _run("metrics=[fvd]", "metric_params.fvd.detector=bogus", "generation.frames=16"),
        r"unknown detector 'bogus'",
    ),
    Case(
        "metric-reference-dir",
        _run(
            "metrics=[fvd]",
            "metric_params.fvd={detector: mini, frames: 8, resolution: 32,"
            " reference_dir: /nonexistent}",
        ),
        r"reference_dir /nonexistent is not a directory",
    ),
    Case("calib-zero", _run("calibration.num_prompts=0"), r"calibration\.num_prompts: must be"),
    Case("calib-negative", _run("calibration.num_prompts=-1"), r"calibration\.num_prompts"),
    Case("gen-zero", _run("generation.num_prompts=0"), r"generation\.num_prompts: must be"),
    Case(
        "guidance-nan",
        _run("generation.guidance=.nan"),
        r"generation\.guidance: must be a finite number",
    ),
    Case("guidance-inf", _run("generation.guidance=.inf"), r"generation\.guidance"),
    Case("guidance-negative", _run("generation.guidance=-2"), r"generation\.guidance"),
    Case("fps-zero", _run("generation.fps=0"), r"generation\.fps: must be a finite number >"),
    Case("fps-nan", _run("generation.fps=.nan"), r"generation\.fps"),
    Case("steps-zero", _run("generation.steps=0"), r"generation\.steps: must be >= 1"),
    Case("steps-text", _run("generation.steps=many"), r"generation\.steps: expected an integer"),
    Case("batch-zero", _run("generation.batch_size=0"), r"generation\.batch_size"),
    Case("seeds-empty", _run("generation.seeds=[]"), r"generation\.seeds: needs at least one"),
    Case("seeds-negative", _run("generation.seeds=[-1]"), r"generation\.seeds"),
    Case("seeds-repeat", _run("generation.seeds=[1, 1]"), r"repeats a seed"),
    Case("dtype", _run("model.dtype=float64"), r"model\.dtype: must be one of"),
    Case("fp16-cpu", _run("model.dtype=float16"), r"float16 is ~400x slower on CPU"),
    Case("device-cuda", _run("model.device=cuda"), r"model\.device: 'cuda' but this machine"),
    Case("device-bogus", _run("model.device=banana"), r"model\.device: 'banana' is not"),
    Case("model-path-tiny", _run("model.path=/nonexistent/x"), r"model\.path: .* does not exist"),
    Case(
        "model-path-mini",
        _run("model.name=mini", "model.path=/nonexistent/x"),
        r"model\.path: .* does not exist",
    ),
    Case("set-list-key", _run("quantizers.x.w_bits=4"), r"quantizers\.x: quantizers is a list"),
    Case("set-into-value", _run("model.name.x=1"), r"model\.name\.x: model\.name is a value"),
    Case("set-index-range", _run("quantizers.5.w_bits=4"), r"quantizers\.5: index 5 out of range"),
    Case("set-no-equals", lambda s: [*s.run(), "--set", "model.name"], r"expected KEY=VALUE"),
    Case("unknown-field", _run("generation.stepz=3"), r"generation\.stepz: unknown field.*steps"),
    Case("duplicate-label", _run("quantizers=[{name: rtn}, {name: rtn}]"), r"used twice"),
    Case("duplicate-metric", _run("metrics=[psnr_fp, psnr_fp]"), r"names a metric twice"),
    Case("tag-traversal", _run("quantizers.0.tag=../../evil"), r"tag: '\.\./\.\./evil' is not"),
    Case("tag-slash", _run("quantizers.0.tag=a/b"), r"tag: 'a/b' is not a safe name"),
    Case("suite-missing", _run("generation.prompts=nosuch"), r"generation\.prompts: unknown"),
    Case(
        "suite-file-missing",
        _run("generation.prompts=/nonexistent/p.jsonl"),
        r"prompts file not found",
    ),
    Case("suite-empty", _with_file("e.jsonl", "\n", "generation.prompts={file}"), r"is empty"),
    Case(
        "suite-bad-json",
        _with_file("b.jsonl", '{"text": "a"}\n{oops\n', "generation.prompts={file}"),
        r"b\.jsonl:2: invalid JSON",
    ),
    Case(
        "suite-no-text",
        _with_file("t.jsonl", '{"id": "a"}\n', "generation.prompts={file}"),
        r"needs a 'text' field",
    ),
    Case(
        "suite-not-utf8",
        _with_file("u.jsonl", b'{"text": "\xff\xfe"}\n', "generation.prompts={file}"),
        r"cannot read",
    ),
    Case(
        "prompt-id-traversal",
        _with_file("p.jsonl", '{"id": "../../x", "text": "a"}\n', "generation.prompts={file}"),
        r"id: '\.\./\.\./x' is not a safe name",
    ),
    Case(
        "prompt-id-duplicate",
        _with_file(
            "d.jsonl",
            '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
            "generation.prompts={file}",
        ),
        r"prompt id 'a' appears twice",
    ),
    Case(
        "calib-suite-traversal",
        _with_file("c.jsonl", '{"id": "..", "text": "a"}\n', "calibration.prompts={file}"),
        r"calibration\.prompts.*not a safe name",
    ),
    Case("yaml-malformed", _config("model: {name: mini\n"), r"malformed YAML .* line"),
    Case("yaml-list", _config("- a\n- b\n"), r"must hold a mapping at top level"),
    Case("yaml-unknown-top", _config("modle: {name: mini}\n"), r"modle: unknown field.*model"),
    Case("yaml-python-tag", _config("model: !!python/object:os.system {}\n"), r"malformed YAML"),
    Case(
        "config-missing",
        lambda s: ["run", "-c", str(s.inputs / "none.yaml")],
        r"config: file not found",
    ),
    Case(
        "output-dir-is-file",
        lambda s: [*s.run(), "--set", f"output_dir={s.write('f', 'x')}"],
        r"output_dir: .* exists and is not a directory",
    ),
    Case(
        "cache-dir-is-file",
        lambda s: [*s.run(), "--set", f"cache_dir={s.write('c', 'x')}"],
        r"cache_dir: .* is not a directory",
    ),
    Case("fvd-frames", _run("metrics=[fvd]", "generation.frames=1"), r"metrics\.fvd"),
    Case(
        "clip-temp-one-frame",
        _run("metrics=[clip_temp]", "generation.frames=1", "metric_params.clip_temp.backbone=mini"),
        r"metrics\.clip_temp",
    ),
    Case(
        "i3d-weights-missing",
        _run(
            "metrics=[fvd_fp]",
            "metric_params.fvd_fp.detector=i3d_torchscript",
            "generation.frames=16",
        ),
        r"metrics\.fvd_fp: .*i3d",
    ),
    Case(
        "fvd-no-reference",
        _run("metrics=[fvd]", "metric_params.fvd={detector: mini, frames: 8, resolution: 32}"),
        r"metrics\.fvd: needs real reference videos.*reference_dir",
    ),
    Case("scene-on-real-model", _run("metrics=[scene_consistency]"), r"scene_consistency.*ag2"),
    Case(
        "attributes-on-real-model",
        _run("metrics=[attribute_accuracy]"),
        r"metrics\.attribute_accuracy: needs prompts that carry the attributes",
    ),
    Case(
        "imaging-quality-bad-sigma0",
        _run("metrics=[imaging_quality]", "metric_params.imaging_quality.sigma0=0"),
        r"imaging_quality: sigma0 must be",
    ),
    Case(
        "mini-frames",
        _run("model.name=mini", "generation.frames=9"),
        r"generation\.frames: the mini generator was trained on 8",
    ),
    Case(
        "mini-size",
        _run("model.name=mini", "generation.height=64", "generation.width=64"),
        r"generation\.height: the mini generator was trained on 32",
    ),
    Case(
        "guidance-bool",
        _run("generation.guidance=true"),
        r"generation\.guidance: expected a number",
    ),
    Case(
        "yaml-duplicate-key", _config("model: {name: mini}\nmodel: {name: x}\n"), r"appears twice"
    ),
    Case("yaml-not-utf8", _config("model: {name: \udcff}\n"), r"not UTF-8"),
    Case("flag-not-int", lambda s: [*s.run(), "--limit", "abc"], r"--limit: invalid int value"),
    Case("unknown-flag", lambda s: [*s.run(), "--stepz", "3"], r"unrecognized arguments: --stepz"),
    Case("unknown-command", lambda s: ["bogus"], r"invalid choice: 'bogus'"),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda c: c.id)
def test_bad_run_input(case, sandbox, capsys):
    try:
        code, err, _ = invoke(sandbox, case.argv(sandbox), capsys)
    except SystemExit as e:  # argument errors exit from argparse
        code, err = e.code, [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == case.code, err
    assert len(err) == 1, err
    assert err[0].startswith("vqbench: error: ")
    assert re.search(case.pattern, err[0]), err[0]
    assert_clean(sandbox)
    if case.nothing_written:  # validation ran before any work
        assert sorted(p.name for p in sandbox.out.iterdir()) == ["earlier"]


def test_unwritable_cache_dir_is_refused_before_work(sandbox, capsys, monkeypatch):
    blocker = sandbox.write("not-a-dir", "x")
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(blocker / "sub"))
    code, err, _ = invoke(sandbox, sandbox.run(), capsys)
    assert code == 2 and len(err) == 1 and "VQBENCH_CACHE_DIR" in err[0], err
    assert_clean(sandbox)


@pytest.mark.parametrize(
    ("var", "value"), [("VQBENCH_FUSED", "fast"), ("VQBENCH_KERNEL_BACKEND", "cutlass")]
)
def test_bad_real_mode_switch_is_refused_before_work(sandbox, capsys, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    code, err, _ = invoke(sandbox, sandbox.run("--set", "quantizers.0.kernel=real"), capsys)
    assert code == 2 and len(err) == 1, err
    assert f"{var}: {value!r} is not one of" in err[0], err
    assert_clean(sandbox)
    assert sorted(p.name for p in sandbox.out.iterdir()) == ["earlier"]


def test_validate_lists_every_problem(sandbox, capsys):
    argv = _run("generation.guidance=.nan", "generation.fps=0", "quantizers.0.tag=../x")(sandbox)
    code, err, _ = invoke(sandbox, ["validate", *argv[1:]], capsys)
    assert code == 2 and len(err) == 3
    assert {re.search(r"(guidance|fps|tag)", e).group(1) for e in err} == {"guidance", "fps", "tag"}
    assert_clean(sandbox)


# ---- faults during a run ----------------------------------------------------------------------
def _register_nan_quantizer(monkeypatch) -> None:
    import torch

    from quantizers.rtn import RTNQuantizer
    from vqbench.registry import QUANTIZERS

    class NaNQuantizer(RTNQuantizer):
        name = "nan_rtn"

        def quantize(self, target, state):
            module = super().quantize(target, state)
            module.register_forward_hook(lambda m, a, out: _poison(out, torch))
            return module

    monkeypatch.setitem(QUANTIZERS._entries, "nan_rtn", NaNQuantizer)


def _poison(out, torch):
    t = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
    t.copy_(torch.full_like(t, float("nan")))


def test_non_finite_model_is_recorded_failed_and_check_fails_on_it(sandbox, capsys, monkeypatch):
    _register_nan_quantizer(monkeypatch)
    argv = sandbox.run(
        "--set",
        "quantizers=[{name: nan_rtn, w_bits: 8, a_bits: 8}, {name: rtn, w_bits: 8, a_bits: 8}]",
    )
    code, err, _ = invoke(sandbox, argv, capsys)
    assert code == 1
    assert len(err) == 1 and re.search(r"nan_rtn-W8A8 failed: .*non-finite", err[0]), err
    (run_dir,) = [p for p in sandbox.out.iterdir() if p.name != "earlier"]
    failed = json.loads((run_dir / "nan_rtn-W8A8" / "run.json").read_text())
    assert (
        failed["status"] == "failed" and failed["metrics"] == {} and "non-finite" in failed["error"]
    )
    ok = json.loads((run_dir / "rtn-W8A8" / "run.json").read_text())
    assert ok["status"] == "ok" and ok["metrics"]["psnr_fp"]["value"] > 20  # the run went on
    gates = sandbox.write("gates.yaml", "metrics: {psnr_fp: {abs_tol: 1}}\n")
    base = sandbox.inputs / "base"
    (base / "nan_rtn-W8A8").mkdir(parents=True)
    (base / "nan_rtn-W8A8" / "run.json").write_text(
        json.dumps({**ok, "quantizer": failed["quantizer"]})
    )
    code, _, out = invoke(
        sandbox, ["check", str(run_dir), "--baseline", str(base), "--gates", str(gates)], capsys
    )
    assert code == 1 and "FAILED" in out
    assert_clean(sandbox)


def test_corrupt_cache_entries_are_rebuilt(sandbox, capsys):
    argv = sandbox.run("--set", f"cache_dir={sandbox.cache / 'runs'}")
    assert invoke(sandbox, argv, capsys)[0] == 0
    first = {p.parent.name: p.read_text() for p in sandbox.out.rglob("run.json")}
    for npy in (sandbox.cache / "runs" / "fp_videos").rglob("*.npy"):
        npy.write_bytes(b"garbage")  # a corrupt video
    for st in (sandbox.cache / "runs" / "calibration").rglob("*.safetensors"):
        st.write_bytes(st.read_bytes()[:100])  # a truncated calibration set
    code, err, _ = invoke(sandbox, argv, capsys)
    assert code == 0, err
    runs = sorted(p for p in sandbox.out.iterdir() if p.name != "earlier")
    second = json.loads((runs[-1] / "rtn-W8A8" / "run.json").read_text())
    assert second["metrics"]["psnr_fp"]["value"] == pytest.approx(
        json.loads(first["rtn-W8A8"])["metrics"]["psnr_fp"]["value"], abs=1e-6
    )
    assert_clean(sandbox)


def test_full_disk_leaves_no_temp_files(sandbox, capsys):
    import subprocess

    disk = sandbox.out / "full"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk: only empty files fit
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        code, err, _ = invoke(sandbox, [*sandbox.run(), "--set", f"output_dir={disk}"], capsys)
        assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
        assert [p.name for p in disk.rglob("*") if ".tmp" in p.name] == []
        assert not list(disk.rglob("run.json"))  # no record of a run whose videos are missing
        fds = {p: p.resolve() for p in Path("/proc/self/fd").iterdir() if p.exists()}
        assert not [f for f in fds.values() if str(f).startswith(str(disk))]  # none left open
    finally:
        subprocess.run(["umount", "-l", str(disk)])
    assert_clean(sandbox)


def test_read_only_output_dir(sandbox, capsys):
    import subprocess

    ro = sandbox.out / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        code, err, _ = invoke(sandbox, [*sandbox.run(), "--set", f"output_dir={ro}"], capsys)
        assert code == 2 and len(err) == 1 and re.search(r"output_dir: cannot write", err[0]), err
    finally:
        subprocess.run(["umount", "-l", str(ro)])
    assert_clean(sandbox)


def test_crafted_pickle_checkpoint_is_refused(sandbox, capsys):
    import torch

    marker = sandbox.inputs / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    ckpt_dir = sandbox.inputs / "train"
    ckpt_dir.mkdir()
    torch.save({"transformer": Payload()}, ckpt_dir / "ckpt.pt")
    argv = ["mini", "train", "generator", "--out", str(ckpt_dir), "--resume", "--steps", "1"]
    code, err, _ = invoke(sandbox, argv, capsys)
    assert code == 2 and len(err) == 1 and "ckpt.pt" in err[0], err
    assert not marker.exists()
    assert_clean(sandbox)


# ---- records, reports and gates ------------------------------------------------------------
def _results_with(sandbox: Sandbox, mutate: Callable[[dict], object]) -> str:
    rec = json.loads(SEED_RECORD.read_text())
    d = sandbox.inputs / "res" / "r" / "fp"
    d.mkdir(parents=True)
    out = mutate(rec)
    path = d / "run.json"
    if isinstance(out, bytes):
        path.write_bytes(out)
    elif out == "dir":
        path.mkdir()
    else:
        path.write_text(json.dumps(rec))
    return str(sandbox.inputs / "res")


REPORT_CASES = [
    ("run-json-is-dir", lambda r: "dir", r"run\.json"),
    ("run-json-not-utf8", lambda r: b"\xff\xfe{", r"run\.json"),
    ("run-json-truncated", lambda r: b'{"run_id": ', r"run\.json: not valid JSON"),
    ("metric-value-string", lambda r: r["metrics"]["fvd"].update(value="high"), r"value"),
    ("metrics-not-object", lambda r: r.update(metrics=[1, 2]), r"metrics: expected dict"),
    ("status-bogus", lambda r: r.update(status="maybe"), r"status: must be one of"),
    ("future-schema", lambda r: r.update(schema_version=99), r"schema_version: 99 is newer"),
    ("value-nan", lambda r: r["metrics"]["fvd"].update(value=float("nan")), r"finite number"),
    ("value-null", lambda r: r["metrics"]["fvd"].update(value=None), r"fvd\.value"),
    ("n-text", lambda r: r["metrics"]["fvd"].update(n="ten"), r"fvd\.n: expected int"),
    ("ci-text", lambda r: r["metrics"]["fvd"].update(ci="wide"), r"fvd\.ci: expected null"),
    ("spec-text", lambda r: r["generation"].update(spec="x"), r"generation\.spec"),
    ("seeds-text", lambda r: r["generation"].update(seeds=["a"]), r"generation\.seeds"),
    ("bytes-text", lambda r: r["efficiency"].update(weight_bytes="big"), r"weight_bytes"),
    ("failed-with-metrics", lambda r: r.update(status="failed"), r"failed setting carries no"),
]


@pytest.mark.parametrize("case", REPORT_CASES, ids=lambda c: c[0])
def test_bad_record_in_report(case, sandbox, capsys):
    _, mutate, pattern = case
    code, err, _ = invoke(sandbox, ["report", _results_with(sandbox, mutate)], capsys)
    assert code == 2 and len(err) == 1 and re.search(pattern, err[0]), err
    assert_clean(sandbox)


def test_report_missing_results_dir(sandbox, capsys):
    code, err, _ = invoke(sandbox, ["report", str(sandbox.inputs / "nope")], capsys)
    assert code == 2 and len(err) == 1 and "results dir not found" in err[0]


@pytest.fixture(scope="module")
def tiny_template(tmp_path_factory):
    """One finished tiny run, made once per module (each case works on a copy)."""
    from vqbench.cli import main

    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VQBENCH_CACHE_DIR", str(root / "cache"))
        mp.setenv("MPLCONFIGDIR", str(root / "cache" / "mpl"))
        assert main([*make_sandbox_run_args(root / "out")]) == 0
    (run_dir,) = list((root / "out").iterdir())
    return run_dir


def make_sandbox_run_args(out) -> list[str]:
    return ["run", *TINY, "--set", f"output_dir={out}"]


@pytest.fixture
def tiny_results(sandbox, tiny_template):
    import shutil

    return shutil.copytree(tiny_template, sandbox.out / tiny_template.name)


def test_report_refuses_video_paths_outside_the_record(sandbox, tiny_results, capsys):
    samples = tiny_results / "rtn-W8A8" / "samples.jsonl"
    rows = [json.loads(x) for x in samples.read_text().splitlines()]
    rows[0]["video"] = "../../../../etc/passwd"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = sandbox.out / "report"
    code, err, _ = invoke(
        sandbox, ["report", str(tiny_results), "--out", str(report), "-q"], capsys
    )
    assert code == 2 and len(err) == 1 and re.search(r"samples\.jsonl.*not a safe name", err[0]), (
        err
    )
    assert_clean(sandbox)


def test_report_on_a_corrupt_mp4_is_one_line(sandbox, tiny_results, capsys):
    for mp4 in (tiny_results / "rtn-W8A8" / "videos").glob("*.mp4"):
        mp4.write_bytes(b"not a video")
    report = sandbox.out / "report"
    code, err, _ = invoke(
        sandbox, ["report", str(tiny_results), "--out", str(report), "-q"], capsys
    )
    assert code == 2 and len(err) == 1 and "cannot decode video" in err[0], err
    assert_clean(sandbox)


GATE_CASES = [
    ("gate-typo", "metrics: {psnr_fp: {abs_tol: 1}, ssim_pf: {abs_tol: 0.01}}\n", r"ssim_pf"),
    ("gate-nan-tol", "metrics: {psnr_fp: {abs_tol: .nan}}\n", r"abs_tol"),
    ("gate-negative-tol", "metrics: {psnr_fp: {rel_tol: -1}}\n", r"rel_tol"),
    ("gate-not-in-baseline", "metrics: {clipsim: {abs_tol: 1}}\n", r"clipsim"),
    ("gate-bad-yaml", "metrics: {psnr_fp: \n", r"gates"),
]


@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: c[0])
def test_bad_gates(case, sandbox, tiny_results, capsys):
    _, text, pattern = case
    gates = sandbox.write("gates.yaml", text)
    argv = ["check", str(tiny_results), "--baseline", str(tiny_results), "--gates", str(gates)]
    code, err, _ = invoke(sandbox, argv, capsys)
    assert code == 2 and len(err) == 1 and re.search(pattern, err[0]), err
    assert_clean(sandbox)


def test_gate_catches_a_regression_and_a_missing_setting(sandbox, capsys):
    import shutil

    two = "quantizers=[{name: rtn, w_bits: 8, a_bits: 8}, {name: rtn, w_bits: 4, a_bits: 8}]"
    assert invoke(sandbox, sandbox.run("--set", two), capsys)[0] == 0
    (tiny_results,) = [p for p in sandbox.out.iterdir() if p.name != "earlier"]
    gates = sandbox.write("gates.yaml", "metrics: {psnr_fp: {abs_tol: 0.5, use_ci: false}}\n")
    cand = sandbox.out / "cand"
    shutil.copytree(tiny_results, cand)
    rec_path = cand / "rtn-W8A8" / "run.json"
    rec = json.loads(rec_path.read_text())
    rec["metrics"]["psnr_fp"]["value"] -= 10  # a 10 dB regression
    rec_path.write_text(json.dumps(rec))
    argv = ["check", str(cand), "--baseline", str(tiny_results), "--gates", str(gates)]
    code, _, out = invoke(sandbox, argv, capsys)
    assert code == 1 and "REGRESSION" in out
    shutil.rmtree(cand / "rtn-W8A8")
    code, _, out = invoke(sandbox, argv, capsys)
    assert code == 1 and "MISSING" in out
    assert_clean(sandbox)
