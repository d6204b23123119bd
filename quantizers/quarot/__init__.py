"""QuaRot-style online (block) Hadamard rotation with RTN or GPTQ weights."""

from quantizers.quarot.quarot import QuaRotConfig, QuaRotQuantizer

__all__ = ["QuaRotConfig", "QuaRotQuantizer"]
