"""vqbench: a benchmark harness for post-training quantization of video diffusion models."""

from vqbench.compat import install_torchvision_hook as _install_torchvision_hook

__version__ = "0.1.0"

_install_torchvision_hook()
