"""GPTQ: Hessian-based weight quantization with per-token dynamic activations."""

from quantizers.gptq.gptq import GPTQConfig, GPTQQuantizer

__all__ = ["GPTQConfig", "GPTQQuantizer"]
