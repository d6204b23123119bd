"""Shared machinery of the diffusers adapters.

:class:`DiffusersAdapter`: loading (a local folder, checked and digested, or a tiny random
pipeline), batched deterministic generation, trajectory capture of every denoiser input
(:mod:`vqbench.adapters._capture`), the calibration replay, and rule-based layer roles and
token layouts. Subclasses add the model's geometry, module-name rules and, where needed,
its text handling; ``Tiny*`` subclasses add :meth:`~DiffusersAdapter.build_random` and a
:class:`~vqbench.adapters.base.TinyConfig`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vqbench.adapters import identity
from vqbench.adapters._capture import KW, Recorder
from vqbench.adapters.base import DTYPE_MAP, ModelAdapter, match_rules
from vqbench.adapters.options import StepProgress
from vqbench.config import GenerationSpec
from vqbench.types import ROLES, CalibrationSet, NonFiniteError, TokenLayout, Video

logger = logging.getLogger(__name__)


def default_model_dir(hub_id: str) -> Path:
    """Where a real pipeline is looked for when no path is given."""
    return identity.cache_root() / "models" / hub_id.split("/")[-1]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8 (clipped, rounded); ``NonFiniteError`` on NaN or inf
    (a NaN frame would otherwise become black and score as a match)."""
    if not np.isfinite(frames).all():
        raise NonFiniteError(
            f"decoded video has {int((~np.isfinite(frames)).sum())} non-finite values"
        )
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class DiffusersAdapter(ModelAdapter):
    """A diffusers video pipeline behind the :class:`ModelAdapter` contract."""

    hub_id: str = ""
    pipeline_cls: str = ""  # attribute name in ``diffusers``
    negative_prompt: str = ""
    max_sequence_length: int | None = None  # passed to pipelines that take it
    #: (fnmatch pattern, role) rules over qualified ``nn.Linear`` names, first match wins
    role_rules: list[tuple[str, str]] = []
    #: pipeline components that are denoisers, in sampling order (absent ones are skipped)
    denoiser_names: tuple[str, ...] = ("transformer",)
    #: the denoiser's argument names for the latents, the timestep and the text embedding
    input_names: tuple[str, str, str] = ("hidden_states", "timestep", "encoder_hidden_states")
    #: denoiser inputs recomputed at replay by :meth:`derived_inputs` instead of stored
    derived_kwargs: tuple[str, ...] = ()

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self.pipe: Any = None
        self._info: dict[str, Any] = {}
        self._constants: dict[str, Any] = {}
        self._text_repeat = 1

    # ---- loading ---------------------------------------------------------------------------
    def build_random(self, dtype: torch.dtype) -> Any:
        """The tiny random pipeline (``Tiny*`` adapters only)."""
        raise NotImplementedError(f"{self.name}: no random pipeline")

    def _missing(self, path: Path) -> identity.ModelPathError:
        if self.tiny is not None:
            return identity.ModelPathError(
                f"model.path: {path} is not a saved {self.pipeline_cls} folder "
                f"(model_index.json missing); omit model.path for the random {self.name}"
            )
        return identity.ModelPathError(
            f"model.path: no diffusers pipeline at {str(path)!r} (model_index.json missing); "
            f"get the Hugging Face repo {self.hub_id!r} with `hf download {self.hub_id} "
            f"--local-dir {path}` and pass it as model.path (default location: "
            f"{default_model_dir(self.hub_id)})"
        )

    def load_folder(self, path: Path, dtype: torch.dtype) -> Any:
        """Check, digest and load a local pipeline folder (never downloads)."""
        import diffusers

        from vqbench.adapters import adapter_for_pipeline

        if not (path / "model_index.json").is_file():
            raise self._missing(path)
        hint = adapter_for_pipeline(identity.read_model_index(path)["_class_name"])
        identity.check_pipeline_class(path, self.pipeline_cls, self.name, hint)
        files = identity.folder_digest(path)
        model_id, revision = identity.identity(self.pipeline_cls, files)
        self._info = {"id": model_id, "revision": revision, "snapshot": identity.hub_snapshot(path)}
        cls = getattr(diffusers, self.pipeline_cls)
        return cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)

    def build_pipeline(self, dtype: torch.dtype) -> Any:
        """A local folder (``self.path`` or the default location), or the tiny random model."""
        if self.path is None and self.tiny is not None:
            pipe = self.build_random(dtype)
            self._info = identity.random_identity(self.pipeline_cls, type(self).__name__, pipe)
            return pipe
        path = Path(self.path) if self.path else default_model_dir(self.hub_id)
        if not path.exists():
            raise self._missing(path)
        pipe = self.load_folder(path, dtype)
        self.path = str(path)
        return pipe

    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Build or load the pipeline onto ``device`` in ``dtype`` (with the model options)."""
        if dtype not in DTYPE_MAP:
            raise ValueError(f"model.dtype: must be one of {sorted(DTYPE_MAP)}, got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = DTYPE_MAP[dtype]
        pipe = self.build_pipeline(self.dtype)
        self.options.apply(pipe, self.device)
        pipe.set_progress_bar_config(disable=True)
        for component in pipe.components.values():
            if isinstance(component, nn.Module):
                component.eval()
        self.pipe = pipe

    def _pipeline(self) -> Any:
        if self.pipe is None:
            raise RuntimeError(f"{self.name}: call load() first")
        return self.pipe

    def denoisers(self) -> dict[str, nn.Module]:
        """The pipeline's denoiser components that are present, in sampling order."""
        pipe = self._pipeline()
        out = {n: getattr(pipe, n, None) for n in self.denoiser_names}
        return {n: m for n, m in out.items() if m is not None}

    def denoiser(self) -> nn.Module:
        return next(iter(self.denoisers().values()))

    def scheduler_timesteps(self) -> torch.Tensor | None:
        """The pipeline scheduler's timesteps for the current sampling run."""
        return getattr(self._pipeline().scheduler, "timesteps", None)

    def model_info(self) -> dict[str, Any]:
        """Id and revision from the folder's digest (or the tiny model's config and seed)."""
        info = {
            "id": self._info.get("id", self.pipeline_cls),
            "name": self.name,
            "path": self.path,
            "revision": self._info.get("revision"),
            "class_name": self.pipeline_cls,
            "dtype": str(self.dtype).replace("torch.", ""),
        }
        info.update({k: v for k, v in self._info.items() if k not in info and v is not None})
        return info

    # ---- model-specific hooks (subclasses) -------------------------------------------------
    def geometry_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        """Pipeline kwargs for frames, height and width."""
        return {"num_frames": spec.frames, "height": spec.height, "width": spec.width}

    def text_seq_len(self) -> int | None:
        """Padded text length passed to the pipeline (``None``: the pipeline's own rule)."""
        return self.max_sequence_length

    def text_groups(self, prompts: list[str], cfg: bool) -> list[tuple[list[int], dict[str, Any]]]:
        """Split a batch into pipeline calls: (indices, text kwargs) per call."""
        kw: dict[str, Any] = {"prompt": prompts}
        if cfg:
            kw["negative_prompt"] = [self.negative_prompt] * len(prompts)
        if self.text_seq_len() is not None:
            kw["max_sequence_length"] = self.text_seq_len()
        return [(list(range(len(prompts))), kw)]

    def image_kwargs(self, images: list[str | None]) -> dict[str, Any]:
        """Pipeline kwargs for the conditioning images of one call (image-to-video only)."""
        if not self.needs_image:
            return {}
        if any(i is None for i in images):
            raise ValueError(
                f"generation.prompts: model.name={self.name} is image-to-video; give every "
                "prompt an 'image' field (a path relative to the suite file)"
            )
        from PIL import Image

        loaded = []
        for path in images:
            with Image.open(str(path)) as im:
                loaded.append(im.convert("RGB"))
        return {"image": loaded}

    def call_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        """Pipeline kwargs beyond text and geometry (guidance, steps)."""
        return {"num_inference_steps": int(spec.steps), "guidance_scale": float(spec.guidance)}

    def row_kinds(self, call_in_step: int, n: int, cfg: bool) -> tuple[list[bool], list[int]]:
        """(is_uncond, sample index in the call) for each batch row of a denoiser call.

        Default: CFG batched as ``[uncond, cond]`` in one call (Latte, CogVideoX).
        """
        if not cfg:
            return [False] * n, list(range(n))
        half = n // 2
        return [True] * half + [False] * half, list(range(half)) * 2

    def derived_inputs(self, module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Denoiser inputs of :attr:`derived_kwargs`, recomputed from the replayed ones."""
        return {}

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        """(fnmatch pattern, input layout) rules; unmatched linears get ``none``."""
        raise NotImplementedError

    # ---- generation ------------------------------------------------------------------------
    def _run(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        output_type: str,
        on_call: Callable[[list[int]], None] | None = None,
        callback: Callable[..., dict[str, Any]] | None = None,
        images: list[str | None] | None = None,
    ) -> Iterator[tuple[list[int], Any]]:
        """Run the pipeline over batches; yield (global indices, output) per pipeline call."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        images = list(images) if images is not None else [None] * len(prompts)
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        pipe = self._pipeline()
        spec = self.resolve(spec)
        cfg = self.uses_cfg(spec)
        for start in range(0, len(prompts), spec.batch_size):
            batch = list(range(start, min(start + spec.batch_size, len(prompts))))
            for local, text_kw in self.text_groups([prompts[i] for i in batch], cfg):
                idx = [batch[j] for j in local]
                # CPU generators: the same initial noise on every device
                gens = [torch.Generator().manual_seed(int(seeds[i])) for i in idx]
                if on_call is not None:
                    on_call(idx)
                with StepProgress(self.options, int(spec.steps), len(idx), callback) as cb:
                    extra = {"callback_on_step_end": cb} if cb is not None else {}
                    out = pipe(
                        **self.image_kwargs([images[i] for i in idx]),
                        **text_kw,
                        **self.geometry_kwargs(spec),
                        **self.call_kwargs(spec),
                        **extra,
                        generator=gens,
                        output_type=output_type,
                        return_dict=False,
                    )[0]
                yield idx, out

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        progress: Callable[[int], None] | None = None,
        images: list[str | None] | None = None,
    ) -> list[Video]:
        """One uint8 video per (prompt, seed); per-sample generators make it batch-independent."""
        fps = float(self.resolve(spec).fps)
        videos: list[Video | None] = [None] * len(prompts)
        with self.announce_steps():
            for idx, frames in self._run(prompts, seeds, spec, "np", images=images):
                frames = np.asarray(frames, dtype=np.float32)  # [B, T, H, W, 3] in [0, 1]
                for j, i in enumerate(idx):
                    videos[i] = Video(to_uint8(frames[j]), fps=fps)
                if progress is not None:
                    progress(len(idx))
        return [v for v in videos if v is not None]

    # ---- calibration -----------------------------------------------------------------------
    def capture(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        every_k_steps: int = 1,
        images: list[str | None] | None = None,
    ) -> CalibrationSet:
        """FP sampling with forward hooks on every denoiser; all call inputs, per row."""
        if every_k_steps < 1 or not prompts:
            raise ValueError("capture needs at least one prompt and every_k_steps >= 1")
        spec = self.resolve(spec)
        rec = Recorder(
            every_k_steps,
            self.input_names,
            self.derived_kwargs,
            self.row_kinds,
            self.uses_cfg(spec),
        )
        handles = [
            m.register_forward_hook(rec.hook, with_kwargs=True) for m in self.denoisers().values()
        ]
        try:
            calls = self._run(prompts, seeds, spec, "latent", rec.new_call, rec.on_step_end, images)
            for _ in calls:
                pass
        finally:
            for h in handles:
                h.remove()
        meta = {
            "model": self.name,
            "steps": int(spec.steps),
            "guidance": float(spec.guidance),
            "every_k_steps": every_k_steps,
            "frames": int(spec.frames),
            "height": int(spec.height),
            "width": int(spec.width),
        }
        calib = rec.calibration_set(meta)
        self._bind(calib)
        return calib

    def _bind(self, calib: CalibrationSet) -> None:
        """Take the constant call inputs of ``calib`` for replay."""
        self._constants = dict(calib.meta.get("call_kwargs", {}))
        self._text_repeat = int(calib.meta.get("text_repeat", 1))

    def calibration_for(self, name: str, calib: CalibrationSet) -> CalibrationSet:
        """The rows denoiser ``name`` serves; binds the set's constant call inputs for replay."""
        rows = super().calibration_for(name, calib)
        self._bind(calib)
        return rows

    def calib_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Primary denoiser output for a calibration batch, float32, shaped like ``outputs``."""
        return self._replay(batch, self.denoiser())

    def forward_for(self, name: str) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        if name == next(iter(self.denoisers())):
            return self.calib_forward
        return functools.partial(self._replay, module=self.denoisers()[name])

    def _cast(self, v: torch.Tensor) -> torch.Tensor:
        return v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)

    def _replay(self, batch: dict[str, torch.Tensor], module: nn.Module) -> torch.Tensor:
        """Replay captured calls on ``module``; gradients flow (training-based methods).

        Rows whose text was shorter than the padded width (``text_len``) run with their text
        truncated, exactly as during sampling.
        """
        lat, tim, txt = self.input_names
        x = self._cast(batch["latents"])
        t = batch.get(KW + tim, batch["timesteps"]).to(self.device)
        text = self._cast(batch["text"])
        kw = {k[len(KW) :]: self._cast(v) for k, v in batch.items() if k.startswith(KW)}
        kw.pop(tim, None)

        def call(sel: torch.Tensor | slice, length: int) -> torch.Tensor:
            inputs = {**self._constants, **{k: v[sel] for k, v in kw.items()}}
            cond = text[sel, :length].repeat_interleave(self._text_repeat, 0)
            inputs.update({lat: x[sel], tim: t[sel], txt: cond})
            inputs.update(self.derived_inputs(module, inputs))
            return module(**inputs, return_dict=False)[0].float()

        lens = batch.get("text_len")
        if lens is None or bool((lens == text.shape[1]).all()):
            return call(slice(None), text.shape[1])
        out: torch.Tensor | None = None
        for length in lens.unique().tolist():
            sel = (lens == length).nonzero().flatten().to(self.device)
            y = call(sel, int(length))
            if out is None:
                out = y.new_zeros((x.shape[0], *y.shape[1:]))
            out = out.index_copy(0, sel, y)
        assert out is not None
        return out

    # ---- structure -------------------------------------------------------------------------
    def layer_roles(self) -> dict[str, str]:
        roles: dict[str, str] = {}
        for name, mod in self.denoiser().named_modules():
            if not isinstance(mod, nn.Linear):
                continue
            role = match_rules(name, self.role_rules)
            if role not in ROLES:
                raise RuntimeError(f"{self.name}: no layer role for linear {name!r}")
            roles[name] = role
        return roles

    def token_layouts(self, spec: GenerationSpec) -> dict[str, TokenLayout]:
        rules = self.layout_rules(self.resolve(spec))
        none = TokenLayout("none")
        return {name: match_rules(name, rules) or none for name in self.layer_roles()}
