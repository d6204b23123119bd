"""Model adapters: the only place that knows model-specific module names and call shapes.

``CATALOG`` maps each registered model name to its lazy ``"module:attr"`` adapter class;
``tiny-*`` entries are random-weight models of the real classes (tests, smoke runs).
"""

from __future__ import annotations

import importlib

CATALOG: dict[str, str] = {
    "mini": "vqbench.adapters.mini:MiniAdapter",
    "mini-outlier": "vqbench.adapters.mini_outlier:MiniOutlierAdapter",
    "tiny-latte": "vqbench.adapters.latte:TinyLatteAdapter",
    "latte": "vqbench.adapters.latte:LatteAdapter",
    "tiny-cogvideox": "vqbench.adapters.cogvideox:TinyCogVideoXAdapter",
    "cogvideox": "vqbench.adapters.cogvideox:CogVideoXAdapter",
    "tiny-cogvideox-i2v": "vqbench.adapters.cogvideox:TinyCogVideoXI2VAdapter",
    "cogvideox-i2v": "vqbench.adapters.cogvideox:CogVideoXI2VAdapter",
    "tiny-wan": "vqbench.adapters.wan:TinyWanAdapter",
    "wan": "vqbench.adapters.wan:WanAdapter",
    "tiny-wan2.2-a14b": "vqbench.adapters.wan:TinyWan22A14BAdapter",
    "wan2.2-a14b": "vqbench.adapters.wan:Wan22A14BAdapter",
    "tiny-wan2.2-ti2v-5b": "vqbench.adapters.wan:TinyWan22TI2V5BAdapter",
    "wan2.2-ti2v-5b": "vqbench.adapters.wan:Wan22TI2V5BAdapter",
    "tiny-hunyuanvideo": "vqbench.adapters.hunyuan:TinyHunyuanVideoAdapter",
    "hunyuanvideo": "vqbench.adapters.hunyuan:HunyuanVideoAdapter",
    "tiny-skyreels-v2": "vqbench.adapters.skyreels:TinySkyReelsV2Adapter",
    "skyreels-v2": "vqbench.adapters.skyreels:SkyReelsV2Adapter",
    "tiny-ltx-video": "vqbench.adapters.ltx:TinyLTXVideoAdapter",
    "ltx-video": "vqbench.adapters.ltx:LTXVideoAdapter",
    "tiny-animatediff": "vqbench.adapters.animatediff:TinyAnimateDiffAdapter",
    "animatediff": "vqbench.adapters.animatediff:AnimateDiffAdapter",
    "tiny-mochi": "vqbench.adapters.mochi:TinyMochiAdapter",
    "mochi": "vqbench.adapters.mochi:MochiAdapter",
}


def adapter_class(name: str) -> type:
    """The adapter class of catalog entry ``name`` (imported on demand)."""
    module, _, attr = CATALOG[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def adapter_for_pipeline(pipeline_cls: str) -> str | None:
    """Catalog name of the first non-tiny adapter loading diffusers class ``pipeline_cls``."""
    for name in CATALOG:
        cls = adapter_class(name)
        if cls.tiny is None and getattr(cls, "pipeline_cls", None) == pipeline_cls:
            return name
    return None
