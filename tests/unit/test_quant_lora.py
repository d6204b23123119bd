"""QALoRA + LSQ (``quantizers.core.lora``): merge invariance, gradients, distillation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantizers.core import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.lora import QALoRALinear, kaiming_uniform, merge
from quantizers.efficientdm import EfficientDMQuantizer
from quantizers.rtn import RTNQuantizer
from tests.conformance.conftest import build_calib, build_target


def _layer(spec: LayerSpec, act_quant: bool = True) -> tuple[nn.Linear, QALoRALinear]:
    torch.manual_seed(0)
    linear = nn.Linear(8, 6)
    layer = QALoRALinear(linear, spec, rank=3, generator=torch.Generator().manual_seed(1))
    layer.act_quant = act_quant
    with torch.no_grad():  # a trained-looking state: nonzero LoRA, moved step sizes
        layer.lora_b.normal_(0, 0.05)
        layer.lsq.delta.mul_(1.1)
    return linear, layer


@pytest.mark.parametrize("gran", ["channel", "group", "tensor"])
def test_merging_lora_leaves_the_output_unchanged(gran):
    spec = LayerSpec(w_bits=4, a_bits=6, w_granularity=gran, group_size=4)
    linear, layer = _layer(spec)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        trained = layer(x)
        w, qw = merge(layer)
        fake = QuantLinear(linear, [QuantVariant(spec, "fake", w, qw)])(x)
        real = QuantLinear(linear, [QuantVariant(spec, "real", w, qw)])(x)
        unmerged = QuantLinear(linear, [QuantVariant(spec, "fake", linear.weight, None)])(x)
    torch.testing.assert_close(fake, trained, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(real, trained, atol=1e-4, rtol=1e-4)
    assert (unmerged - trained).abs().max() > 1e-3  # the LoRA and steps did change the layer
    assert torch.equal(w, linear.weight + layer.lora_b @ layer.lora_a)


def test_lora_init_and_gradients():
    spec = LayerSpec(w_bits=3, a_bits=16)
    linear = nn.Linear(8, 6)
    layer = QALoRALinear(linear, spec, rank=32, generator=torch.Generator().manual_seed(0))
    assert layer.lora_a.shape == (6, 8) and layer.lora_b.shape == (6, 6)  # rank capped
    assert torch.equal(layer.lora_b, torch.zeros(6, 6))
    assert layer.lora_a.abs().max() <= 8**-0.5
    a2 = kaiming_uniform(6, 8, torch.Generator().manual_seed(0))
    assert torch.equal(layer.lora_a.detach(), a2)  # seeded
    layer(torch.randn(4, 8)).square().sum().backward()
    assert layer.lora_b.grad.abs().sum() > 0 and layer.lsq.delta.grad.abs().sum() > 0
    assert linear.weight.grad is not None  # frozen only inside distill()


def test_distill_learns_and_restores_the_model():
    calib = build_calib()
    batch = next(calib.batches(4))
    fp = build_target().forward(batch).detach()
    target = build_target()
    before = {k: v.clone() for k, v in target.module.state_dict().items()}
    q = EfficientDMQuantizer.from_spec(3, 16, params={"iters": 40, "lr_lora": 2e-3})
    state = q.calibrate(target, calib)
    assert state.meta["iters"] == 40
    assert state.meta["loss_last"]["mse"] < 0.7 * state.meta["loss_first"]["mse"]
    mods = dict(target.module.named_modules())
    assert all(type(mods[n]) is nn.Linear for n in target.roles)
    assert all(torch.equal(v, target.module.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in target.module.parameters())
    q.quantize(target, state)
    with torch.no_grad():
        err = float((target.forward(batch) - fp).norm() / fp.norm())
    rtn = RTNQuantizer.from_spec(3, 16)
    t2 = build_target()
    rtn.quantize(t2, rtn.calibrate(t2, calib))
    with torch.no_grad():
        err_rtn = float((t2.forward(batch) - fp).norm() / fp.norm())
    assert err < 0.8 * err_rtn


def test_config_validation():
    with pytest.raises(ValueError, match="a_granularity"):
        EfficientDMQuantizer.from_spec(4, 8, params={"a_granularity": "tensor"})
    with pytest.raises(ValueError, match="lr_lora"):
        EfficientDMQuantizer.from_spec(4, 8, params={"lr_lora": -1.0})
