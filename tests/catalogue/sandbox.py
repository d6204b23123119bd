"""The sandbox every bad-input case runs in, and the checks every case shares (the
``sandbox`` fixture is in ``conftest.py``).

Layout under ``tmp_path``: ``cwd/`` (the working directory), ``out/`` (the output dir, seeded
with one finished result that must survive every case), ``inputs/`` (files a case writes
for itself), ``cache/`` (``VQBENCH_CACHE_DIR``) and ``home/`` (``HOME``). After a case,
nothing may exist outside ``out/``, ``inputs/`` and ``cache/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from vqbench.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED_RECORD = ROOT / "results" / "baselines" / "mini_ci" / "fp" / "run.json"

#: a fast run on the tiny random Latte (no weights needed)
TINY = [
    "--set",
    "model.name=tiny-latte",
    "--set",
    "generation.prompts=tiny",
    "--set",
    "calibration.prompts=tiny",
    "--set",
    "metrics=[psnr_fp]",
    "--set",
    "latency.enabled=false",
    "--set",
    "quantizers=[{name: rtn, w_bits: 8, a_bits: 8}]",
    "-q",
]


@dataclass
class Sandbox:
    """Paths of one case's sandbox and the seeded finished result."""

    root: Path
    out: Path
    inputs: Path
    cache: Path
    finished: Path
    finished_bytes: bytes

    def run(self, *args: str) -> list[str]:
        """``vqbench run`` argv on the tiny model into ``out`` (``args`` appended)."""
        return ["run", *TINY, "--set", f"output_dir={self.out}", *args]

    def write(self, name: str, text: str | bytes) -> Path:
        """A file under ``inputs/``."""
        p = self.inputs / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        return p

    def outside(self) -> list[str]:
        """Files written outside ``out/``, ``inputs/`` and ``cache/``."""
        allowed = (self.out, self.inputs, self.cache)
        return [
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not any(a in p.parents for a in allowed)
        ]


def make_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Lay out the sandbox under ``tmp_path`` and point cwd, HOME and the caches into it."""
    for d in ("cwd", "out", "inputs", "cache", "home"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "cache" / "mpl"))
    finished = tmp_path / "out" / "earlier" / "fp" / "run.json"
    finished.parent.mkdir(parents=True)
    shutil.copy(SEED_RECORD, finished)
    return Sandbox(
        tmp_path,
        tmp_path / "out",
        tmp_path / "inputs",
        tmp_path / "cache",
        finished,
        finished.read_bytes(),
    )


def invoke(sandbox: Sandbox, argv: list[str], capsys) -> tuple[int, list[str], str]:
    """Run the CLI in-process; returns the exit code, the stderr lines and stdout."""
    capsys.readouterr()
    code = main(argv)
    cap = capsys.readouterr()
    return code, [line for line in cap.err.splitlines() if line.strip()], cap.out


def assert_clean(sandbox: Sandbox) -> None:
    """Nothing outside the output dir, and the finished result untouched."""
    assert sandbox.outside() == []
    assert sandbox.finished.read_bytes() == sandbox.finished_bytes
    json.loads(sandbox.finished.read_text())
