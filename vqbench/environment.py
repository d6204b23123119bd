"""The environment of a run for its record: package versions, git sha, device and CPU."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def cpu_info() -> dict[str, str | None]:
    """``cpu_capability`` (``torch.backends.cpu.get_cpu_capability()``) and ``cpu_model``:
    what every run record and benchmark line names beside a time."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model()}


def git_sha() -> str | None:
    """HEAD of the checkout vqbench runs from, if it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def environment() -> dict[str, Any]:
    """Package versions, git sha, device, CPU model and ISA of this process."""
    import diffusers

    from vqbench import __version__

    return {
        "vqbench": __version__,
        "git_sha": git_sha(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **cpu_info(),
        "threads": torch.get_num_threads(),
    }
