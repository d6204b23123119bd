"""AnimateDiff (``AnimateDiffPipeline`` + ``UNetMotionModel``): an image UNet plus motion modules.

The denoiser is a UNet (component ``unet``, latent argument ``sample``), called with CFG
batched ``[uncond, cond]``. Layer roles:

- spatial transformers (``*.attentions.*``): ``attn1`` self-attention over the tokens of one
  frame (``spatial_attn``), ``attn2`` cross-attention to the CLIP text (``cross_attn``),
  ``ff`` (``mlp``); their inputs are ``[B*F, h*w, C]`` (``spatial``);
- motion modules (``*.motion_modules.*``): attention over the frames of one position, both
  ``attn1`` and ``attn2`` (``temporal_attn``), their in/out projections (``temporal_attn``)
  and ``ff`` (``mlp``); inputs ``[B*h*w, F, C]`` (``temporal``);
- ``time_embedding`` and the ResNets' ``time_emb_proj`` (``timestep_embed``).

Tokens per frame depend on the UNet level: ``down_blocks.i`` runs at the latent size over
2^i, ``up_blocks.i`` at 2^(n-1-i), ``mid_block`` at 2^(n-1).
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import offline_tokenizer, seeded, tiny_image_vae, word_vocab
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout

_TEXT = 32


class AnimateDiffAdapter(DiffusersAdapter):
    """AnimateDiff from a local ``AnimateDiffPipeline`` folder (SD 1.5 + a motion adapter)."""

    name = "animatediff"
    hub_id = "guoyww/animatediff-motion-adapter-v1-5-2"
    pipeline_cls = "AnimateDiffPipeline"
    denoiser_names = ("unet",)
    input_names = ("sample", "timestep", "encoder_hidden_states")
    defaults = {"steps": 25, "guidance": 7.5, "frames": 16, "height": 512, "width": 512}
    defaults = {**defaults, "fps": 8.0}
    role_rules = [
        ("*.motion_modules.*.ff.*", "mlp"),
        ("*.motion_modules.*", "temporal_attn"),
        ("*.attentions.*.attn1.*", "spatial_attn"),
        ("*.attentions.*.attn2.*", "cross_attn"),
        ("*.attentions.*.ff.*", "mlp"),
        ("*.attentions.*.proj_*", "spatial_attn"),
        ("*time_emb_proj", "timestep_embed"),
        ("time_embedding.*", "timestep_embed"),
    ]

    def _missing(self, path: Any) -> Any:
        """AnimateDiff has no one-repo pipeline: say how to assemble and save one."""
        if self.tiny is not None:
            return super()._missing(path)
        from vqbench.adapters.identity import ModelPathError

        return ModelPathError(
            f"model.path: no AnimateDiffPipeline folder at {str(path)!r} (model_index.json "
            "missing); assemble one: `hf download "
            f"{self.hub_id} --local-dir <adapter>`, then AnimateDiffPipeline.from_pretrained("
            "<Stable Diffusion 1.5 folder>, motion_adapter=MotionAdapter.from_pretrained("
            f"<adapter>)).save_pretrained({str(path)!r})"
        )

    def default_skip(self) -> list[str]:
        """Embedders, plus the motion modules' in/out projections.

        diffusers calls those two as ``proj_in(input=x)``, nn.Linear's own argument name,
        which the quantized linear modules (``forward(x)``) do not accept.
        """
        return [
            *super().default_skip(),
            "*.motion_modules.*.proj_in",
            "*.motion_modules.*.proj_out",
        ]

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        f = self._pipeline().vae_scale_factor
        return int(spec.frames), int(spec.height) // f, int(spec.width) // f

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        unet = self.denoiser()
        n = len(unet.down_blocks)
        levels = [(f"down_blocks.{i}.", i) for i in range(n)]
        levels += [(f"up_blocks.{i}.", n - 1 - i) for i in range(len(unet.up_blocks))]
        levels += [("mid_block.", n - 1)]
        none = TokenLayout("none")
        rules: list[tuple[str, TokenLayout]] = []
        for prefix, level in levels:
            s = (h >> level) * (w >> level)
            rules += [
                (f"{prefix}attentions.*.attn2.to_k", none),
                (f"{prefix}attentions.*.attn2.to_v", none),
                (f"{prefix}attentions.*", TokenLayout("spatial", frames=f, tokens_per_frame=s)),
                (
                    f"{prefix}motion_modules.*",
                    TokenLayout("temporal", frames=f, tokens_per_frame=s),
                ),
            ]
        return rules

    def blocks(self) -> list[str]:
        unet = self.denoiser()
        return (
            [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
            + ["mid_block"]
            + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
        )


class TinyAnimateDiffAdapter(AnimateDiffAdapter):
    """Random AnimateDiff of the real classes (width 32, 4 frames of 8x8 latent tokens)."""

    name = "tiny-animatediff"
    tiny = TinyConfig(
        geometry=(4, 64, 0),
        roles=("spatial_attn", "temporal_attn", "cross_attn", "mlp", "timestep_embed"),
        # (motion modules start with a GroupNorm over all frames: no unmixed temporal probe)
        probes=("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",),
        real="animatediff",
    )
    defaults = {"steps": 4, "guidance": 7.5, "frames": 4, "height": 32, "width": 32, "fps": 8.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        from diffusers import (
            AnimateDiffPipeline,
            DDIMScheduler,
            MotionAdapter,
            UNet2DConditionModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel

        with seeded(0):
            unet = UNet2DConditionModel(
                block_out_channels=(32, 32),
                layers_per_block=1,
                sample_size=8,
                in_channels=4,
                out_channels=4,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=_TEXT,
                attention_head_dim=8,
                norm_num_groups=4,
            )
        with seeded(0):
            motion = MotionAdapter(
                block_out_channels=(32, 32),
                motion_layers_per_block=1,
                motion_norm_num_groups=4,
                motion_num_attention_heads=4,
            )
        vae = tiny_image_vae()
        with seeded(0):
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=len(word_vocab()),
                    hidden_size=_TEXT,
                    intermediate_size=2 * _TEXT,
                    num_hidden_layers=1,
                    num_attention_heads=4,
                    max_position_embeddings=77,
                    pad_token_id=0,
                    bos_token_id=1,
                    eos_token_id=1,
                )
            ).eval()
        pipe = AnimateDiffPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=offline_tokenizer(77),
            unet=unet,
            motion_adapter=motion,
            scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False),
        )
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
