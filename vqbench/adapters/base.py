"""The ``ModelAdapter`` contract: generation, trajectory capture, layer roles, token layouts."""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from vqbench.config import GenerationSpec
from vqbench.types import CalibrationSet, QuantTarget, SampleContext, TokenLayout, Video

DTYPE_MAP = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelAdapter(ABC):
    """Wraps one text-to-video pipeline for vqbench.

    Subclasses implement loading, sampling (with and without trajectory capture), layer roles
    and token layouts. Everything model-specific (module names, call signatures, token
    arrangement) lives in the subclass, never in a quantizer or metric.
    """

    name: str = ""
    #: defaults for ``GenerationSpec`` fields left as ``None``
    defaults: dict[str, Any] = {}

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    # ---- loading -----------------------------------------------------------------------
    @abstractmethod
    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Load (or build) the pipeline onto ``device`` in ``dtype``."""

    @abstractmethod
    def denoiser(self) -> nn.Module:
        """The denoiser transformer (the module quantizers act on)."""

    def denoisers(self) -> dict[str, nn.Module]:
        """Every denoiser by name, in call order (several for multi-expert models)."""
        return {"transformer": self.denoiser()}

    def model_info(self) -> dict[str, Any]:
        """Identity of the loaded model for the run record: id, revision, dtype."""
        return {"id": self.name, "path": self.path, "revision": None, "dtype": str(self.dtype)}

    # ---- generation ----------------------------------------------------------------------
    def resolve(self, spec: GenerationSpec) -> GenerationSpec:
        """Fill ``None`` fields of ``spec`` with this adapter's defaults."""
        fill = {k: v for k, v in self.defaults.items() if getattr(spec, k, None) is None}
        return replace(spec, **fill)

    @abstractmethod
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        progress: Callable[[int], None] | None = None,
    ) -> list[Video]:
        """One video per ``(prompts[i], seeds[i])``; deterministic for a given seed on CPU.

        The result for a pair must not depend on which other pairs share its batch beyond
        floating-point batching effects; ``progress(n)`` is called after each finished video.
        """

    @abstractmethod
    def capture(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        every_k_steps: int = 1,
    ) -> CalibrationSet:
        """Run FP sampling and record denoiser inputs and outputs (cond and uncond rows)."""

    # ---- evaluation ------------------------------------------------------------------------
    def metric_defaults(self) -> dict[str, dict[str, Any]]:
        """Metric name -> default constructor kwargs for this model (e.g. its own backbones)."""
        return {}

    def reference_videos(self, samples: list[SampleContext]) -> list[Video] | None:
        """Real videos for reference-set metrics (FVD), or ``None`` when the model has none."""
        return None

    def scheduler_timesteps(self) -> torch.Tensor | None:
        """The timesteps of the current sampling run (``None``: step unknown)."""
        return None

    @contextmanager
    def announce_steps(self) -> Iterator[None]:
        """Within the block, every denoiser call runs inside ``sampling_step(i, n, t)``.

        The step index ``i`` is the position of the call's timestep in
        :meth:`scheduler_timesteps`, so two calls of one step (separate cond and uncond
        passes) get the same index. Time-dependent precision policies and time-range
        statistics read it (``quantizers.core.context``).
        """
        from quantizers.core.context import sampling_step

        active: list[Any] = []

        def pre(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            ts = self.scheduler_timesteps()
            step = value = None
            if t is not None and ts is not None and len(ts):
                value = float(torch.as_tensor(t).reshape(-1)[0])
                gaps = (ts.double().cpu() - value).abs()
                if float(gaps.min()) <= 1e-3 * max(1.0, abs(value)):
                    step = int(gaps.argmin())
            cm = sampling_step(step, None if ts is None else len(ts), value)
            cm.__enter__()
            active.append(cm)

        def post(module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
            active.pop().__exit__(None, None, None)

        denoiser = self.denoiser()
        handles = [
            denoiser.register_forward_pre_hook(pre, with_kwargs=True),
            denoiser.register_forward_hook(post, with_kwargs=True),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            while active:
                active.pop().__exit__(None, None, None)

    # ---- structure -------------------------------------------------------------------------
    @abstractmethod
    def layer_roles(self) -> dict[str, str]:
        """Qualified ``nn.Linear`` name -> role (see ``vqbench.types.ROLES``)."""

    @abstractmethod
    def token_layouts(self, spec: GenerationSpec) -> dict[str, TokenLayout]:
        """Qualified ``nn.Linear`` name -> layout of its input for generation ``spec``."""

    def default_skip(self) -> list[str]:
        """fnmatch patterns of layers kept in full precision (embedders and final layer)."""
        roles = self.layer_roles()
        return sorted(n for n, r in roles.items() if r in ("embed", "timestep_embed", "final"))

    @abstractmethod
    def calib_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the denoiser on a calibration batch; return an output shaped like ``outputs``."""

    def output_to_frames(self, out: torch.Tensor) -> torch.Tensor:
        """Denoiser output ``[B, C, F, H, W]`` -> ``[B, F, H*W, C]`` true frames (for TMD)."""
        b, c, f, h, w = out.shape
        return out.permute(0, 2, 3, 4, 1).reshape(b, f, h * w, c)

    def blocks(self) -> list[str]:
        """Qualified names of the transformer blocks in execution order."""
        return []

    def quant_targets(self, spec: GenerationSpec) -> list[QuantTarget]:
        """One :class:`QuantTarget` per denoiser (see :meth:`denoisers`)."""
        return [self.quant_target(spec)]

    def calibration_for(self, name: str, calib: CalibrationSet) -> CalibrationSet:
        """The calibration rows denoiser ``name`` serves (all of them for a single denoiser)."""
        return calib

    def quant_target(self, spec: GenerationSpec) -> QuantTarget:
        """Bundle the denoiser and its structure for a quantizer."""
        spec = self.resolve(spec)
        return QuantTarget(
            module=self.denoiser(),
            roles=self.layer_roles(),
            layouts=self.token_layouts(spec),
            skip=self.default_skip(),
            forward=self.calib_forward,
            output_to_frames=self.output_to_frames,
            blocks=self.blocks(),
            num_frames=int(spec.frames or 1),
            name=next(iter(self.denoisers())),
        )


def match_any(name: str, patterns: list[str]) -> bool:
    """True if ``name`` matches any fnmatch pattern (or equals it)."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)
