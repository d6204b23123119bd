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

from vqbench.adapters._diffusers import DiffusersAdapter
from vqbench.adapters._tiny import TEXT_DIM, offline_tokenizer, seeded, tiny_t5
from vqbench.adapters.base import TinyConfig
from vqbench.config import GenerationSpec
from vqbench.types import CalibrationSet, TokenLayout

_TINY_ROLES = ("spatial_attn", "cross_attn", "mlp", "final")
_TINY_PROBES = ("blocks.0.attn1.to_q",)


class WanAdapter(DiffusersAdapter):
    """Wan 2.1 T2V from a local ``WanPipeline`` directory (Wan-AI/Wan2.1-T2V-1.3B-Diffusers)."""

    name = "wan"
    hub_id = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    pipeline_cls = "WanPipeline"
    denoiser_names = ("transformer", "transformer_2")
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

    def calibration_for(self, name: str, calib: CalibrationSet) -> CalibrationSet:
        """Wan 2.2 experts: ``transformer`` serves t >= boundary, ``transformer_2`` the rest.

        The boundary is the pipeline's rule: ``boundary_ratio * num_train_timesteps``.
        """
        rows = super().calibration_for(name, calib)
        boundary = self.boundary_timestep()
        if boundary is None:
            return rows
        high = calib.timesteps.double() >= boundary
        keep = high if name == "transformer" else ~high
        return calib.subset(keep.nonzero().flatten())

    def boundary_timestep(self) -> float | None:
        """Timestep where sampling switches from ``transformer`` to ``transformer_2``."""
        pipe = self._pipeline()
        ratio = pipe.config.get("boundary_ratio")
        if ratio is None or getattr(pipe, "transformer_2", None) is None:
            return None
        return float(ratio) * float(pipe.scheduler.config.num_train_timesteps)

    def row_kinds(self, call_in_step: int, n: int, cfg: bool) -> tuple[list[bool], list[int]]:
        """Wan runs cond (first call of a step) and uncond (second call) separately."""
        return [cfg and call_in_step % 2 == 1] * n, list(range(n))

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        pipe = self._pipeline()
        p_t, p_h, p_w = self.denoiser().config.patch_size
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
    tiny = TinyConfig(geometry=(3, 16, 0), roles=_TINY_ROLES, probes=_TINY_PROBES, real="wan")
    defaults = {"steps": 4, "guidance": 5.0, "frames": 9, "height": 32, "width": 32, "fps": 16.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        return tiny_wan_pipeline(self.max_sequence_length or 512, dtype)


class Wan22A14BAdapter(WanAdapter):
    """Wan 2.2 T2V A14B: two experts, ``transformer`` (high noise) and ``transformer_2`` (low)."""

    name = "wan2.2-a14b"
    hub_id = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    defaults = {
        "steps": 40,
        "guidance": 4.0,
        "frames": 81,
        "height": 720,
        "width": 1280,
        "fps": 16.0,
    }


class Wan22TI2V5BAdapter(WanAdapter):
    """Wan 2.2 TI2V 5B (text-to-video mode): per-token timesteps (``expand_timesteps``)."""

    name = "wan2.2-ti2v-5b"
    hub_id = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    defaults = {
        "steps": 50,
        "guidance": 5.0,
        "frames": 121,
        "height": 704,
        "width": 1280,
        "fps": 24.0,
    }


class TinyWan22A14BAdapter(Wan22A14BAdapter):
    """Random two-expert Wan 2.2 (boundary ratio 0.875, as the real A14B)."""

    name = "tiny-wan2.2-a14b"
    tiny = TinyConfig(
        geometry=(3, 16, 0), roles=_TINY_ROLES, probes=_TINY_PROBES, real="wan2.2-a14b"
    )
    defaults = TinyWanAdapter.defaults

    def build_random(self, dtype: torch.dtype) -> Any:
        return tiny_wan_pipeline(512, dtype, experts=2, boundary_ratio=0.875)


class TinyWan22TI2V5BAdapter(Wan22TI2V5BAdapter):
    """Random Wan 2.2 TI2V-style pipeline (``expand_timesteps=True``)."""

    name = "tiny-wan2.2-ti2v-5b"
    tiny = TinyConfig(
        geometry=(3, 16, 0), roles=_TINY_ROLES, probes=_TINY_PROBES, real="wan2.2-ti2v-5b"
    )
    defaults = TinyWanAdapter.defaults

    def build_random(self, dtype: torch.dtype) -> Any:
        return tiny_wan_pipeline(512, dtype, expand_timesteps=True)


def _tiny_transformer(seed: int, cls_name: str = "WanTransformer3DModel") -> Any:
    import diffusers

    with seeded(seed):
        return getattr(diffusers, cls_name)(
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


def tiny_wan_pipeline(
    text_len: int,
    dtype: torch.dtype,
    experts: int = 1,
    family: tuple[str, str] = ("WanPipeline", "WanTransformer3DModel"),
    **config: Any,
) -> Any:
    """A random Wan-family pipeline of the real classes: one transformer, or two (Wan 2.2).

    ``family``: (pipeline class, transformer class) in ``diffusers`` (SkyReels-V2 reuses Wan's).
    """
    import diffusers
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler

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
    if experts == 2:
        config["transformer_2"] = _tiny_transformer(1, family[1])
    pipe = getattr(diffusers, family[0])(
        tokenizer=offline_tokenizer(text_len),
        text_encoder=tiny_t5(),
        vae=vae,
        transformer=_tiny_transformer(0, family[1]),
        scheduler=scheduler,
        **config,
    )
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
