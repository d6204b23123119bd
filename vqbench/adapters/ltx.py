"""LTX-Video (``LTXPipeline`` + ``LTXVideoTransformer3DModel``).

The pipeline *packs* latents into tokens before the transformer: a latent row is
``[F*S, C]`` frame-major (patch 1), not ``[C, F, H, W]``. So the frame of a latent row is a
token range (:meth:`LTXVideoAdapter.frame_slice`) and the output ``[B, F*S, C]`` is
reshaped to frames directly. Besides latents, timestep and text, each call carries
``encoder_attention_mask`` (per row) and the latent grid ``num_frames``/``height``/``width``
and ``rope_interpolation_scale`` (constants). CFG runs batched ``[uncond, cond]``.

Token geometry: the VAE compresses time by 8 and space by 32 (tiny: 4 and 4); every block
is spatio-temporal self-attention (``joint``, no prefix), cross-attention to text and an MLP.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, tiny_t5
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout


class LTXVideoAdapter(DiffusersAdapter):
    """LTX-Video from a local ``LTXPipeline`` folder (Lightricks/LTX-Video)."""

    name = "ltx-video"
    hub_id = "Lightricks/LTX-Video"
    pipeline_cls = "LTXPipeline"
    max_sequence_length = 128
    defaults = {"steps": 50, "guidance": 3.0, "frames": 161, "height": 512, "width": 704}
    defaults = {**defaults, "fps": 25.0}
    role_rules = [
        ("transformer_blocks.*.attn1.*", "spatial_attn"),
        ("transformer_blocks.*.attn2.*", "cross_attn"),
        ("transformer_blocks.*.ff.*", "mlp"),
        ("time_embed.*", "timestep_embed"),
        ("caption_projection.*", "embed"),
        ("proj_in", "embed"),
        ("proj_out", "final"),
    ]

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self._grid: tuple[int, int, int] | None = None

    def geometry_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        self._grid = self.latent_grid(spec)
        return {**super().geometry_kwargs(spec), "frame_rate": int(spec.fps)}

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe, cfg = self._pipeline(), self.denoiser().config
        f = ((int(spec.frames) - 1) // pipe.vae_temporal_compression_ratio + 1) // cfg.patch_size_t
        s = pipe.vae_spatial_compression_ratio * cfg.patch_size
        return f, int(spec.height) // s, int(spec.width) // s

    def _frame_tokens(self, n_tokens: int) -> tuple[int, int]:
        f, h, w = self._grid or self.latent_grid(self.resolve(GenerationSpec()))
        if f * h * w != n_tokens:
            raise ValueError(f"{self.name}: {n_tokens} latent tokens do not fit grid {(f, h, w)}")
        return f, h * w

    def frame_slice(self, latents: torch.Tensor, k: int) -> torch.Tensor:
        """Tokens of latent frame ``k`` in packed latents ``[B, F*S, C]``."""
        _, s = self._frame_tokens(latents.shape[1])
        return latents[:, k * s : (k + 1) * s]

    def output_to_frames(self, out: torch.Tensor) -> torch.Tensor:
        """Packed output ``[B, F*S, C]`` -> ``[B, F, S, C]``."""
        f, s = self._frame_tokens(out.shape[1])
        return out.reshape(out.shape[0], f, s, out.shape[-1])

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        joint = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=0)
        none = TokenLayout("none")
        return [
            ("transformer_blocks.*.attn2.to_k", none),
            ("transformer_blocks.*.attn2.to_v", none),
            ("transformer_blocks.*", joint),
            ("proj_in", joint),
            ("proj_out", joint),
        ]

    def blocks(self) -> list[str]:
        return [f"transformer_blocks.{i}" for i in range(len(self.denoiser().transformer_blocks))]


class TinyLTXVideoAdapter(LTXVideoAdapter):
    """Random LTX-Video of the real classes (width 32, 3 latent frames of 8x8 tokens)."""

    name = "tiny-ltx-video"
    tiny = TinyConfig(
        geometry=(3, 64, 0),
        roles=("spatial_attn", "cross_attn", "mlp", "final"),
        probes=("transformer_blocks.0.attn1.to_q",),
        real="ltx-video",
    )
    defaults = {"steps": 4, "guidance": 3.0, "frames": 9, "height": 32, "width": 32, "fps": 25.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        from diffusers import (
            AutoencoderKLLTXVideo,
            FlowMatchEulerDiscreteScheduler,
            LTXPipeline,
            LTXVideoTransformer3DModel,
        )

        with seeded(0):
            transformer = LTXVideoTransformer3DModel(
                in_channels=8,
                out_channels=8,
                patch_size=1,
                patch_size_t=1,
                num_attention_heads=2,
                attention_head_dim=16,
                cross_attention_dim=32,
                num_layers=2,
                caption_channels=TEXT_DIM,
            )
        with seeded(0):
            vae = AutoencoderKLLTXVideo(
                latent_channels=8,
                block_out_channels=(8, 8, 8, 8),
                decoder_block_out_channels=(8, 8, 8, 8),
                layers_per_block=(1, 1, 1, 1, 1),
                decoder_layers_per_block=(1, 1, 1, 1, 1),
                spatio_temporal_scaling=(True, True, False, False),
                decoder_spatio_temporal_scaling=(True, True, False, False),
                decoder_inject_noise=(False,) * 5,
                upsample_residual=(False,) * 4,
                upsample_factor=(1,) * 4,
                timestep_conditioning=False,
                patch_size=1,
                patch_size_t=1,
                encoder_causal=True,
                decoder_causal=False,
            )
        pipe = LTXPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=tiny_t5(),
            tokenizer=offline_tokenizer(self.max_sequence_length or 128),
            transformer=transformer,
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
