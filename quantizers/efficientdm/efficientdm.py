"""EfficientDM (He et al., ICLR 2024) as Q-VDiT's code runs it (methods.md §5.7, §2.9).

A rank-``r`` LoRA inside the weight quantizer (``LSQ(W + B A)``) and learnable weight steps,
distilled end to end to the FP denoiser's outputs on the captured FP trajectories (MSE),
then merged into the weights before the final quantization. Everything lives in
:mod:`quantizers.core.lora`; this module only registers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantizers.core.lora import QALoRAConfig, QALoRAQuantizer


@dataclass(frozen=True)
class EfficientDMConfig(QALoRAConfig):
    """See :class:`~quantizers.core.lora.QALoRAConfig` for the distillation settings."""


class EfficientDMQuantizer(QALoRAQuantizer):
    """QALoRA + LSQ distillation; per-channel weights, dynamic per-token activations."""

    name = "efficientdm"
    config_cls = EfficientDMConfig
