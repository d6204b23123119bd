"""QVD (reconstructed): HTDQ for timestep features and SCRI for channel ranges."""

from quantizers.qvd.qvd import QVDConfig, QVDQuantizer

__all__ = ["QVDConfig", "QVDQuantizer"]
