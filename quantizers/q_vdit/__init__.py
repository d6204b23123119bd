"""Q-VDiT: token-aware quantization estimator (TQE) and temporal maintenance distillation (TMD)."""

from quantizers.q_vdit.q_vdit import QVDiTConfig, QVDiTQuantizer, output_frames
from quantizers.q_vdit.tmd import tmd_loss, tmd_rows
from quantizers.q_vdit.tqe import TQEBranch, TQEQuantLinear, eq9_m

__all__ = [
    "QVDiTConfig",
    "QVDiTQuantizer",
    "TQEBranch",
    "TQEQuantLinear",
    "eq9_m",
    "output_frames",
    "tmd_loss",
    "tmd_rows",
]
