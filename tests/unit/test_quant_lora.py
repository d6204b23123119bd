"""QALoRA + LSQ (``quantizers.core.lora``, ``.distill``): merge invariance, gradients,
distillation, its schedule, held-out split, best-state selection and guard."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from quantizers.core import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.distill import evenly, lr_factor, split_holdout
from quantizers.core.lora import QALoRALinear, kaiming_uniform, merge
from quantizers.efficientdm import EfficientDMQuantizer
from quantizers.q_vdit import QVDiTQuantizer
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
    for bad in ({"holdout": 1.0}, {"eval_every": 0}, {"eval_rows": 0}, {"warmup_iters": -1}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))}"):
            EfficientDMQuantizer.from_spec(4, 8, params=bad)
    assert EfficientDMQuantizer().config.version == "2"


def test_warmup_cosine_schedule_by_hand():
    # 10 steps, 2 of warm-up: (i + 1) / 2, then 0.5 (1 + cos(pi (i - 2) / 8))
    expect = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 8)), 0.5 * (1 + math.cos(math.pi / 4))]
    got = [lr_factor(i, 10, 2) for i in range(5)]
    assert got == pytest.approx(expect, abs=1e-12)
    assert lr_factor(6, 10, 2) == pytest.approx(0.5)
    assert lr_factor(10, 10, 2) == 0.0 and lr_factor(2, 3, 10) == 1.0  # warm-up capped at iters
    # no warm-up is torch's CosineAnnealingLR(T_max=iters, eta_min=0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.0)
    for i in range(7):
        assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * lr_factor(i, 7, 0), abs=1e-12)
        opt.step()
        sched.step()


def test_holdout_split_keeps_whole_prompts_out():
    calib = build_calib(num_prompts=4)  # 8 rows per prompt
    train, held = split_holdout(calib, 0.25, seed=3)
    assert len(held) == 8 and len(train) == 24
    assert set(train.tolist()).isdisjoint(held.tolist())
    held_prompts = set(calib.prompt_index[held].tolist())
    assert len(held_prompts) == 1 and held_prompts.isdisjoint(calib.prompt_index[train].tolist())
    assert len(split_holdout(calib, 0.9)[0]) == 8  # at least one prompt stays for training
    one = calib.subset(torch.nonzero(calib.prompt_index == 0).flatten())
    train1, held1 = split_holdout(one, 0.25)  # one prompt: rows are held out
    assert len(held1) == 2 and len(train1) == 6
    assert len(split_holdout(calib, 0.0)[1]) == 0
    assert evenly(torch.arange(10), 4).tolist() == [0, 3, 6, 9]


@pytest.mark.parametrize("cls", [EfficientDMQuantizer, QVDiTQuantizer])
def test_guard_keeps_the_start_state_when_training_diverges(cls):
    calib, batch = build_calib(), next(build_calib().batches(4))
    start_q = cls.from_spec(4, 8, params={"iters": 0})
    start = start_q.calibrate(build_target(), calib)
    q = cls.from_spec(4, 8, params={"iters": 6, "lr_lora": 1e3, "lr_delta": 1.0})
    state = q.calibrate(build_target(), calib)
    d = state.meta["distill"]
    assert d["guard_fired"] and d["restored"] == "start" and d["best_iter"] == 0
    assert d["best_loss"] == d["start_loss"]
    assert d["diverged_at"] is not None or d["final_loss"] > 100 * d["start_loss"]
    assert state.tensors.keys() == start.tensors.keys()
    assert all(torch.equal(v, start.tensors[k]) for k, v in state.tensors.items())
    assert state.meta["record"] == ["distill"]
    outs = []
    for qq, st in ((start_q, start), (q, state)):
        target = build_target()
        qq.quantize(target, st)
        with torch.no_grad():
            outs.append(target.forward(batch))
    assert torch.equal(outs[0], outs[1])
    last = cls.from_spec(
        4, 8, params={"iters": 6, "lr_lora": 1e3, "lr_delta": 1.0, "keep_best": False}
    )
    kept = last.calibrate(build_target(), calib)
    assert kept.meta["distill"]["restored"] == "last" and not kept.meta["distill"]["guard_fired"]
    assert not torch.equal(
        kept.tensors[next(k for k in kept.tensors if "w_delta" in k)],
        start.tensors[next(k for k in start.tensors if "w_delta" in k)],
    )


def test_best_heldout_state_is_restored():
    calib = build_calib()
    params = {"iters": 24, "lr_lora": 1e-4, "lr_delta": 1e-5, "eval_every": 2, "warmup_iters": 2}
    q = EfficientDMQuantizer.from_spec(4, 8, params=params)
    state = q.calibrate(build_target(), calib)
    d = state.meta["distill"]
    curve = dict(d["curve"])
    assert sorted(curve) == list(range(0, 25, 2)) and curve[0] == d["start_loss"]
    assert 0 < d["best_iter"] < 24 and not d["guard_fired"] and d["restored"] == "best"
    assert d["best_loss"] == min(curve.values()) < d["final_loss"]
    # the deployed model's loss on the held-out rows is the best one, not the last one
    _, held = split_holdout(calib, q.config.holdout, q.config.seed)
    rows = calib.subset(evenly(held, q.config.eval_rows))
    target = build_target()
    q.quantize(target, state)
    with torch.no_grad():
        out = target.forward(next(rows.batches(len(rows))))
    loss = float(torch.nn.functional.mse_loss(out, rows.outputs))
    assert loss == pytest.approx(d["best_loss"], rel=1e-4)
