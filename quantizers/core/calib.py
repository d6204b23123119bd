"""Calibration infrastructure: run the FP denoiser over calibration data with hooks.

- :func:`run_calibration` feeds ``target.forward`` the calibration rows bucket by bucket
  (timestep ranges), calling ``fn(name, x, bucket)`` with the 2-D input of each hooked
  linear; activation statistics (:func:`collect_act_stats`) and GPTQ Hessians
  (:func:`collect_hessians`) are built on it.
- :func:`capture_block_io` records per-block inputs and outputs for block-wise
  reconstruction, bounded by a byte budget (reservoir-sampled batches).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from quantizers.core.observers import EMAObserver, MinMaxObserver, TimeRangeObserver, bucket_of
from vqbench.types import CalibrationSet, QuantTarget

logger = logging.getLogger(__name__)


def run_calibration(
    target: QuantTarget,
    calib: CalibrationSet,
    names: list[str],
    fn: Callable[[str, torch.Tensor, int], None],
    edges: tuple[float, ...] = (),
    batch_size: int = 4,
) -> None:
    """Forward every calibration row once; ``fn(name, x [rows, in], bucket)`` per linear call."""
    mods = dict(target.module.named_modules())
    bucket = [0]

    def make_hook(name: str) -> Callable:
        def hook(_mod: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach()
            fn(name, x.reshape(-1, x.shape[-1]), bucket[0])

        return hook

    handles = [mods[n].register_forward_pre_hook(make_hook(n)) for n in names]
    ts = calib.timesteps.float().tolist()
    try:
        with torch.no_grad():
            for b in range(len(edges) + 1):
                rows = [i for i, t in enumerate(ts) if bucket_of(t, edges) == b]
                if not rows:
                    continue
                bucket[0] = b
                for batch in calib.subset(rows).batches(batch_size):
                    target.forward(batch)
    finally:
        for h in handles:
            h.remove()


def collect_act_stats(
    target: QuantTarget,
    calib: CalibrationSet,
    names: list[str],
    factory: Callable[[], MinMaxObserver],
    edges: tuple[float, ...] = (),
    batch_size: int = 4,
) -> dict[str, TimeRangeObserver]:
    """One :class:`TimeRangeObserver` (buckets from ``edges``) per linear input."""
    obs = {n: TimeRangeObserver(edges, factory) for n in names}

    def fn(name: str, x: torch.Tensor, b: int) -> None:
        obs[name].observers[b].update(x)

    run_calibration(target, calib, names, fn, edges, batch_size)
    return obs


def time_range_absmax(
    target: QuantTarget,
    calib: CalibrationSet,
    names: list[str],
    edges: tuple[float, ...],
    momentum: float,
    batch_size: int = 4,
) -> dict[str, torch.Tensor]:
    """Per-channel EMA of ``max|x|`` of each linear's input in each time range, as
    ``{"<name>.act_absmax.<r>": tensor}`` (the statistics of SmoothQuant-style smoothing);
    a range no calibration row fell in borrows the nearest range that was seen."""
    obs = collect_act_stats(
        target,
        calib,
        names,
        lambda: EMAObserver(per_channel=True, momentum=momentum),
        edges,
        batch_size,
    )
    tensors = {}
    for n in names:
        seen = [o for o in obs[n].observers if o.lo is not None]
        for r, o in enumerate(obs[n].observers):
            o = o if o.lo is not None else seen[min(r, len(seen) - 1)]
            tensors[f"{n}.act_absmax.{r}"] = o.absmax
    return tensors


class HessianSum:
    """Running GPTQ proxy Hessian ``H = 2/n * sum x x^T`` of one linear's inputs.

    Each batch's ``x^T x`` is computed in ``dtype`` and summed in float64; a float32
    product is much faster than a float64 GEMM on CPU, at float32 precision per batch.
    """

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.sum: torch.Tensor | None = None
        self.rows = 0

    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x [rows, in]``."""
        x = x.to(self.dtype)
        prod = (x.t() @ x).double()
        self.sum = prod if self.sum is None else self.sum + prod
        self.rows += x.shape[0]

    def hessian(self) -> torch.Tensor:
        """``2/n * sum x x^T`` as float32 (raises if nothing was added)."""
        if self.sum is None:
            raise RuntimeError("HessianSum: no rows added")
        return (2.0 * self.sum / self.rows).float()


def collect_hessians(
    target: QuantTarget, calib: CalibrationSet, names: list[str], batch_size: int = 4
) -> dict[str, torch.Tensor]:
    """GPTQ proxy Hessians (:class:`HessianSum`, float64 products) of each linear input."""
    sums: dict[str, HessianSum] = {}

    def fn(name: str, x: torch.Tensor, _b: int) -> None:
        sums.setdefault(name, HessianSum()).update(x)

    run_calibration(target, calib, names, fn, (), batch_size)
    return {n: h.hessian() for n, h in sums.items()}


@dataclass
class BlockIO:
    """Captured calls of one block: positional args, keyword args and outputs (detached)."""

    args: list[tuple] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple | list):
        return type(obj)(_detach(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


def _nbytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, tuple | list):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    return 0


def capture_block_io(
    target: QuantTarget,
    calib: CalibrationSet,
    blocks: list[str] | None = None,
    max_bytes: int = 512 * 2**20,
    batch_size: int = 4,
    seed: int = 0,
) -> dict[str, BlockIO]:
    """Inputs and outputs of each block in ``blocks`` (default ``target.blocks``).

    Every block keeps at most ``max_bytes / len(blocks)`` bytes: once full, calls are
    reservoir-sampled (seeded), so the kept calls are a uniform subsample of all calls.
    """
    blocks = list(blocks if blocks is not None else target.blocks)
    mods = dict(target.module.named_modules())
    budget = max_bytes // max(len(blocks), 1)
    rng = random.Random(seed)
    io = {b: BlockIO() for b in blocks}
    seen = dict.fromkeys(blocks, 0)
    cap: dict[str, int] = {}

    def make_hook(name: str) -> Callable:
        def hook(_m: torch.nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            rec = (_detach(args), _detach(kwargs), _detach(out))
            if name not in cap:
                cap[name] = max(1, budget // max(sum(_nbytes(r) for r in rec), 1))
            seen[name] += 1
            slot = len(io[name].args)
            if slot >= cap[name]:
                slot = rng.randrange(seen[name])
                if slot >= cap[name]:
                    return
            lists = (io[name].args, io[name].kwargs, io[name].outputs)
            for lst, val in zip(lists, rec, strict=True):
                if slot < len(lst):
                    lst[slot] = val
                else:
                    lst.append(val)

        return hook

    handles = [mods[b].register_forward_hook(make_hook(b), with_kwargs=True) for b in blocks]
    try:
        with torch.no_grad():
            for batch in calib.batches(batch_size):
                target.forward(batch)
    finally:
        for h in handles:
            h.remove()
    for b in blocks:
        if seen[b] > len(io[b].args):
            logger.info("%s: kept %d of %d calls (byte budget)", b, len(io[b].args), seen[b])
    return io
