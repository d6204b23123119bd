"""S2Q-VDiT: Hessian-aware salient data selection + attention-guided sparse token distillation."""

from quantizers.s2q_vdit.s2q_vdit import S2QConfig, S2QVDiTQuantizer

__all__ = ["S2QConfig", "S2QVDiTQuantizer"]
