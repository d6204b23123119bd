"""Inception-v1 I3D (Carreira & Zisserman 2017) in PyTorch, plus loaders for FVD detectors.

:class:`InceptionI3d` mirrors piergiaj/pytorch-i3d ``pytorch_i3d.py`` module for module, so its
state-dict keys (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``,
``logits.conv3d.bias``, ...) load that repository's ``rgb_imagenet.pt`` with ``strict=True``.
Convolutions and max-pools use TensorFlow "SAME" padding computed from the input size;
batch norm uses eps 1e-3 as in the converted DeepMind checkpoint.

:func:`load_torchscript_i3d` loads StyleGAN-V's ``i3d_torchscript.pt``; FVD calls it with
``rescale=False, resize=False, return_features=True`` on ``[B, 3, T, 224, 224]`` inputs in
[-1, 1] (metrics.md §1.3).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

NUM_CLASSES = 400
MIN_FRAMES = 9  # the final (2, 7, 7) average pool needs 2 time steps at 224 px


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    pad = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
    return pad // 2, pad - pad // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    t, h, w = x.shape[2:]
    pt, ph, pw = (_same_pad(n, k, s) for n, k, s in zip((t, h, w), kernel, stride, strict=True))
    return F.pad(x, (*pw, *ph, *pt))


class MaxPool3dSamePadding(nn.MaxPool3d):
    """``nn.MaxPool3d`` with TF "SAME" zero padding (inputs are post-ReLU, so zeros are safe)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_same(x, self.kernel_size, self.stride))


class Unit3D(nn.Module):
    """Conv3d (SAME padding) + optional BatchNorm3d + optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        activation: bool = True,
        batch_norm: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; maxpool 3x3x3 -> 1x1."""

    def __init__(self, in_channels: int, out: list[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


_MIXED: dict[str, tuple[int, list[int]]] = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}


class InceptionI3d(nn.Module):
    """I3D up to the Kinetics logits; input ``[B, 3, T, H, W]`` in [-1, 1].

    ``forward`` returns the logits ``[B, num_classes, T', H', W']`` (T' = H' = W' = 1 for
    16x224x224 input); :meth:`features` averages them over time and space (the 400-d FVD
    embedding, pre-softmax).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))
        self.Mixed_3b = InceptionModule(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionModule(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, InceptionModule(*_MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSamePadding(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.Mixed_5b = InceptionModule(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionModule(*_MIXED["Mixed_5c"])
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(1024, num_classes, activation=False, batch_norm=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects [B, 3, T, H, W], got {tuple(x.shape)}")
        for name, child in self.named_children():
            if name in ("avg_pool", "dropout", "logits"):
                break
            x = child(x)
        if x.shape[2] < 2 or x.shape[3] < 7 or x.shape[4] < 7:
            raise ValueError(
                f"I3D input too small: Mixed_5c output {tuple(x.shape[2:])} is smaller than the "
                f"(2, 7, 7) average pool; use >= {MIN_FRAMES} frames at 224x224"
            )
        return self.logits(self.dropout(self.avg_pool(x)))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax logits averaged over time and space, ``[B, num_classes]``."""
        return self.forward(x).mean(dim=(2, 3, 4))


def load_i3d(path: str | Path, device: torch.device | str = "cpu") -> InceptionI3d:
    """Load piergiaj's ``rgb_imagenet.pt`` (or any state dict with its keys), ``strict=True``.

    Checkpoints from PyTorch < 0.4 lack the BatchNorm ``num_batches_tracked`` buffers; they are
    filled with zeros (they are not used in eval mode).
    """
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in [k for k in state if k.endswith(".bn.running_mean")]:
        state.setdefault(key.replace("running_mean", "num_batches_tracked"), torch.tensor(0))
    model = InceptionI3d()
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def load_torchscript_i3d(
    path: str | Path, device: torch.device | str = "cpu"
) -> torch.jit.ScriptModule:
    """Load StyleGAN-V's TorchScript I3D detector (``i3d_torchscript.pt``)."""
    model = torch.jit.load(str(path), map_location=str(device))
    return model.eval()
