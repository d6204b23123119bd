"""The report as a reader meets it: metric order, saturation, FP dtype, storage, fake-kernel
latency, failed settings, difference strips, label placement, paper-table exports."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from tests.integration.test_report import write_results
from vqbench.cli import main
from vqbench.config import ConfigError
from vqbench.records import RunRecord
from vqbench.report import markdown_table, write_report
from vqbench.report.display import metric_order, storage_label
from vqbench.report.export import export, latex_number
from vqbench.report.plots import DIFF_GAIN, latency_rows, place_labels, strip_rows
from vqbench.report.tables import leaderboard


def _records(root: Path) -> list[RunRecord]:
    return [RunRecord.load(p) for p in sorted(root.rglob("run.json"))]


def _fail(root: Path, label: str, reason: str) -> None:
    p = next(root.rglob(f"{label}/run.json"))
    d = json.loads(p.read_text())
    d.update(status="failed", error=reason, metrics={})
    p.write_text(json.dumps(d))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = write_results(tmp_path_factory.mktemp("results"))
    _fail(root, "gptq-W8A8", "non-finite outputs at step 2")
    return root


def test_metrics_ordered_by_separation_saturated_last(results):
    from vqbench.records import RunRecord

    df = leaderboard([RunRecord.load(p) for p in sorted(results.rglob("run.json"))])
    # psnr_fp: 24..29 dB with +-0.3 CIs separates; clipsim: 0.27..0.30 with +-0.3 CIs does not
    assert metric_order(df[df["status"] == "ok"]) == [("psnr_fp", False), ("clipsim", True)]
    md = markdown_table([RunRecord.load(p) for p in sorted(results.rglob("run.json"))])
    head = next(line for line in md.splitlines() if line.startswith("| setting"))
    assert head.index("psnr_fp ↑") < head.index("clipsim ↑ (saturated)")


def test_fp_dtype_storage_and_failed_rows(results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out), "--strips", "1", "-q"]) == 0
    md = (out / "leaderboard.md").read_text()
    fp_row = next(line for line in md.splitlines() if line.startswith("| fp |"))
    assert "| FP32 |" in fp_row and "16/16" not in md
    assert "| failed: non-finite outputs at step 2 |" in md
    failed = next(line for line in md.splitlines() if line.startswith("| gptq-W8A8"))
    assert "24" not in failed.split("failed:")[1]  # no numbers for a failed setting
    assert storage_label({"method": "rtn", "w_bits": 6}) == "int8 (6-bit values)"
    assert storage_label({"method": "rtn", "w_bits": 8}) == "int8"
    assert storage_label({"method": "rtn", "w_bits": 3}) == "int4, 2/byte (3-bit values)"
    assert storage_label({"method": "fp", "dtype": "torch.float32"}) == "fp32"
    html = (out / "index.html").read_text()
    captions = [c.split("<")[0] for c in html.split("<figcaption>")[1:]]
    assert captions[0].startswith("1. psnr_fp") and "2. clipsim (saturated)" in captions[-2]
    assert "W6 and W8 weigh the same" in html and "white-space: nowrap" in html


def test_latency_only_from_real_kernels_else_watermarked():
    df = pd.DataFrame(
        {"method": ["fp", "rtn", "rtn"], "kernel": ["fp", "fake", "real"], "x": [1, 2, 3]}
    )
    rows, fake = latency_rows(df)
    assert rows["kernel"].tolist() == ["fp", "real"] and not fake
    rows, fake = latency_rows(df[df["kernel"] != "real"])
    assert len(rows) == 2 and fake


def test_fake_kernel_report_names_the_overhead(tmp_path):
    root = write_results(tmp_path / "r")
    for p in root.rglob("run.json"):
        d = json.loads(p.read_text())
        if d["quantizer"]:
            d["quantizer"]["kernel"] = "fake"
        p.write_text(json.dumps(d))
    write_report(root, tmp_path / "out", strips=0, quiet=True)
    html = (tmp_path / "out" / "index.html").read_text()
    assert "fake quantization overhead, not speed" in html and " †" in html


def test_strip_rows_hold_amplified_differences(results):
    settings = [
        (lab, next(results.rglob(f"{lab}/run.json")).parent)
        for lab in ("fp", "rtn-W8A8", "rtn-W4A8")
    ]
    rows, prompt = strip_rows(settings, ("p0", 0), frames=4)
    assert [n.split(" (")[0] for n, _ in rows] == [
        "fp",
        "rtn-W8A8",
        f"|rtn-W8A8 - FP| x{DIFF_GAIN}",
        "rtn-W4A8",
        f"|rtn-W4A8 - FP| x{DIFF_GAIN}",
    ]
    fp, q, diff = rows[0][1], rows[1][1], rows[2][1]
    expect = np.clip(np.abs(q.astype(int) - fp.astype(int)) * DIFF_GAIN, 0, 255)
    assert np.array_equal(diff, expect.astype(np.uint8)) and prompt == "prompt 0"


def test_labels_do_not_overlap():
    fig, ax = plt.subplots(figsize=(4, 3))
    rng = np.random.default_rng(0)
    pts = [(float(x), float(y), f"setting-{i}") for i, (x, y) in enumerate(rng.random((25, 2)))]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    fig.tight_layout()
    placed = place_labels(ax, pts)
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts]
    assert placed == len(boxes) >= 5
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def test_report_from_a_leaderboard_csv(results, tmp_path):
    write_report(results, tmp_path / "a", strips=0, quiet=True)
    files = write_report(tmp_path / "a" / "leaderboard.csv", tmp_path / "b", quiet=True)
    a = pd.read_csv(tmp_path / "a" / "leaderboard.csv")
    b = pd.read_csv(files["csv"])
    pd.testing.assert_frame_equal(a, b)
    assert "no frame strips" in (tmp_path / "b" / "index.html").read_text()


def test_fvd_at_different_n_is_refused_unless_allowed(tmp_path, capsys):
    root = write_results(tmp_path / "r")
    for i, p in enumerate(sorted(root.rglob("run.json"))):
        d = json.loads(p.read_text())
        d["metrics"]["fvd"] = {
            "name": "fvd", "value": 10.0, "n": 8 + 8 * (i == 1), "version": "3",
            "higher_is_better": False, "ci": [5.0, 15.0], "per_sample": [], "params": {},
        }  # fmt: skip
        p.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match=r"fvd: group \w+ holds values computed at N = 16, 8"):
        markdown_table(_records(root))
    assert main(["report", str(root)]) == 2
    assert "--allow-different-n" in capsys.readouterr().err
    assert main(["report", str(root), "--allow-different-n"]) == 0


def test_format_with_out_prints_tables_and_writes_the_report(results, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(results), "--format", "md", "--out", str(out), "-q"]) == 0
    assert "| setting | precision |" in capsys.readouterr().out
    assert (out / "index.html").is_file()


def test_export_formats(results, capsys):
    from vqbench.records import RunRecord

    recs = [RunRecord.load(p) for p in sorted(results.rglob("run.json"))]
    md = export(recs, "md")
    assert "| setting | precision | psnr_fp ↑ | clipsim ↑ (saturated) |" in md
    assert "**28** [27.7, 28.3]" in md  # gptq-W8A8 (29 dB) failed: rtn-W8A8 is the best
    rows = list(csv.reader(io.StringIO(export(recs, "csv"))))
    head = rows[0]
    assert head[:3] == ["table", "setting", "precision"] and "psnr_fp best" in head
    best = [r[1] for r in rows[1:] if r[head.index("psnr_fp best")] == "True"]
    assert best == ["rtn-W8A8"]  # gptq-W8A8 (29 dB) failed, so rtn-W8A8 (28 dB) is best
    paired = export(recs, "md", paired="fp")
    assert "Δclipsim ↑" in paired and "gptq-W8A8 (failed: non-finite outputs at step 2)" in paired
    assert main(["report", str(results), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"psnr\_fp $\uparrow$" in tex and r"$\mathbf{28}$" in tex and r"\toprule" in tex
    assert latex_number("1.5e-05") == r"$1.5\times10^{-5}$"


@pytest.mark.skipif(shutil.which("chktex") is None, reason="chktex not installed")
def test_latex_export_passes_chktex(results, tmp_path):
    from vqbench.records import RunRecord

    recs = [RunRecord.load(p) for p in sorted(results.rglob("run.json"))]
    (tmp_path / "lb.tex").write_text(export(recs, "latex"))
    (tmp_path / "paired.tex").write_text(export(recs, "latex", paired="fp"))
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
    doc += "\\input{lb}\n\n\\input{paired}\n\\end{document}\n"
    (tmp_path / "doc.tex").write_text(doc)
    run = subprocess.run(
        ["chktex", "-q", "lb.tex", "paired.tex", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout.strip() == "", run.stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_with_failures_and_strips_renders_in_chromium(results, tmp_path):
    out = tmp_path / "report"
    write_report(results, out, strips=1, quiet=True)
    probe = out / "probe.html"
    script = (
        "<script>window.onload=()=>{const imgs=[...document.images];"
        "document.title='r:'+[...document.querySelectorAll('td')].filter("
        "t=>t.textContent.startsWith('failed:')).length+':'+document.querySelectorAll("
        "'figure.strip').length+':'+imgs.filter(i=>i.complete&&i.naturalWidth>0).length"
        "+':'+imgs.length;};</script>"
    )
    probe.write_text((out / "index.html").read_text().replace("</body>", script + "</body>"))
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    cmd += ["--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'u'}"]
    cmd += ["--virtual-time-budget=5000"]
    dom = subprocess.run(
        [*cmd, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    _, failed, strips, loaded, total = dom.split("<title>")[1].split("</title>")[0].split(":")
    assert (int(failed), int(strips)) == (1, 1) and int(loaded) == int(total) >= 7
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*cmd, f"--screenshot={shot}", "--window-size=1200,1600", probe.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000
