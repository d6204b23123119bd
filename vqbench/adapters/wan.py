"""Wan 2.1 (``WanPipeline`` + ``WanTransformer3DModel``): 3D self-attention plus cross-attention.

Token geometry: the causal 3D VAE compresses time by 4 (F = (frames-1)//4 + 1) and space by 8
(tiny: 4); the (1, 2, 2) patch gives S = (H/8/2)*(W/8/2) tokens per frame, frame-major, with no
text prefix. Self-attention is spatio-temporal: its linears get the role ``spatial_attn`` and a
``joint`` layout. Cross-attention keys/values see text tokens (layout ``none``). The pipeline
calls the transformer twice per step, cond first, then uncond.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import (
    TEXT_DIM,
    DiffusersAdapter,
    offline_tokenizer,
    seeded,
    tiny_t5,
)
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout


class WanAdapter(DiffusersAdapter):
    """Wan 2.1 T2V from a local ``WanPipeline`` directory (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)."""

    name = "wan"
    hub_id = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    pipeline_cls = "WanPipeline"
    max_sequence_length = 512
    defaults = {
        "steps": 50,
        "guidance": 5.0,
        "frames": 81,
        "height": 480,
        "width": 832,
        "fps": 16.0,
    }
    role_rules = [
        ("blocks.*.attn1.*", "spatial_attn"),
        ("blocks.*.attn2.*", "cross_attn"),
        ("blocks.*.ffn.*", "mlp"),
        ("condition_embedder.time_*", "timestep_embed"),
        ("condition_embedder.*", "embed"),
        ("proj_out", "final"),
    ]

    def row_kinds(self, call_in_step: int, n: int, cfg: bool) -> tuple[list[bool], list[int]]:
        """Wan runs cond (first call of a step) and uncond (second call) separately."""
        return [cfg and call_in_step % 2 == 1] * n, list(range(n))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.denoiser()(
            hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False
        )[0]

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe = self._pipeline()
        p_t, p_h, p_w = pipe.transformer.config.patch_size
        f = ((int(spec.frames) - 1) // pipe.vae_scale_factor_temporal + 1) // p_t
        s = pipe.vae_scale_factor_spatial
        return f, int(spec.height) // s // p_h, int(spec.width) // s // p_w

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        joint = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=0)
        none = TokenLayout("none")
        return [
            ("blocks.*.attn2.to_k", none),
            ("blocks.*.attn2.to_v", none),
            ("blocks.*.attn2.add_*", none),
            ("blocks.*", joint),
            ("proj_out", joint),
        ]

    def blocks(self) -> list[str]:
        return [f"blocks.{i}" for i in range(len(self.denoiser().blocks))]


class TinyWanAdapter(WanAdapter):
    """Random-weight Wan of the real classes (width 32, 3 latent frames of 4x4 tokens)."""

    name = "tiny-wan"
    hub_id = ""
    defaults = {"steps": 4, "guidance": 5.0, "frames": 9, "height": 32, "width": 32, "fps": 16.0}

    def build_pipeline(self, dtype: torch.dtype) -> Any:
        from diffusers import (
            AutoencoderKLWan,
            UniPCMultistepScheduler,
            WanPipeline,
            WanTransformer3DModel,
        )

        with seeded(0):
            transformer = WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=2,
                attention_head_dim=16,
                in_channels=16,
                out_channels=16,
                text_dim=TEXT_DIM,
                freq_dim=64,
                ffn_dim=64,
                num_layers=2,
                cross_attn_norm=True,
                qk_norm="rms_norm_across_heads",
                rope_max_seq_len=32,
            )
        with seeded(0):
            vae = AutoencoderKLWan(
                base_dim=3,
                z_dim=16,
                dim_mult=[1, 1, 1],
                num_res_blocks=1,
                temperal_downsample=[True, True],
                scale_factor_spatial=4,
                scale_factor_temporal=4,
            )
        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        )
        pipe = WanPipeline(
            tokenizer=offline_tokenizer(self.max_sequence_length or 512),
            text_encoder=tiny_t5(),
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
