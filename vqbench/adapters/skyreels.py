"""SkyReels-V2 T2V (``SkyReelsV2Pipeline`` + ``SkyReelsV2Transformer3DModel``).

The transformer is Wan's architecture (3D self-attention, cross-attention, the causal Wan VAE)
and the pipeline calls it as Wan 2.1 does (cond, then uncond, per step), so the Wan adapter's
roles, layouts and geometry apply unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from vqbench.adapters.base import TinyConfig
from vqbench.adapters.wan import _TINY_PROBES, _TINY_ROLES, WanAdapter, tiny_wan_pipeline


class SkyReelsV2Adapter(WanAdapter):
    """SkyReels-V2 T2V from a local folder (Skywork/SkyReels-V2-T2V-14B-540P-Diffusers)."""

    name = "skyreels-v2"
    hub_id = "Skywork/SkyReels-V2-T2V-14B-540P-Diffusers"
    pipeline_cls = "SkyReelsV2Pipeline"
    denoiser_names = ("transformer",)
    defaults = {"steps": 50, "guidance": 6.0, "frames": 97, "height": 544, "width": 960}
    defaults = {**defaults, "fps": 24.0}


class TinySkyReelsV2Adapter(SkyReelsV2Adapter):
    """Random SkyReels-V2 of the real classes (Wan's tiny geometry)."""

    name = "tiny-skyreels-v2"
    tiny = TinyConfig(
        geometry=(3, 16, 0), roles=_TINY_ROLES, probes=_TINY_PROBES, real="skyreels-v2"
    )
    defaults = {"steps": 4, "guidance": 6.0, "frames": 9, "height": 32, "width": 32, "fps": 24.0}

    def build_random(self, dtype: torch.dtype) -> Any:
        family = ("SkyReelsV2Pipeline", "SkyReelsV2Transformer3DModel")
        return tiny_wan_pipeline(512, dtype, family=family)
