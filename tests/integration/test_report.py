"""``vqbench report --out``: leaderboard md/CSV/HTML, plots, strips, comparability groups."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vqbench.cli import main
from vqbench.records import RunRecord
from vqbench.report.plots import pareto_front
from vqbench.types import Video
from vqbench.video import write_video

SETTINGS = [(None, None), ("rtn", (8, 8)), ("rtn", (4, 8)), ("gptq", (8, 8)), ("gptq", (4, 8))]


def _metric(value: float, hib: bool = True, version: str = "1") -> dict:
    return {
        "name": "m",
        "value": value,
        "n": 2,
        "version": version,
        "higher_is_better": hib,
        "ci": [value - 0.3, value + 0.3],
        "per_sample": [value, value],
        "params": {},
    }


def write_results(root: Path, steps: int = 4, psnr_version: str = "1") -> Path:
    """A synthetic run: FP and four quantized settings, each with two small videos."""
    gen = {
        "spec": {"steps": steps, "frames": 4, "height": 16, "width": 16, "prompts": "tiny"},
        "seeds": [0],
        "prompts_hash": "p1",
        "num_videos": 2,
    }
    rng = np.random.default_rng(0)
    fp_frames = [rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8) for _ in range(2)]
    for method, bits in SETTINGS:
        w, a = bits or (16, 16)
        label = "fp" if method is None else f"{method}-W{w}A{a}"
        quant = None
        metrics = {"clipsim": _metric(0.3 - 0.01 * (16 - w) / 4)}
        if method is not None:
            quant = {
                "name": method,
                "version": "1",
                "w_bits": w,
                "a_bits": a,
                "kernel": "real",
                "config": {},
                "config_hash": "h",
                "effective_bits": {"w_bits": w + 0.25, "a_bits": a},
            }
            metrics["psnr_fp"] = _metric(20.0 + w + (method == "gptq"), version=psnr_version)
        rec = RunRecord(
            run_id=f"run-s{steps}/{label}",
            created="2026-01-01T00:00:00",
            model={"id": "tiny", "name": "tiny", "dtype": "float32"},
            generation=gen,
            quantizer=quant,
            metrics=metrics,
            efficiency={
                "weight_bytes": 4 * 2**20 * w / 16,
                "latency": {"step": {"p50": 0.01 * w / 16 + 0.002 * (method == "gptq")}},
            },
        )
        d = root / f"run-s{steps}" / label
        rows = []
        for i, f in enumerate(fp_frames):
            noisy = np.clip(f.astype(int) + rng.integers(-40, 40, f.shape) * (w < 16), 0, 255)
            write_video(Video(noisy.astype(np.uint8), 4.0), d / "videos" / f"{i:04d}_p{i}_s0.mp4")
            rows.append(
                {
                    "prompt_id": f"p{i}",
                    "prompt": f"prompt {i}",
                    "seed": 0,
                    "video": f"{i:04d}_p{i}_s0.mp4",
                }
            )
        (d / "samples.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        rec.save(d / "run.json")
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_results(root)
    write_results(root, steps=8, psnr_version="2")  # another spec and metric version
    out = root / "report"
    assert main(["report", str(root), "--out", str(out), "--strips", "1", "-q"]) == 0
    return out


def test_leaderboard_csv_has_cis_bits_kernel_and_groups(report):
    df = pd.read_csv(report / "leaderboard.csv")
    assert len(df) == 10 and df["group"].nunique() == 2
    for col in ("psnr_fp@v1", "psnr_fp@v1_ci_lo", "psnr_fp@v2_ci_hi", "eff_w_bits", "kernel"):
        assert col in df.columns
    w4 = df[(df["setting"] == "rtn-W4A8") & df["psnr_fp@v1"].notna()].iloc[0]
    assert w4["psnr_fp@v1"] == 24.0 and w4["psnr_fp@v1_ci_lo"] == pytest.approx(23.7)
    assert w4["eff_w_bits"] == 4.25 and w4["kernel"] == "real"
    # records with a different metric version are never in the same column
    assert df.groupby("group")[["psnr_fp@v1", "psnr_fp@v2"]].count().min(axis=1).max() == 0


def test_markdown_has_one_table_per_group(report):
    md = (report / "leaderboard.md").read_text()
    assert md.count("### group") == 2
    assert "24 [23.7, 24.3]" in md and "4.25/8.00" in md and "real" in md


def test_settings_filter_and_paired_deltas(tmp_path, capsys):
    root = write_results(tmp_path / "results")
    args = ["report", str(root), "--settings", "rtn-*", "gptq-W4A8", "--paired", "rtn-W4A8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gptq-W8A8" not in out and "| fp |" not in out
    assert "paired Δ against rtn-W4A8" in out and "| Δclipsim ↑ | Δpsnr_fp ↑ |" in out
    assert "| gptq-W4A8 | 0 [0, 0] | **1 [1, 1]** |" in out  # bold: the CI excludes 0
    assert "| rtn-W8A8 | **0.01 [0.01, 0.01]** | **4 [4, 4]** |" in out
    assert main(["report", str(root), "--paired", "rtn-W2A2"]) == 2
    assert "no comparability group holds a setting 'rtn-W2A2'" in capsys.readouterr().err


def test_plots_and_strips_are_written(report):
    pngs = {p.name for p in report.glob("plots/*/*.png")}
    for name in ("bits_psnr_fp_v1.png", "latency_psnr_fp_v1.png", "memory_clipsim.png"):
        assert name in pngs, sorted(pngs)
    strips = list(report.glob("plots/*/strip_p0_s0.png"))
    assert len(strips) == 2
    from PIL import Image

    with Image.open(strips[0]) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_html_references_tables_and_existing_images(report):
    html = (report / "index.html").read_text()
    assert html.count('class="dataframe leaderboard"') == 2
    srcs = [s.split('"')[0] for s in html.split('src="')[1:]]
    assert len(srcs) >= 8 and all((report / s).is_file() for s in srcs)


def test_pareto_front():
    cost = np.array([1.0, 2.0, 3.0, 2.5])
    quality = np.array([0.5, 0.7, 0.9, 0.6])
    assert pareto_front(cost, quality, True).tolist() == [0, 1, 2]
    assert pareto_front(cost, -quality, False).tolist() == [0, 1, 2]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    """Chromium loads the page; the DOM it renders holds the tables and decoded images."""
    probe = report / "probe.html"
    script = (
        "<script>window.onload=()=>{const imgs=[...document.images];"
        "document.title='rendered:'+document.querySelectorAll('table.leaderboard tr').length+':'"
        "+imgs.length+':'+imgs.filter(i=>i.complete&&i.naturalWidth>0).length;};</script>"
    )
    probe.write_text((report / "index.html").read_text().replace("</body>", script + "</body>"))
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--allow-file-access-from-files",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    title = dom.split("<title>")[1].split("</title>")[0]
    _, rows, imgs, loaded = title.split(":")
    assert int(rows) == 12  # 2 groups x (header + 5 settings)
    assert int(imgs) >= 8 and int(loaded) == int(imgs)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*cmd[:-2], f"--screenshot={shot}", "--window-size=1200,900", probe.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_several_results_dirs_make_one_leaderboard(tmp_path, capsys):
    a, b = write_results(tmp_path / "a"), write_results(tmp_path / "b", steps=8)
    out = tmp_path / "out"
    assert main(["report", str(a), str(b), "--out", str(out), "--strips", "0", "-q"]) == 0
    df = pd.read_csv(out / "leaderboard.csv")
    assert len(df) == 2 * len(SETTINGS) and df["group"].nunique() == 2
    capsys.readouterr()
    assert main(["report", str(a), str(a)]) == 2
    assert "also in" in capsys.readouterr().err


def test_a_reparametrised_model_is_named_for_what_it_is():
    from vqbench.records import RunRecord
    from vqbench.report.tables import group_description

    model = {
        "id": "mini-outlier",
        "name": "mini-outlier",
        "dtype": "torch.float32",
        "base_model": {"id": "mini", "revision": "r"},
        "reparametrisation": {"kind": "channel-outlier fold", "channels": 4, "seed": 0},
    }
    rec = RunRecord(
        run_id="r/fp",
        created="2026-01-01T00:00:00",
        model=model,
        generation={"spec": {}, "num_videos": 1},
        quantizer=None,
        metrics={},
        efficiency={},
    )
    desc = group_description(rec)
    assert "channel-outlier fold of mini (channels=4, seed=0)" in desc
    assert "realistic activation statistics" in desc
    plain = RunRecord(**{**rec.__dict__, "model": {"id": "mini", "dtype": "torch.float32"}})
    assert "fold" not in group_description(plain)
