"""Model adapters: the only place that knows model-specific module names and call shapes.

``CATALOG`` maps each registered model name to its lazy ``"module:attr"`` adapter class.
"""

CATALOG: dict[str, str] = {
    "mini": "vqbench.adapters.mini:MiniAdapter",
    "tiny-latte": "vqbench.adapters.latte:TinyLatteAdapter",
    "latte": "vqbench.adapters.latte:LatteAdapter",
    "tiny-cogvideox": "vqbench.adapters.cogvideox:TinyCogVideoXAdapter",
    "cogvideox": "vqbench.adapters.cogvideox:CogVideoXAdapter",
    "tiny-wan": "vqbench.adapters.wan:TinyWanAdapter",
    "wan": "vqbench.adapters.wan:WanAdapter",
}
