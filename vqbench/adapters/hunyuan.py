"""HunyuanVideo (``HunyuanVideoPipeline`` + ``HunyuanVideoTransformer3DModel``).

Guidance is *embedded*: the scale enters the denoiser as an input (``guidance``), there is
one (cond) call per step and no uncond rows. Besides latents, timestep and the Llama text
embedding, each call carries ``encoder_attention_mask``, ``pooled_projections`` (CLIP) and
``guidance``; capture stores them per row and the replay passes them back.

Token geometry: the causal 3D VAE compresses time by 4 and space by 8 (tiny: 4); patch
(1, 2, 2) (tiny: 1). Dual-stream blocks (``transformer_blocks``) keep image and text tokens
apart in their linears but attend over video tokens with the text tokens *appended*; the
single-stream blocks append them in their linears too. ``TokenLayout`` describes a prefix
only, so every attention linear and the single-stream blocks get ``none`` (frameless: the
attention maps' key axis would not match a video-only layout); the dual-stream image MLP
sees ``[B, F*S, C]`` (``joint``, no prefix), its text twin (``ff_context``) text tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, word_vocab
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout


class HunyuanVideoAdapter(DiffusersAdapter):
    """HunyuanVideo T2V from a local folder (hunyuanvideo-community/HunyuanVideo)."""

    name = "hunyuanvideo"
    hub_id = "hunyuanvideo-community/HunyuanVideo"
    pipeline_cls = "HunyuanVideoPipeline"
    cfg_policy = "embedded"
    defaults = {"steps": 50, "guidance": 6.0, "frames": 129, "height": 720, "width": 1280}
    defaults = {**defaults, "fps": 24.0}
    role_rules = [
        ("transformer_blocks.*.attn.*", "spatial_attn"),
        ("transformer_blocks.*.ff*", "mlp"),
        ("transformer_blocks.*.norm1*.linear", "timestep_embed"),
        ("single_transformer_blocks.*.attn.*", "spatial_attn"),
        ("single_transformer_blocks.*.proj_mlp", "mlp"),
        ("single_transformer_blocks.*.proj_out", "mlp"),
        ("single_transformer_blocks.*.norm.linear", "timestep_embed"),
        ("time_text_embed.*", "timestep_embed"),
        ("context_embedder.time_text_embed.*", "timestep_embed"),
        ("context_embedder.*", "embed"),
        ("x_embedder.*", "embed"),
        ("norm_out.*", "final"),
        ("proj_out", "final"),
    ]

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe, cfg = self._pipeline(), self.denoiser().config
        f = ((int(spec.frames) - 1) // pipe.vae_scale_factor_temporal + 1) // cfg.patch_size_t
        s = pipe.vae_scale_factor_spatial * cfg.patch_size
        return f, int(spec.height) // s, int(spec.width) // s

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        video = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=0)
        return [
            ("transformer_blocks.*.ff.*", video),
            ("proj_out", video),
        ]

    def blocks(self) -> list[str]:
        d = self.denoiser()
        return [f"transformer_blocks.{i}" for i in range(len(d.transformer_blocks))] + [
            f"single_transformer_blocks.{i}" for i in range(len(d.single_transformer_blocks))
        ]


class TinyHunyuanVideoAdapter(HunyuanVideoAdapter):
    """Random HunyuanVideo of the real classes (width 32, 3 latent frames of 4x4 tokens)."""

    name = "tiny-hunyuanvideo"
    tiny = TinyConfig(
        geometry=(3, 16, 0),
        real="hunyuanvideo",
        frameless=(
            "transformer_blocks.*.attn.*",
            "transformer_blocks.*.ff_context.*",
            "single_transformer_blocks.*",
        ),
    )
    defaults = {"steps": 4, "guidance": 6.0, "frames": 9, "height": 16, "width": 16, "fps": 8.0}
    text_tokens = 16

    def call_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        """The tiny text stack has no Llama chat template: no template tokens to crop."""
        kw = super().call_kwargs(spec)
        return {**kw, "prompt_template": {"template": "{}", "crop_start": 0}}

    def text_groups(self, prompts: list[str], cfg: bool) -> list[tuple[list[int], dict[str, Any]]]:
        return [(list(range(len(prompts))), {"prompt": prompts, "max_sequence_length": 16})]

    def build_random(self, dtype: torch.dtype) -> Any:
        from diffusers import (
            AutoencoderKLHunyuanVideo,
            FlowMatchEulerDiscreteScheduler,
            HunyuanVideoPipeline,
            HunyuanVideoTransformer3DModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

        vocab = len(word_vocab())
        with seeded(0):
            transformer = HunyuanVideoTransformer3DModel(
                in_channels=4,
                out_channels=4,
                num_attention_heads=2,
                attention_head_dim=16,
                num_layers=1,
                num_single_layers=1,
                num_refiner_layers=1,
                patch_size=1,
                patch_size_t=1,
                text_embed_dim=TEXT_DIM,
                pooled_projection_dim=TEXT_DIM,
                rope_axes_dim=(4, 6, 6),
            )
        with seeded(0):
            vae = AutoencoderKLHunyuanVideo(
                latent_channels=4,
                down_block_types=("HunyuanVideoDownBlock3D",) * 3,
                up_block_types=("HunyuanVideoUpBlock3D",) * 3,
                block_out_channels=(8, 8, 16),
                layers_per_block=1,
                norm_num_groups=4,
                spatial_compression_ratio=4,
                temporal_compression_ratio=4,
            )
        with seeded(0):
            llama = LlamaModel(
                LlamaConfig(
                    vocab_size=vocab,
                    hidden_size=TEXT_DIM,
                    intermediate_size=2 * TEXT_DIM,
                    num_hidden_layers=3,
                    num_attention_heads=4,
                    num_key_value_heads=2,
                    pad_token_id=0,
                )
            ).eval()
        with seeded(0):
            clip_text = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=vocab,
                    hidden_size=TEXT_DIM,
                    intermediate_size=2 * TEXT_DIM,
                    num_hidden_layers=1,
                    num_attention_heads=4,
                    projection_dim=TEXT_DIM,
                    max_position_embeddings=77,
                    pad_token_id=0,
                    bos_token_id=1,
                    eos_token_id=1,
                )
            ).eval()
        pipe = HunyuanVideoPipeline(
            text_encoder=llama,
            tokenizer=offline_tokenizer(self.text_tokens),
            transformer=transformer,
            vae=vae,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
            text_encoder_2=clip_text,
            tokenizer_2=offline_tokenizer(77),
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
