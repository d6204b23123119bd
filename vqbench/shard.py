"""Sharded generation inside one run: batches split across processes, merged in order.

Launch a run with ``torchrun --nproc_per_node N -m vqbench.cli run ...``: every process loads
the model, calibrates and quantizes, and generates every N-th batch (round-robin); the videos
are gathered to all ranks and put back in the single-process order. Batches keep their
composition, so the merged videos equal a single-process run's. Rank 0 computes metrics and
writes the records. Without torchrun (``WORLD_SIZE`` unset) nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def setup(device: str) -> tuple[int, int, str]:
    """``(rank, world size, device)``; joins the process group torchrun describes, if any.

    On CUDA each rank takes ``cuda:<LOCAL_RANK>``; CPU ranks use the gloo backend.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.startswith("cuda") and ":" not in device:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def map_batches(fn: Callable[[list[Any]], list[T]], batches: list[list[Any]]) -> list[T]:
    """``fn`` over ``batches``, sharded round-robin across ranks; results in batch order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [y for b in batches for y in fn(b)]
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {j: fn(batches[j]) for j in range(rank, len(batches), world)}
    gathered: list[dict[int, list[T]] | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    merged = {j: out for part in gathered for j, out in (part or {}).items()}
    return [y for j in range(len(batches)) for y in merged[j]]
