"""Latte (``LattePipeline`` + ``LatteTransformer3DModel``): alternating spatial and temporal blocks.

Token geometry: the 2D VAE keeps every frame (F = frames), patchify gives S = (H/8/p)*(W/8/p)
tokens per frame (tiny: VAE factor 4). Spatial blocks see ``[B*F, S, C]``, temporal blocks
``[B*S, F, C]``; cross-attention keys/values see text tokens.

Text: diffusers truncates the T5 embedding to the prompt's length only for a batch of one
(``mask_feature``); with larger batches it zero-masks instead, which changes results. To keep
every sample identical to its batch-of-one result, prompts are encoded one by one and batched
in groups of equal text length. The captured text is padded; ``text_len`` restores it.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, tiny_image_vae, tiny_t5
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout

TINY_FRAMES = 8

#: roles of ``LatteTransformer3DModel`` linears (the mini world's generator shares them)
LATTE_ROLE_RULES: list[tuple[str, str]] = [
    ("transformer_blocks.*.attn2.*", "cross_attn"),
    ("transformer_blocks.*.attn1.*", "spatial_attn"),
    ("temporal_transformer_blocks.*.attn1.*", "temporal_attn"),
    ("*transformer_blocks.*.ff.*", "mlp"),
    ("adaln_single.*", "timestep_embed"),
    ("caption_projection.*", "embed"),
    ("pos_embed.*", "embed"),
    ("proj_out", "final"),
]


class LatteAdapter(DiffusersAdapter):
    """Latte-1 from a local ``LattePipeline`` directory (maxin-cn/Latte-1)."""

    name = "latte"
    hub_id = "maxin-cn/Latte-1"
    pipeline_cls = "LattePipeline"
    defaults = {"steps": 50, "guidance": 7.5, "frames": 16, "height": 512, "width": 512, "fps": 8.0}
    role_rules = LATTE_ROLE_RULES

    def geometry_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        return {
            "video_length": spec.frames,
            "height": spec.height,
            "width": spec.width,
            "clean_caption": False,
        }

    def text_groups(self, prompts: list[str], cfg: bool) -> list[tuple[list[int], dict[str, Any]]]:
        pipe = self._pipeline()
        embeds = []
        for p in prompts:
            pe, ne = pipe.encode_prompt(
                p,
                do_classifier_free_guidance=cfg,
                negative_prompt=self.negative_prompt,
                device=self.device,
                clean_caption=False,
                mask_feature=True,
            )
            embeds.append((pe, ne))
        groups: dict[int, list[int]] = {}
        for i, (pe, _) in enumerate(embeds):
            groups.setdefault(pe.shape[1], []).append(i)
        out = []
        for idx in groups.values():
            kw: dict[str, Any] = {
                "prompt": None,
                "negative_prompt": None,
                "prompt_embeds": torch.cat([embeds[i][0] for i in idx]),
                "mask_feature": False,  # already applied above
            }
            if cfg:
                kw["negative_prompt_embeds"] = torch.cat([embeds[i][1] for i in idx])
            out.append((idx, kw))
        return out

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe = self._pipeline()
        p = self.denoiser().config.patch_size
        f = pipe.vae_scale_factor
        return int(spec.frames), int(spec.height) // f // p, int(spec.width) // f // p

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        spatial = TokenLayout("spatial", frames=f, tokens_per_frame=h * w)
        temporal = TokenLayout("temporal", frames=f, tokens_per_frame=h * w)
        none = TokenLayout("none")
        return [
            ("transformer_blocks.*.attn2.to_k", none),
            ("transformer_blocks.*.attn2.to_v", none),
            ("transformer_blocks.*", spatial),
            ("temporal_transformer_blocks.*", temporal),
            ("proj_out", spatial),
        ]

    def blocks(self) -> list[str]:
        n = len(self.denoiser().transformer_blocks)
        out = []
        for i in range(n):
            out += [f"transformer_blocks.{i}", f"temporal_transformer_blocks.{i}"]
        return out


class TinyLatteAdapter(LatteAdapter):
    """Random-weight Latte of the real classes (width 32, 8 latent frames of 4x4 tokens)."""

    name = "tiny-latte"
    tiny = TinyConfig(
        geometry=(TINY_FRAMES, 16, 0),
        roles=("spatial_attn", "temporal_attn", "cross_attn", "mlp", "final"),
        probes=("transformer_blocks.0.attn1.to_q", "temporal_transformer_blocks.0.attn1.to_q"),
        real="latte",
    )
    defaults = {
        "steps": 4,
        "guidance": 7.5,
        "frames": TINY_FRAMES,
        "height": 32,
        "width": 32,
        "fps": 8.0,
    }

    def build_random(self, dtype: torch.dtype) -> Any:
        from diffusers import DDIMScheduler, LattePipeline, LatteTransformer3DModel

        with seeded(0):
            transformer = LatteTransformer3DModel(
                sample_size=8,
                num_layers=2,
                patch_size=2,
                attention_head_dim=8,
                num_attention_heads=4,
                caption_channels=TEXT_DIM,
                in_channels=4,
                cross_attention_dim=32,
                out_channels=8,
                attention_bias=True,
                activation_fn="gelu-approximate",
                num_embeds_ada_norm=1000,
                norm_type="ada_norm_single",
                norm_elementwise_affine=False,
                norm_eps=1e-6,
                video_length=TINY_FRAMES,
            )
        vae = tiny_image_vae()
        pipe = LattePipeline(
            tokenizer=offline_tokenizer(120),
            text_encoder=tiny_t5(),
            vae=vae,
            transformer=transformer,
            scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False),
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
