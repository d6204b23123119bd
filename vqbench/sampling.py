"""The sampling-step context that time-dependent precision reads (a leaf: torch/stdlib only).

Policies such as "the first k sampling steps at 8 bits" and timestep-aware statistics
(SmoothQuant/ViDiT-Q time ranges) need the current step at inference time. Reading it from
the denoiser's arguments would be model-specific, so the harness announces it instead::

    from vqbench.sampling import sampling_step
    for i, t in enumerate(scheduler.timesteps):
        with sampling_step(i, num_steps=len(scheduler.timesteps), timestep=float(t)):
            eps = denoiser(x, t, cond)

Outside any ``sampling_step`` block :class:`~quantizers.core.linear.QuantLinear` uses its
default (late-step, first time range) variant. The context is a ``ContextVar``, so threads
and async tasks each see their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class StepContext:
    """Current sampling step (0 = first, noisiest), total steps and timestep value."""

    step: int | None = None
    num_steps: int | None = None
    timestep: float | None = None


_NONE = StepContext()
_CTX: ContextVar[StepContext | None] = ContextVar("vqbench_step", default=None)


def current_step() -> StepContext:
    """The active :class:`StepContext` (all ``None`` outside :func:`sampling_step`)."""
    return _CTX.get() or _NONE


@contextmanager
def sampling_step(
    step: int | None, num_steps: int | None = None, timestep: float | None = None
) -> Iterator[StepContext]:
    """Make ``step``/``timestep`` visible to quantized layers inside the block."""
    ctx = StepContext(step, num_steps, None if timestep is None else float(timestep))
    token = _CTX.set(ctx)
    try:
        yield ctx
    finally:
        _CTX.reset(token)
