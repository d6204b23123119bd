"""ViDiT-Q: static-dynamic channel balancing (smoothing + rotation) and its mixed precision."""

from quantizers.viditq.viditq import ViDiTQConfig, ViDiTQQuantizer

__all__ = ["ViDiTQConfig", "ViDiTQQuantizer"]
