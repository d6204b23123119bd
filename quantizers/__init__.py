"""Quantization methods for video diffusion transformers, one folder per method.

``CATALOG`` maps each registered name to its lazy ``"module:attr"`` entry; vqbench's
quantizer registry is built from it. ``quantizers.core`` is the shared substrate.
"""

CATALOG: dict[str, str] = {
    "efficientdm": "quantizers.efficientdm:EfficientDMQuantizer",
    "gptq": "quantizers.gptq:GPTQQuantizer",
    "ptq4dit": "quantizers.ptq4dit:PTQ4DiTQuantizer",
    "q_vdit": "quantizers.q_vdit:QVDiTQuantizer",
    "quarot": "quantizers.quarot:QuaRotQuantizer",
    "qvd": "quantizers.qvd:QVDQuantizer",
    "rtn": "quantizers.rtn:RTNQuantizer",
    "s2q_vdit": "quantizers.s2q_vdit:S2QVDiTQuantizer",
    "smoothquant": "quantizers.smoothquant:SmoothQuantQuantizer",
    "viditq": "quantizers.viditq:ViDiTQQuantizer",
}
