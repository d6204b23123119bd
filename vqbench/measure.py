"""Measuring a run: per-call latency, peak memory and packed weight bytes (the one place for
timers and byte counters).

Times are in seconds. On a CUDA device :class:`StepTimer` records CUDA events around every
forward call and reads them after a synchronize; on CPU it uses ``time.perf_counter``.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def _module_device(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


class StepTimer:
    """Times every forward call of ``modules`` (one module or several, e.g. the experts of a
    two-expert denoiser) while active (a context manager).

    >>> with StepTimer(model.denoiser) as timer:
    ...     pipeline(...)
    >>> latency_summary(timer.times, warmup=2)

    ``device`` defaults to the first module's device; CUDA devices use CUDA events.
    """

    def __init__(
        self, modules: nn.Module | Sequence[nn.Module], device: torch.device | str | None = None
    ) -> None:
        self.modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        if not self.modules:
            raise ValueError("StepTimer needs at least one module")
        first = self.modules[0]
        self.device = torch.device(device) if device is not None else _module_device(first)
        self.cuda = self.device.type == "cuda"
        self._times: list[float] = []
        self._events: list[tuple[Any, Any]] = []
        self._start: float | Any = None
        self._handles: list[Any] = []

    def _pre(self, _module: nn.Module, _args: Any) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def _post(self, _module: nn.Module, _args: Any, _out: Any) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._start, end))
        else:
            self._times.append(time.perf_counter() - self._start)

    def _hooks(self, module: nn.Module) -> list[Any]:
        return [
            module.register_forward_pre_hook(self._pre),
            module.register_forward_hook(self._post),
        ]

    def __enter__(self) -> StepTimer:
        self._handles = [h for m in self.modules for h in self._hooks(m)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._flush()

    def _flush(self) -> None:
        if self._events:
            torch.cuda.synchronize(self.device)
            self._times.extend(s.elapsed_time(e) / 1000.0 for s, e in self._events)
            self._events = []

    @property
    def times(self) -> list[float]:
        """Seconds per forward call, in call order."""
        self._flush()
        return list(self._times)


class WallTimer:
    """Wall time of a block (end to end), synchronising CUDA before and after on GPU."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds: float = float("nan")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> WallTimer:
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._t0


def latency_summary(times: Sequence[float], warmup: int = 0) -> dict[str, float | int]:
    """``{"p50", "p90", "mean", "n"}`` of ``times`` after dropping the first ``warmup``.

    Raises ``ValueError`` when no timing is left after the warm-up.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    x = np.asarray(list(times)[warmup:], dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"latency_summary: {len(times)} timings, none left after warmup={warmup}")
    return {
        "p50": float(np.percentile(x, 50)),
        "p90": float(np.percentile(x, 90)),
        "mean": float(x.mean()),
        "n": int(x.size),
    }


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_peak_bytes() -> int:
    """Peak resident set size of this process (VmHWM on Linux, else ru_maxrss)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Reset the peak counters: the CUDA allocator's, or the process's VmHWM on Linux.

    Where the RSS peak cannot be reset (non-Linux), it stays the process-lifetime peak.
    """
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        log.debug("cannot reset the RSS peak; it stays the process-lifetime peak")


def peak_memory(device: torch.device | str | None = None) -> dict[str, Any]:
    """Peak memory since the last :func:`reset_peak_memory`.

    Keys: ``device``; ``peak_allocated_bytes`` and ``peak_reserved_bytes`` (CUDA allocator,
    ``None`` on CPU); ``peak_rss_bytes`` (process peak RSS, always present).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    out: dict[str, Any] = {
        "device": str(dev),
        "peak_allocated_bytes": None,
        "peak_reserved_bytes": None,
        "peak_rss_bytes": _rss_peak_bytes(),
    }
    if dev.type == "cuda":
        out["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        out["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved(dev))
    return out


def weight_bytes(module: nn.Module | Sequence[nn.Module]) -> int:
    """Bytes of the weights of ``module`` (or of several modules together).

    A submodule with a ``memory_bytes()`` method (e.g. a packed ``QuantLinear``) counts that
    and its own children are not visited; every other parameter and buffer counts at its dtype
    size. A tensor shared by several modules counts once.
    """
    seen: set[int] = set()

    def tensors_bytes(mod: nn.Module) -> int:
        total = 0
        for t in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)):
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            total += t.numel() * t.element_size()
        return total

    def visit(mod: nn.Module) -> int:
        if callable(getattr(mod, "memory_bytes", None)):
            for t in list(mod.parameters()) + list(mod.buffers()):
                seen.add(id(t))
            return int(mod.memory_bytes())
        return tensors_bytes(mod) + sum(visit(c) for c in mod.children())

    modules = [module] if isinstance(module, nn.Module) else list(module)
    return sum(visit(m) for m in modules)


def compression_ratio(fp_bytes: int, q_bytes: int) -> float:
    """``fp_bytes / q_bytes``; raises ``ValueError`` for non-positive sizes."""
    if fp_bytes <= 0 or q_bytes <= 0:
        raise ValueError(f"sizes must be positive, got fp={fp_bytes}, q={q_bytes}")
    return float(fp_bytes) / float(q_bytes)


def generate_timed(
    adapter: Any,
    pairs: list[tuple[Any, int]],
    spec: Any,
    quiet: bool,
    desc: str,
    timing: Any = None,
) -> tuple[list[Any], float, dict[str, Any] | None]:
    """Generate one video per (prompt, seed) pair with a progress bar; returns the videos,
    the wall seconds and, with an inline ``timing`` spec (``iters == 0``), the latency of
    these batches (every denoiser's calls are timed, e.g. both experts of a two-expert model).

    Under torchrun the batches are sharded across ranks (see :mod:`vqbench.shard`).
    """
    from tqdm.auto import tqdm

    from vqbench import shard

    t0 = time.perf_counter()
    batches = [pairs[i : i + spec.batch_size] for i in range(0, len(pairs), spec.batch_size)]
    rank, world, _ = shard.setup(str(adapter.device))
    mine = sum(len(b) for b in batches[rank::world])
    ends: list[float] = []
    steps: list[list[float]] = []
    denoisers = list(adapter.denoisers().values())

    def one(chunk: list[tuple[Any, int]]) -> list[Any]:
        with StepTimer(denoisers) as timer, WallTimer(adapter.device) as wall:
            out = adapter.generate(
                [p.text for p, _ in chunk],
                [s for _, s in chunk],
                spec,
                progress=bar.update,
                images=[p.image for p, _ in chunk],
            )
        ends.append(wall.seconds)
        steps.append(timer.times)
        return out

    with tqdm(total=mine, desc=desc, disable=quiet or rank > 0, unit="video") as bar:
        videos = shard.map_batches(one, batches)
    secs = time.perf_counter() - t0
    if timing is None or not timing.enabled or timing.iters != 0:
        return videos, secs, None
    warm = min(timing.warmup, len(ends) - 1)  # at least one measured batch
    latency = {
        "step": latency_summary([t for ts in steps[warm:] for t in ts]),
        "end_to_end": latency_summary(ends[warm:]),
        "batch_size": spec.batch_size,
        "warmup_batches": warm,
    }
    return videos, secs, latency


def single_video_latency(
    adapter: Any, pair: tuple[Any, int], spec: Any, timing: Any
) -> dict[str, Any]:
    """Per-step and end-to-end latency (p50/p90) of ``timing.iters`` (at least 1)
    single-video runs on one prompt, after ``timing.warmup`` warm-up runs."""
    one = dataclasses.replace(spec, batch_size=1)
    runs = timing.warmup + max(timing.iters, 1)
    ends: list[float] = []
    with StepTimer(list(adapter.denoisers().values())) as timer:
        for _ in range(runs):
            with WallTimer(adapter.device) as wall:
                adapter.generate([pair[0].text], [pair[1]], one, images=[pair[0].image])
            ends.append(wall.seconds)
    steps_per_run = max(1, len(timer.times) // runs)
    return {
        "step": latency_summary(timer.times, warmup=timing.warmup * steps_per_run),
        "end_to_end": latency_summary(ends, warmup=timing.warmup),
        "batch_size": 1,
    }
