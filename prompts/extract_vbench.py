"""Rebuild the VBench prompt suites from the ``vbench`` wheel (its ``VBench_full_info.json``).

Usage (no install; the wheel is only read)::

    pip download vbench==0.1.5 --no-deps -d /tmp/vb
    python prompts/extract_vbench.py /tmp/vb/vbench-0.1.5-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

SUITES = {  # suite file stem -> VBench dimension
    "vbench_scene": "scene",
    "vbench_overall_consistency": "overall_consistency",
    "vbench_subject_consistency": "subject_consistency",
}
SOURCE = "VBench {version} VBench_full_info.json (dimension: {dim})"
LICENSE = "Apache-2.0"


def extract(wheel: Path, out_dir: Path) -> dict[str, int]:
    """Write one JSONL suite per dimension; returns the prompt count of each suite."""
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as z:
        info = json.loads(z.read("vbench/VBench_full_info.json"))
    counts = {}
    for stem, dim in SUITES.items():
        rows = []
        for entry in info:
            if dim not in entry["dimension"]:
                continue
            row = {"id": f"{stem}-{len(rows):03d}", "text": entry["prompt_en"]}
            if dim == "scene":
                row["scene"] = entry["auxiliary_info"]["scene"]["scene"]["scene"]
            row["source"] = SOURCE.format(version=version, dim=dim)
            row["license"] = LICENSE
            rows.append(row)
        (out_dir / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[stem] = len(rows)
    return counts


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="path to vbench-*.whl")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent, help="output dir")
    args = ap.parse_args()
    for stem, n in extract(args.wheel, args.out).items():
        print(f"{stem}: {n} prompts")


if __name__ == "__main__":
    main()
