"""PTQ4DiT: Channel-wise Salience Balancing with Spearman's-rho-guided Salience Calibration."""

from quantizers.ptq4dit.ptq4dit import PTQ4DiTConfig, PTQ4DiTQuantizer

__all__ = ["PTQ4DiTConfig", "PTQ4DiTQuantizer"]
