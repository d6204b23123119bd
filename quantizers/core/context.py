"""The sampling-step context, re-exported from the leaf module :mod:`vqbench.sampling`.

The harness (adapters) announces the current step; quantized layers read it. It lives in
``vqbench.sampling`` so that adapters need not import ``quantizers``.
"""

from vqbench.sampling import StepContext, current_step, sampling_step

__all__ = ["StepContext", "current_step", "sampling_step"]
