"""Metrics for generated videos, one module per metric family.

``CATALOG`` maps each registered name to its lazy ``"module:attr"`` entry; vqbench's metric
registry is built from it.
"""

CATALOG: dict[str, str] = {
    "psnr_fp": "metrics.fidelity:PSNRvsFP",
    "ssim_fp": "metrics.fidelity:SSIMvsFP",
}
