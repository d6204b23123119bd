"""What a quantizer sees of a model and produces: layer roles, :class:`TokenLayout`,
:class:`CalibrationSet` (denoiser inputs and FP outputs along sampling trajectories),
:class:`QuantTarget` (module, roles, layouts, a forward over calibration inputs; model
knowledge stays in the adapter that builds it) and :class:`QuantState`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROLES: tuple[str, ...] = (
    "spatial_attn",
    "temporal_attn",
    "cross_attn",
    "mlp",
    "timestep_embed",
    "embed",
    "final",
)
"""Layer roles an adapter assigns to every ``nn.Linear`` of the denoiser."""

LAYOUT_KINDS: tuple[str, ...] = ("spatial", "temporal", "joint", "none")


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's input ``[N, L, C]`` is arranged in frames and spatial tokens.

    - ``spatial``: frames folded into the batch, ``N = B*F``, ``L = S`` (Latte spatial blocks);
    - ``temporal``: spatial positions folded into the batch, ``N = B*S``, ``L = F``
      (Latte temporal blocks);
    - ``joint``: ``N = B``, ``L = prefix + F*S`` frame-major, optionally preceded by ``prefix``
      non-video tokens (CogVideoX concatenates text tokens first; Wan has none);
    - ``none``: no frame structure (text tokens, timestep embeddings).
    """

    kind: str
    frames: int = 1
    tokens_per_frame: int = 1
    prefix: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"TokenLayout.kind must be one of {LAYOUT_KINDS}, got {self.kind!r}")

    @property
    def has_frames(self) -> bool:
        return self.kind != "none" and self.frames > 1

    def to_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Rearrange a layer input or output ``[N, L, C]`` into ``[B, F, S, C]``.

        Prefix tokens (``joint``) are dropped. Raises ``ValueError`` on a shape mismatch.
        """
        if x.dim() != 3:
            raise ValueError(f"expected [N, L, C], got {tuple(x.shape)}")
        n, seq, c = x.shape
        f, s = self.frames, self.tokens_per_frame
        if self.kind == "spatial":
            if n % f or seq != s:
                raise ValueError(f"spatial layout F={f}, S={s} does not fit {tuple(x.shape)}")
            return x.reshape(n // f, f, s, c)
        if self.kind == "temporal":
            if n % s or seq != f:
                raise ValueError(f"temporal layout F={f}, S={s} does not fit {tuple(x.shape)}")
            return x.reshape(n // s, s, f, c).transpose(1, 2)
        if self.kind == "joint":
            if seq != self.prefix + f * s:
                raise ValueError(
                    f"joint layout prefix={self.prefix}, F={f}, S={s} does not fit {tuple(x.shape)}"
                )
            return x[:, self.prefix :].reshape(n, f, s, c)
        raise ValueError("layout 'none' has no frames")

    def frame_index(self, x: torch.Tensor) -> torch.Tensor:
        """Frame id of every token of ``x [N, L, C]`` as a long tensor ``[N, L]`` (-1: no frame)."""
        n, seq, _ = x.shape
        if self.kind == "spatial":
            ids = (torch.arange(n, device=x.device) % self.frames)[:, None].expand(n, seq)
        elif self.kind == "temporal":
            ids = torch.arange(seq, device=x.device)[None, :].expand(n, seq)
        elif self.kind == "joint":
            pos = torch.arange(seq, device=x.device) - self.prefix
            ids = torch.where(pos >= 0, pos // self.tokens_per_frame, torch.full_like(pos, -1))
            ids = ids[None, :].expand(n, seq)
        else:
            ids = torch.full((n, seq), -1, dtype=torch.long, device=x.device)
        return ids.long()


@dataclass
class CalibrationSet:
    """Denoiser calls captured along FP sampling trajectories, one row per sample.

    With classifier-free guidance every sampling step yields two rows (cond and uncond),
    linked by ``prompt_index`` and ``step_index`` and told apart by ``is_uncond``.
    ``extra`` holds per-row model-specific inputs (e.g. attention masks), same first dim.
    """

    latents: torch.Tensor  # x_t, [N, *latent_shape]
    timesteps: torch.Tensor  # [N]
    text: torch.Tensor  # text embeddings (cond or uncond per row), [N, L, D]
    outputs: torch.Tensor  # FP denoiser outputs, [N, *out_shape]
    step_index: torch.Tensor  # [N] sampling-step index (0 = first, noisiest)
    prompt_index: torch.Tensor  # [N]
    is_uncond: torch.Tensor  # [N] bool
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.latents.shape[0]
        for name in ("timesteps", "text", "outputs", "step_index", "prompt_index", "is_uncond"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"CalibrationSet.{name} has {getattr(self, name).shape[0]} rows")
        for k, v in self.extra.items():
            if v.shape[0] != n:
                raise ValueError(f"CalibrationSet.extra[{k!r}] has {v.shape[0]} rows, not {n}")

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.step_index.max().item()) + 1 if len(self) else 0

    def subset(self, idx: torch.Tensor | list[int]) -> CalibrationSet:
        """Rows ``idx`` as a new set (same meta)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return CalibrationSet(
            latents=self.latents[idx],
            timesteps=self.timesteps[idx],
            text=self.text[idx],
            outputs=self.outputs[idx],
            step_index=self.step_index[idx],
            prompt_index=self.prompt_index[idx],
            is_uncond=self.is_uncond[idx],
            extra={k: v[idx] for k, v in self.extra.items()},
            meta=dict(self.meta),
        )

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield dicts with keys latents, timesteps, text, outputs and the ``extra`` keys."""
        order = (
            torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        )
        for i in range(0, len(self), batch_size):
            idx = order[i : i + batch_size]
            batch = {
                "latents": self.latents[idx],
                "timesteps": self.timesteps[idx],
                "text": self.text[idx],
                "outputs": self.outputs[idx],
            }
            batch.update({k: v[idx] for k, v in self.extra.items()})
            yield batch

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict for safetensors serialisation."""
        out = {
            "latents": self.latents,
            "timesteps": self.timesteps,
            "text": self.text,
            "outputs": self.outputs,
            "step_index": self.step_index,
            "prompt_index": self.prompt_index,
            "is_uncond": self.is_uncond,
        }
        out.update({f"extra.{k}": v for k, v in self.extra.items()})
        return {k: v.contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], meta: dict[str, Any]) -> CalibrationSet:
        """Inverse of :meth:`tensors`."""
        extra = {k[len("extra.") :]: v for k, v in t.items() if k.startswith("extra.")}
        return cls(
            latents=t["latents"],
            timesteps=t["timesteps"],
            text=t["text"],
            outputs=t["outputs"],
            step_index=t["step_index"],
            prompt_index=t["prompt_index"],
            is_uncond=t["is_uncond"].bool(),
            extra=extra,
            meta=meta,
        )


@dataclass
class QuantTarget:
    """A denoiser prepared for quantization by its adapter.

    - ``module``: the denoiser ``nn.Module`` (quantized in place);
    - ``roles``: qualified ``nn.Linear`` name -> role (one of :data:`ROLES`);
    - ``layouts``: qualified ``nn.Linear`` name -> :class:`TokenLayout` of its *input*;
    - ``skip``: names the adapter keeps in full precision by default;
    - ``forward``: runs the denoiser on a calibration batch (keys as in
      :meth:`CalibrationSet.batches`) and returns the output, shaped like ``outputs``;
    - ``output_layout``: layout of the final denoiser output as ``[B, L, C]`` tokens via
      ``output_to_tokens`` (used by output-level losses such as TMD);
    - ``blocks``: qualified names of the transformer blocks in execution order (for
      block-wise reconstruction).
    """

    module: nn.Module
    roles: dict[str, str]
    layouts: dict[str, TokenLayout]
    skip: list[str]
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    output_to_frames: Callable[[torch.Tensor], torch.Tensor] | None = None
    blocks: list[str] = field(default_factory=list)
    num_frames: int = 1
    name: str = ""

    def linears(self) -> dict[str, nn.Linear]:
        """All ``nn.Linear`` modules of the denoiser that carry a role."""
        mods = dict(self.module.named_modules())
        return {n: mods[n] for n in self.roles if isinstance(mods.get(n), nn.Linear)}


@dataclass
class QuantState:
    """A quantizer's calibration result: tensors (safetensors) plus JSON-able metadata.

    ``meta["record"]``, if set, lists meta keys the runner copies into the run record
    (``calibration.state[<target name>]``)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> None:
        """Write ``state.safetensors`` and ``state.json`` into ``directory`` (the run cache
        writes entries into a temporary directory and renames it, which makes them atomic)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.tensors.items()},
            str(d / "state.safetensors"),
        )
        (d / "state.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True, default=str))

    @classmethod
    def load(cls, directory: str | Path) -> QuantState:
        """Read a state written by :meth:`save`."""
        from safetensors.torch import load_file

        d = Path(directory)
        tensors = load_file(str(d / "state.safetensors"))
        meta = json.loads((d / "state.json").read_text())
        return cls(tensors=tensors, meta=meta)
