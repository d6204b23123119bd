"""RTN specifics: static per-tensor activations and the MSE clip search variant."""

from __future__ import annotations

import torch

from quantizers.core import QuantLinear
from quantizers.rtn import RTNQuantizer
from tests.conformance.conftest import build_calib, build_target


def _out(params: dict, w: int = 4, a: int = 8, kernel: str = "fake") -> torch.Tensor:
    calib = build_calib()
    q = RTNQuantizer.from_spec(w, a, kernel, params)
    target = build_target()
    q.quantize(target, q.calibrate(target, calib))
    with torch.no_grad():
        return target.forward(next(calib.batches(4))), target, q


def test_static_activations_calibrated_per_tensor():
    fake, target, q = _out({"act": "static"})
    real = _out({"act": "static"}, kernel="real")[0]
    assert q.config.a_granularity == "tensor"
    layer = target.module.get_submodule("blocks.0.fc1")
    assert isinstance(layer, QuantLinear) and layer.variants[0].a_scale.numel() == 1
    assert ((real - fake).norm() / fake.norm()).item() < 1e-3


def test_static_is_worse_than_dynamic_and_mse_clip_helps_weights():
    calib = build_calib()
    fp = build_target().forward(next(calib.batches(4))).detach()

    def err(params: dict, w: int, a: int) -> float:
        return float((_out(params, w, a)[0] - fp).norm() / fp.norm())

    assert err({"act": "static"}, 8, 4) > err({"act": "dynamic"}, 8, 4)
    assert err({"mse_clip": True}, 3, 16) < err({}, 3, 16)
