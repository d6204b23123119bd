"""QuantLinear: fake vs real numerics per bit setting, packing, memory, variants, calibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantizers.core.calib import capture_block_io
from quantizers.core.context import sampling_step
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.quantizer import fake_quant_act, fake_quant_weight

# relative L2 error of real vs fake on one layer: identical codes, float summation order only
TOL = 1e-5


def _layer(k: int = 48, n: int = 24, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n)


@pytest.mark.parametrize(
    "spec",
    [
        LayerSpec(8, 8),
        LayerSpec(4, 8),
        LayerSpec(4, 8, w_symmetric=True, a_symmetric=True),
        LayerSpec(3, 6),
        LayerSpec(2, 4, "group", 16),
        LayerSpec(8, 8, "tensor"),
        LayerSpec(6, 6, w_symmetric=True),
    ],
)
def test_real_matches_fake_and_reference(spec):
    lin = _layer()
    x = torch.randn(2, 5, 48) * 3 + 0.5
    fake = QuantLinear(lin, [QuantVariant(spec, "fake", lin.weight)])
    real = QuantLinear(lin, [QuantVariant(spec, "real", lin.weight)])
    ref = nn.functional.linear(
        fake_quant_act(x, spec.a_bits, spec.a_symmetric),
        fake_quant_weight(
            lin.weight, spec.w_bits, spec.w_granularity, spec.group_size, spec.w_symmetric
        ),
        lin.bias,
    )
    with torch.no_grad():
        yf, yr = fake(x), real(x)
    assert yr.shape == (2, 5, 24)
    assert torch.allclose(yf, ref, atol=1e-5)
    assert ((yr - yf).norm() / yf.norm()).item() < TOL


def test_static_per_tensor_activation_real_matches_fake():
    lin = _layer()
    spec = LayerSpec(8, 8, a_granularity="tensor")
    rng = (torch.tensor(-4.0), torch.tensor(6.0))
    x = torch.randn(7, 48) * 2
    f = QuantLinear(lin, [QuantVariant(spec, "fake", lin.weight, act_range=rng)])
    r = QuantLinear(lin, [QuantVariant(spec, "real", lin.weight, act_range=rng)])
    with torch.no_grad():
        assert ((r(x) - f(x)).norm() / f(x).norm()).item() < TOL
    with pytest.raises(ValueError, match="act_range"):
        QuantVariant(spec, "fake", lin.weight)


def test_memory_bytes_w4_vs_fp16_on_latte_width():
    lin = nn.Linear(1152, 1152, bias=False)
    fp16 = 1152 * 1152 * 2
    w4 = QuantLinear(lin, [QuantVariant(LayerSpec(4, 8, w_symmetric=True), "real", lin.weight)])
    w8 = QuantLinear(lin, [QuantVariant(LayerSpec(8, 8, w_symmetric=True), "real", lin.weight)])
    assert w4.variants[0].qweight.numel() == 1152 * 576  # two codes per byte
    assert 3.95 < fp16 / w4.memory_bytes() <= 4.0
    assert 1.98 < fp16 / w8.memory_bytes() <= 2.0


def test_variants_follow_sampling_step():
    lin = _layer()
    v4 = QuantVariant(LayerSpec(4, 8), "fake", lin.weight)
    v8 = QuantVariant(LayerSpec(8, 8), "fake", lin.weight)
    ql = QuantLinear(lin, [v4, v8], early_steps=2)
    assert ql.variant_index() == 0
    with sampling_step(1, 10, 900.0):
        assert ql.variant_index() == 1
    with sampling_step(2, 10, 800.0):
        assert ql.variant_index() == 0
    tl = QuantLinear(lin, [v4, v8], t_edges=(500.0,))
    with sampling_step(0, timestep=700.0):
        assert tl.variant_index() == 1
    with pytest.raises(ValueError, match="variants"):
        QuantLinear(lin, [v4], early_steps=1)


def test_capture_block_io_respects_byte_budget():
    from tests.conformance.conftest import build_calib, build_target

    target, calib = build_target(), build_calib()
    full = capture_block_io(target, calib, max_bytes=1 << 30, batch_size=2)
    small = capture_block_io(target, calib, max_bytes=40_000, batch_size=2)
    assert len(full["blocks.0"].args) == len(calib) // 2
    kept = len(small["blocks.0"].args)
    assert 1 <= kept < len(full["blocks.0"].args)
    out = target.module.blocks[0](*full["blocks.0"].args[0])
    assert torch.allclose(out, full["blocks.0"].outputs[0])
