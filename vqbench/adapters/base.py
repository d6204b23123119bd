"""The ``ModelAdapter`` contract: generation, trajectory capture, layer roles, token layouts.

Hooks with defaults for single-denoiser models, overridden where a family differs:

- denoisers: :meth:`ModelAdapter.denoisers` (several experts, e.g. Wan 2.2's two), the
  targets :meth:`~ModelAdapter.quant_targets` and the rows each serves
  (:meth:`~ModelAdapter.calibration_for`);
- guidance: :attr:`~ModelAdapter.cfg_policy` (classifier-free, embedded or none);
- latent geometry: :meth:`~ModelAdapter.latent_grid`, :attr:`~ModelAdapter.latent_frame_axis`,
  :meth:`~ModelAdapter.frame_slice`, :meth:`~ModelAdapter.output_to_frames`;
- identity: :meth:`~ModelAdapter.model_info` (id from class + config + weights digest);
- tests: :attr:`~ModelAdapter.tiny` declares a tiny random model the registry-driven adapter
  and conformance tests run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from vqbench.adapters.options import ModelOptions
from vqbench.config import GenerationSpec
from vqbench.sampling import sampling_step
from vqbench.types import (
    DTYPES,
    CalibrationSet,
    QuantTarget,
    SampleContext,
    TokenLayout,
    Video,
    match_any,
)

DTYPE_MAP = {name: getattr(torch, name) for name in DTYPES}
CFG_POLICIES = ("classifier_free", "embedded", "none")


def match_rules(name: str, rules: list[tuple[str, Any]]) -> Any:
    """Value of the first ``(fnmatch pattern, value)`` rule matching ``name``; ``None`` if none."""
    for pattern, value in rules:
        if match_any(name, [pattern]):
            return value
    return None


@dataclass(frozen=True)
class TinyConfig:
    """What the registry-driven tests know of an adapter's tiny random model.

    - ``geometry``: latent tokens (F, S per frame, text prefix) at the adapter's defaults;
    - ``roles``: roles that must appear among its linears;
    - ``probes``: first linears of the first block of each kind, where no attention has yet
      mixed frames (the true-frame test perturbs one latent frame and watches them);
    - ``real``: the catalog name that loads a ``save_pretrained`` copy of it;
    - ``frameless``: fnmatch patterns of attention/MLP linears whose inputs hold no frame
      structure the layout can express (text-stream and single-stream blocks of MM-DiTs);
    - ``slow``: the tiny model is too heavy for the default suite.
    """

    geometry: tuple[int, int, int]
    roles: tuple[str, ...] = ("spatial_attn", "mlp", "final")
    probes: tuple[str, ...] = ()
    frameless: tuple[str, ...] = ()
    real: str | None = None
    slow: bool = False


class ModelAdapter(ABC):
    """Wraps one text-to-video pipeline for vqbench.

    Subclasses implement loading, sampling (with and without trajectory capture), layer roles
    and token layouts. Everything model-specific (module names, call signatures, token
    arrangement) lives in the subclass, never in a quantizer or metric.
    """

    name: str = ""
    #: defaults for ``GenerationSpec`` fields left as ``None``
    defaults: dict[str, Any] = {}
    #: how guidance is applied: ``classifier_free`` (cond + uncond rows when guidance > 1),
    #: ``embedded`` (the guidance scale is a denoiser input; cond rows only) or ``none``
    cfg_policy: str = "classifier_free"
    #: axis of the frame dimension in one latent row (``[C, F, H, W]``: 1; ``[F, C, H, W]``: 0)
    latent_frame_axis: int = 1
    #: image-to-video: ``generate``/``capture`` need one conditioning image per prompt
    needs_image: bool = False
    #: the tiny random model the registry-driven tests run (``None``: not a test model)
    tiny: ClassVar[TinyConfig | None] = None

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.options = ModelOptions()

    def configure(self, model: Any, quiet: bool = False) -> None:
        """Take the run options of ``model`` (a ``ModelSpec``: offload, VAE tiling, progress)."""
        self.options = ModelOptions.from_spec(model, quiet=quiet)

    # ---- loading -----------------------------------------------------------------------
    @abstractmethod
    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Load (or build) the pipeline onto ``device`` in ``dtype``."""

    @abstractmethod
    def denoiser(self) -> nn.Module:
        """The primary denoiser (the first of :meth:`denoisers`)."""

    def denoisers(self) -> dict[str, nn.Module]:
        """Every denoiser the pipeline calls, by component name, in sampling order."""
        return {"transformer": self.denoiser()}

    def model_info(self) -> dict[str, Any]:
        """Identity of the loaded model: id, name, path, revision, class_name, dtype."""
        cls = type(self.denoiser()).__name__
        return {
            "id": cls,
            "name": self.name,
            "path": self.path,
            "revision": None,
            "class_name": cls,
            "dtype": str(self.dtype),  # "torch.float32": the mini baselines group by it
        }

    # ---- generation ----------------------------------------------------------------------
    def resolve(self, spec: GenerationSpec) -> GenerationSpec:
        """Fill ``None`` fields of ``spec`` with this adapter's defaults."""
        fill = {k: v for k, v in self.defaults.items() if getattr(spec, k, None) is None}
        return replace(spec, **fill)

    def spec_problems(self, spec: GenerationSpec) -> list[str]:
        """One-line problems of sampling this model with ``spec`` (resolved), found before
        any model is loaded (default: none; a family with a fixed geometry says so)."""
        return []

    def uses_cfg(self, spec: GenerationSpec) -> bool:
        """Whether sampling with ``spec`` runs separate uncond passes (classifier-free guidance)."""
        if self.cfg_policy not in CFG_POLICIES:
            raise RuntimeError(f"{self.name}: cfg_policy {self.cfg_policy!r} not in {CFG_POLICIES}")
        guidance = self.resolve(spec).guidance
        return self.cfg_policy == "classifier_free" and float(guidance or 0.0) > 1.0

    @abstractmethod
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        progress: Callable[[int], None] | None = None,
        images: list[str | None] | None = None,
    ) -> list[Video]:
        """One video per ``(prompts[i], seeds[i])``; deterministic for a given seed on CPU.

        The result for a pair must not depend on which other pairs share its batch beyond
        floating-point batching effects; ``progress(n)`` is called after each finished video.
        ``images[i]`` is prompt i's conditioning image (``Prompt.image``); image-to-video
        adapters (:attr:`needs_image`) require them, the others ignore them.
        """

    @abstractmethod
    def capture(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        every_k_steps: int = 1,
        images: list[str | None] | None = None,
    ) -> CalibrationSet:
        """Run FP sampling and record denoiser inputs and outputs (cond and uncond rows)."""

    # ---- evaluation ------------------------------------------------------------------------
    def metric_defaults(self) -> dict[str, dict[str, Any]]:
        """Metric name -> default constructor kwargs for this model (e.g. its own backbones)."""
        return {}

    def has_reference_videos(self, samples: list[Any]) -> bool:
        """Whether :meth:`reference_videos` has real videos for these prompts or samples
        (anything with ``attributes``); the validate stage asks before any work."""
        return False

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
        statistics read it (:mod:`vqbench.sampling`). Every module of :meth:`denoisers` is
        hooked.
        """
        active: list[Any] = []

        def pre(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            ts = self.scheduler_timesteps()
            step = value = None
            if t is not None and ts is not None and len(ts):
                value = float(torch.as_tensor(t).reshape(-1).max())
                gaps = (ts.double().cpu() - value).abs()
                if float(gaps.min()) <= 1e-3 * max(1.0, abs(value)):
                    step = int(gaps.argmin())
            cm = sampling_step(step, None if ts is None else len(ts), value)
            cm.__enter__()
            active.append(cm)

        def post(module: nn.Module, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
            active.pop().__exit__(None, None, None)

        with ExitStack() as stack:
            for module in self.denoisers().values():
                stack.callback(module.register_forward_pre_hook(pre, with_kwargs=True).remove)
                stack.callback(module.register_forward_hook(post, with_kwargs=True).remove)
            try:
                yield
            finally:
                while active:
                    active.pop().__exit__(None, None, None)

    # ---- geometry --------------------------------------------------------------------------
    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        """Latent token grid (F, H tokens, W tokens) of generation ``spec``."""
        raise NotImplementedError(f"{self.name}: latent_grid")

    def frame_slice(self, latents: torch.Tensor, k: int) -> torch.Tensor:
        """View of latent frame ``k`` in a batch of latents (rows as captured)."""
        return latents.select(1 + self.latent_frame_axis, k)

    def output_to_frames(self, out: torch.Tensor) -> torch.Tensor:
        """Denoiser output ``[B, C, F, H, W]`` -> ``[B, F, H*W, C]`` true frames (for TMD)."""
        b, c, f, h, w = out.shape
        return out.permute(0, 2, 3, 4, 1).reshape(b, f, h * w, c)

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
        """Run the primary denoiser on a calibration batch; output shaped like ``outputs``."""

    def forward_for(self, name: str) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """The calibration forward of denoiser ``name`` (default: :meth:`calib_forward`)."""
        if name != next(iter(self.denoisers())):
            raise NotImplementedError(f"{self.name}: forward_for({name!r})")
        return self.calib_forward

    def blocks(self) -> list[str]:
        """Qualified names of the transformer blocks in execution order."""
        return []

    def quant_target(self, spec: GenerationSpec) -> QuantTarget:
        """Bundle the primary denoiser and its structure for a quantizer."""
        return self.quant_targets(spec)[0]

    def quant_targets(self, spec: GenerationSpec) -> list[QuantTarget]:
        """One target per denoiser, ``name`` = its key in :meth:`denoisers`.

        Experts of one pipeline share one architecture, so roles, layouts, skip patterns and
        blocks (all by qualified name) are the primary denoiser's.
        """
        spec = self.resolve(spec)
        roles, layouts = self.layer_roles(), self.token_layouts(spec)
        skip, blocks = self.default_skip(), self.blocks()
        return [
            QuantTarget(
                module=module,
                roles=dict(roles),
                layouts=dict(layouts),
                skip=list(skip),
                forward=self.forward_for(name),
                output_to_frames=self.output_to_frames,
                blocks=list(blocks),
                num_frames=int(spec.frames or 1),
                name=name,
            )
            for name, module in self.denoisers().items()
        ]

    def calibration_for(self, name: str, calib: CalibrationSet) -> CalibrationSet:
        """The rows of ``calib`` that denoiser ``name`` serves (default: all of them)."""
        if name not in self.denoisers():
            raise ValueError(f"{self.name}: no denoiser {name!r}; have {list(self.denoisers())}")
        return calib
