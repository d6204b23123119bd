"""Quantization methods for video diffusion transformers, one folder per method.

``CATALOG`` maps each registered name to its lazy ``"module:attr"`` entry; vqbench's
quantizer registry is built from it. ``quantizers.core`` is the shared substrate.
"""

CATALOG: dict[str, str] = {
    "gptq": "quantizers.gptq:GPTQQuantizer",
    "quarot": "quantizers.quarot:QuaRotQuantizer",
    "rtn": "quantizers.rtn:RTNQuantizer",
    "smoothquant": "quantizers.smoothquant:SmoothQuantQuantizer",
}
