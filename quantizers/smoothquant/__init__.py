"""SmoothQuant: per-channel smoothing scales (timestep-aware), per-token dynamic activations."""

from quantizers.smoothquant.smoothquant import SmoothQuantConfig, SmoothQuantQuantizer

__all__ = ["SmoothQuantConfig", "SmoothQuantQuantizer"]
