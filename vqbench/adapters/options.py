"""Pipeline options for big models: CPU offload, VAE tiling/slicing, per-step progress.

``ModelOptions.from_spec(cfg.model, quiet=cfg.quiet)`` reads them from ``ModelSpec``
(``offload``, ``vae_tiling``, ``vae_slicing``, ``step_progress``); :meth:`ModelOptions.apply`
sets them on a loaded diffusers pipeline. Sequential offload keeps layer weights on the meta
device between calls, so it serves FP-only runs (the config refuses it with quantizers).
:class:`StepProgress` shows a tqdm bar over the sampling steps of one pipeline call (through
``callback_on_step_end``) when asked, or in ``auto`` mode when steps x batch is large;
never when quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "sequential")
STEP_PROGRESS: tuple[str, ...] = ("auto", "on", "off")

AUTO_PROGRESS_MIN = 200  # steps x samples of one pipeline call from which auto shows a bar


def model_option_problems(model: Any, quantized: bool) -> list[str]:
    """One-line problems (field first) of a ``ModelSpec``'s options; ``quantized``: the run
    quantizes (config validation calls this before any model is loaded)."""
    out = []
    if model.offload not in OFFLOAD_MODES:
        out.append(f"model.offload: must be one of {OFFLOAD_MODES}, got {model.offload!r}")
    elif model.offload != "none" and str(model.device) == "cpu":
        out.append("model.offload: CPU offload needs an accelerator model.device; use none")
    elif model.offload == "sequential" and quantized:
        out.append(
            "model.offload: sequential offload keeps layer weights off-device, which quantizers "
            "cannot read or replace; use model offload"
        )
    if model.step_progress not in STEP_PROGRESS:
        out.append(
            f"model.step_progress: must be one of {STEP_PROGRESS}, got {model.step_progress!r}"
        )
    return out


@dataclass(frozen=True)
class ModelOptions:
    """How a loaded pipeline runs (see module docstring)."""

    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    step_progress: str = "auto"
    quiet: bool = False

    @classmethod
    def from_spec(cls, spec: Any, quiet: bool = False) -> ModelOptions:
        """From a ``ModelSpec`` (fields missing there keep their defaults)."""
        return cls(
            offload=getattr(spec, "offload", "none"),
            vae_tiling=bool(getattr(spec, "vae_tiling", False)),
            vae_slicing=bool(getattr(spec, "vae_slicing", False)),
            step_progress=getattr(spec, "step_progress", "auto"),
            quiet=quiet,
        )

    def apply(self, pipe: Any, device: torch.device) -> None:
        """Move ``pipe`` to ``device``, or offload it there; enable VAE tiling/slicing."""
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"model.offload: must be one of {OFFLOAD_MODES}, got {self.offload!r}")
        if self.offload == "none":
            pipe.to(device)
        elif device.type == "cpu":
            raise ValueError("model.offload: offloading needs an accelerator device; use none")
        elif self.offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
        vae = getattr(pipe, "vae", None)
        for flag, method in (
            (self.vae_tiling, "enable_tiling"),
            (self.vae_slicing, "enable_slicing"),
        ):
            if not flag:
                continue
            if not hasattr(vae, method):
                field = "vae_tiling" if method == "enable_tiling" else "vae_slicing"
                raise ValueError(f"model.{field}: this pipeline's VAE has no {method}(); unset it")
            getattr(vae, method)()

    def shows_steps(self, steps: int, samples: int) -> bool:
        """Whether a pipeline call of ``steps`` x ``samples`` gets a per-step bar."""
        if self.quiet or self.step_progress == "off":
            return False
        return self.step_progress == "on" or steps * samples >= AUTO_PROGRESS_MIN


class StepProgress:
    """Context manager yielding a ``callback_on_step_end`` that ticks a tqdm bar.

    It chains ``inner`` (another step callback, e.g. trajectory capture). Yields ``inner``
    unchanged when no bar is shown.
    """

    def __init__(
        self,
        options: ModelOptions,
        steps: int,
        samples: int,
        inner: Callable[..., dict[str, Any]] | None,
    ) -> None:
        self.inner = inner
        self.bar = None
        if options.shows_steps(steps, samples):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, desc=f"sampling x{samples}", unit="step", leave=False)

    def _callback(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        assert self.bar is not None
        self.bar.update(1)
        return self.inner(pipe, i, t, kwargs) if self.inner is not None else {}

    def __enter__(self) -> Callable[..., dict[str, Any]] | None:
        return self._callback if self.bar is not None else self.inner

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
