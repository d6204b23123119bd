"""CogVideoX (``CogVideoXPipeline`` + ``CogVideoXTransformer3DModel``): full 3D joint attention.

Token geometry: the causal 3D VAE compresses time by 4 (F = (frames-1)//4 + 1) and space by 8
(tiny: 4); patchify gives S = (H/8/p)*(W/8/p) tokens per frame. Each block concatenates the
text tokens *before* the video tokens for attention and the feed-forward, so their linears see
``[B, T + F*S, C]`` (``joint`` with prefix T =
``transformer.config.max_text_seq_length``, 226); ``proj_out`` sees video
tokens only. Self-attention is spatio-temporal (one attention over all frames): its linears
get the role ``spatial_attn``. The transformer output is ``[B, F, C, H, W]``.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, tiny_t5
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout


class CogVideoXAdapter(DiffusersAdapter):
    """CogVideoX from a local ``CogVideoXPipeline`` directory (THUDM/CogVideoX-2b)."""

    name = "cogvideox"
    hub_id = "THUDM/CogVideoX-2b"
    pipeline_cls = "CogVideoXPipeline"
    latent_frame_axis = 0  # latents [F, C, H, W]
    derived_kwargs = ("image_rotary_emb",)
    defaults = {"steps": 50, "guidance": 6.0, "frames": 49, "height": 480, "width": 720, "fps": 8.0}
    role_rules = [
        ("transformer_blocks.*.attn1.*", "spatial_attn"),
        ("transformer_blocks.*.ff.*", "mlp"),
        ("transformer_blocks.*.norm*.linear", "timestep_embed"),
        ("time_embedding.*", "timestep_embed"),
        ("ofs_embedding.*", "timestep_embed"),
        ("patch_embed.*", "embed"),
        ("norm_out.*", "final"),
        ("proj_out", "final"),
    ]

    def text_seq_len(self) -> int:
        """Text tokens per prompt: the transformer's ``max_text_seq_length`` (226 for 2b/5b)."""
        return int(self.denoiser().config.max_text_seq_length)

    def derived_inputs(self, module: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Rotary embeddings of the latent grid (recomputed, as the pipeline does)."""
        pipe = self._pipeline()
        if not module.config.use_rotary_positional_embeddings:
            return {"image_rotary_emb": None}
        x = kwargs["hidden_states"]
        s = pipe.vae_scale_factor_spatial
        rotary = pipe._prepare_rotary_positional_embeddings(
            x.shape[-2] * s, x.shape[-1] * s, x.shape[1], x.device
        )
        return {"image_rotary_emb": rotary}

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe = self._pipeline()
        cfg = self.denoiser().config
        f = (int(spec.frames) - 1) // pipe.vae_scale_factor_temporal + 1
        if cfg.patch_size_t is not None:
            f = -(-f // cfg.patch_size_t)
        s = pipe.vae_scale_factor_spatial * cfg.patch_size
        return f, int(spec.height) // s, int(spec.width) // s

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        f, h, w = self.latent_grid(spec)
        prefix = self.text_seq_len()
        joint = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=prefix)
        video = TokenLayout("joint", frames=f, tokens_per_frame=h * w, prefix=0)
        return [
            ("transformer_blocks.*.attn1.*", joint),
            ("transformer_blocks.*.ff.*", joint),
            ("proj_out", video),
        ]

    def output_to_frames(self, out: torch.Tensor) -> torch.Tensor:
        """Output ``[B, F, C, H, W]`` -> ``[B, F, H*W, C]``."""
        b, f, c, h, w = out.shape
        return out.permute(0, 1, 3, 4, 2).reshape(b, f, h * w, c)

    def blocks(self) -> list[str]:
        return [f"transformer_blocks.{i}" for i in range(len(self.denoiser().transformer_blocks))]


class TinyCogVideoXAdapter(CogVideoXAdapter):
    """Random-weight CogVideoX of the real classes (width 32, 3 latent frames of 4x4 tokens)."""

    name = "tiny-cogvideox"
    tiny = TinyConfig(
        geometry=(3, 16, 16),
        probes=("transformer_blocks.0.attn1.to_q",),
        real="cogvideox",
    )
    text_tokens = 16
    defaults = {"steps": 4, "guidance": 6.0, "frames": 9, "height": 32, "width": 32, "fps": 8.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        return tiny_cogvideox_pipeline(self.text_tokens, dtype)


class CogVideoXI2VAdapter(CogVideoXAdapter):
    """CogVideoX image-to-video (THUDM/CogVideoX-5b-I2V): the prompt's image as first frame.

    The pipeline concatenates the image latents to the noisy latents along channels, so the
    captured latent rows (``[F, 2C, H, W]``) carry the image conditioning and the replay
    needs nothing else.
    """

    name = "cogvideox-i2v"
    hub_id = "THUDM/CogVideoX-5b-I2V"
    pipeline_cls = "CogVideoXImageToVideoPipeline"
    needs_image = True


class TinyCogVideoXI2VAdapter(CogVideoXI2VAdapter):
    """Random CogVideoX I2V of the real classes (tiny-cogvideox's geometry)."""

    name = "tiny-cogvideox-i2v"
    tiny = TinyConfig(
        geometry=(3, 16, 16),
        probes=("transformer_blocks.0.attn1.to_q",),
        real="cogvideox-i2v",
    )
    text_tokens = 16
    defaults = TinyCogVideoXAdapter.defaults

    def build_random(self, dtype: torch.dtype) -> Any:
        return tiny_cogvideox_pipeline(self.text_tokens, dtype, i2v=True)


def tiny_cogvideox_pipeline(text_tokens: int, dtype: torch.dtype, i2v: bool = False) -> Any:
    """A random CogVideoX (or CogVideoX I2V: latent channels doubled) pipeline."""
    import diffusers
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )

    with seeded(0):
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=2,
            attention_head_dim=16,  # rotary needs head_dim % 16 == 0
            in_channels=8 if i2v else 4,
            out_channels=4,
            time_embed_dim=16,
            text_embed_dim=TEXT_DIM,
            num_layers=2,
            sample_width=8,
            sample_height=8,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=text_tokens,
            use_rotary_positional_embeddings=True,
        )
    with seeded(0):
        vae = AutoencoderKLCogVideoX(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 3,
            up_block_types=("CogVideoXUpBlock3D",) * 3,
            block_out_channels=(8, 8, 16),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
            sample_height=32,
            sample_width=32,
        )
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_end=0.012,
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        snr_shift_scale=3.0,
        timestep_spacing="trailing",
    )
    cls = "CogVideoXImageToVideoPipeline" if i2v else "CogVideoXPipeline"
    pipe = getattr(diffusers, cls)(
        tokenizer=offline_tokenizer(text_tokens),
        text_encoder=tiny_t5(),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
