"""Mochi 1 (``MochiPipeline`` + ``MochiTransformer3DModel``): an asymmetric dual-stream DiT.

Each block keeps video and text tokens in separate linears (``attn1.to_*`` / ``ff`` for
video, ``attn1.add_*`` / ``to_add_out`` / ``ff_context`` for text) and attends over the
video tokens with the text tokens *appended*. As for HunyuanVideo, ``TokenLayout`` (prefix
only) cannot describe that key axis, so the attention linears and the text stream are
frameless (``none``); the video MLP sees ``[B, F*S, C]`` (``joint``). Each call carries
``encoder_attention_mask`` (per row); CFG runs batched ``[uncond, cond]``.

Token geometry: the VAE compresses time by 6 and space by 8; patch 2.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, tiny_t5
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout


class MochiAdapter(DiffusersAdapter):
    """Mochi 1 preview from a local ``MochiPipeline`` folder (genmo/mochi-1-preview)."""

    name = "mochi"
    hub_id = "genmo/mochi-1-preview"
    pipeline_cls = "MochiPipeline"
    defaults = {"steps": 64, "guidance": 4.5, "frames": 163, "height": 480, "width": 848}
    defaults = {**defaults, "fps": 30.0}
    role_rules = [
        ("transformer_blocks.*.attn1.*", "spatial_attn"),
        ("transformer_blocks.*.ff*", "mlp"),
        ("transformer_blocks.*.norm*", "timestep_embed"),
        ("time_embed.pooler.*", "embed"),
        ("time_embed.caption_proj", "embed"),
        ("time_embed.*", "timestep_embed"),
        ("patch_embed.*", "embed"),
        ("norm_out.*", "final"),
        ("proj_out", "final"),
    ]

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe = self._pipeline()
        f = (int(spec.frames) - 1) // pipe.vae_temporal_scale_factor + 1
        s = pipe.vae_spatial_scale_factor * self.denoiser().config.patch_size
        return f, int(spec.height) // s, int(spec.width) // s

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        video = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=0)
        return [("transformer_blocks.*.ff.*", video), ("proj_out", video)]

    def blocks(self) -> list[str]:
        return [f"transformer_blocks.{i}" for i in range(len(self.denoiser().transformer_blocks))]


class TinyMochiAdapter(MochiAdapter):
    """Random Mochi of the real classes (width 32, 3 latent frames of 4x4 tokens)."""

    name = "tiny-mochi"
    max_sequence_length = 16
    tiny = TinyConfig(
        geometry=(3, 16, 0),
        real="mochi",
        frameless=("transformer_blocks.*.attn1.*", "transformer_blocks.*.ff_context.*"),
    )
    defaults = {"steps": 4, "guidance": 4.5, "frames": 13, "height": 64, "width": 64, "fps": 30.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        from diffusers import (
            AutoencoderKLMochi,
            FlowMatchEulerDiscreteScheduler,
            MochiPipeline,
            MochiTransformer3DModel,
        )

        with seeded(0):
            transformer = MochiTransformer3DModel(
                patch_size=2,
                num_attention_heads=2,
                attention_head_dim=16,
                num_layers=2,
                pooled_projection_dim=32,
                in_channels=12,
                text_embed_dim=TEXT_DIM,
                time_embed_dim=4,
                max_sequence_length=self.max_sequence_length or 256,
            )
        with seeded(0):
            vae = AutoencoderKLMochi(
                latent_channels=12,
                out_channels=3,
                encoder_block_out_channels=(32, 32, 32, 32),
                decoder_block_out_channels=(32, 32, 32, 32),
                layers_per_block=(1, 1, 1, 1, 1),
                add_attention_block=(False,) * 5,
            )
        pipe = MochiPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=tiny_t5(),
            tokenizer=offline_tokenizer(self.max_sequence_length or 256),
            transformer=transformer,
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
