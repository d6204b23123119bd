"""EfficientDM: QALoRA distillation with LSQ weight steps."""

from quantizers.efficientdm.efficientdm import EfficientDMConfig, EfficientDMQuantizer

__all__ = ["EfficientDMConfig", "EfficientDMQuantizer"]
