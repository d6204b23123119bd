"""RTN: round-to-nearest min-max weights with dynamic per-token or static per-tensor acts."""

from quantizers.rtn.rtn import RTNConfig, RTNQuantizer

__all__ = ["RTNConfig", "RTNQuantizer"]
