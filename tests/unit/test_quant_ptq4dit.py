"""PTQ4DiT specifics on hand-sized tensors: Spearman's rho, CSB salience, SSC weights, folding."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from quantizers.core import LayerSpec, QuantLinear
from quantizers.core.balance import (
    TimestepStats,
    balance_vector,
    channel_salience,
    rankdata,
    salience_weights,
    spearman_rho,
    timestep_edges,
)
from quantizers.core.observers import bucket_of
from quantizers.core.policy import LayerPlan
from quantizers.ptq4dit import PTQ4DiTQuantizer
from quantizers.ptq4dit.ptq4dit import balanced_range, csb_ssc
from tests.conformance.conftest import build_calib, build_target
from vqbench.types import QuantState


@pytest.mark.parametrize(
    "a, b",
    [
        ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]),
        ([0.5, 2.0, 2.0, 7.0, 1.0], [1.0, 3.0, 2.0, 2.0, 9.0]),  # ties on both sides
        ([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0]),
    ],
)
def test_spearman_matches_scipy(a, b):
    ours = spearman_rho(torch.tensor(a), torch.tensor(b))
    assert ours == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_rankdata_ties_and_constant_input():
    assert rankdata(torch.tensor([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman_rho(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 3.0])) == 0.0
    with pytest.raises(ValueError, match="lengths differ"):
        spearman_rho(torch.ones(3), torch.ones(4))


def test_ssc_weights_are_softmax_of_minus_rho():
    eta = salience_weights([1.0, -1.0, 0.0])
    z = math.exp(-1) + math.exp(1) + 1
    assert eta.tolist() == pytest.approx([math.exp(-1) / z, math.exp(1) / z, 1 / z])
    assert float(eta.sum()) == pytest.approx(1.0)


def _hand_stats() -> tuple[TimestepStats, torch.Tensor]:
    # s(W) = [1, 4, 2]; t=100: s(X) ranks like s(W) (rho = +1); t=900: reversed (rho = -1)
    w = torch.tensor([[1.0, -4.0, 2.0], [0.5, 1.0, -1.0]])
    lo = torch.tensor([[-2.0, -1.0, -4.0], [-1.0, -10.0, -2.0]])
    hi = torch.tensor([[1.0, 8.0, 3.0], [40.0, 5.0, 20.0]])
    return TimestepStats((100.0, 900.0), lo, hi), w


def test_csb_salience_formula_and_balanced_salience():
    stats, w = _hand_stats()
    s_w = channel_salience(w)
    assert s_w.tolist() == [1.0, 4.0, 2.0]
    s_x = torch.tensor([2.0, 8.0, 4.0])
    b = balance_vector(s_x, s_w)
    assert torch.allclose(b, torch.sqrt(s_x / s_w))
    # after X / b and W diag(b) both operands have salience sqrt(s(X_j) s(W_j))
    assert torch.allclose(s_x / b, channel_salience(w * b))
    assert torch.allclose(s_x / b, torch.sqrt(s_x * s_w))


def test_ssc_weights_timesteps_by_spearman_rho():
    stats, w = _hand_stats()
    b, rho, eta = csb_ssc(stats, w, ssc=True)
    assert rho.tolist() == pytest.approx([1.0, -1.0])
    e = torch.tensor([math.exp(-1), math.exp(1)], dtype=torch.float64)
    assert eta.tolist() == pytest.approx((e / e.sum()).tolist())
    s_x = (eta[:, None] * stats.absmax.double()).sum(0).float()  # [2, 8, 4] and [40, 10, 20]
    assert torch.allclose(b, torch.sqrt(s_x / torch.tensor([1.0, 4.0, 2.0])))
    # the complementary timestep (rho = -1) dominates the calibrated salience
    assert eta[1] > 0.8

    b_plain, _, eta_plain = csb_ssc(stats, w, ssc=False)
    assert eta_plain.tolist() == [0.5, 0.5]
    s_max = torch.tensor([40.0, 10.0, 20.0])  # max over timesteps
    assert torch.allclose(b_plain, torch.sqrt(s_max / torch.tensor([1.0, 4.0, 2.0])))


def test_unseen_timestep_gets_no_weight():
    stats, w = _hand_stats()
    nan = torch.full((1, 3), float("nan"))
    lo = torch.cat([stats.lo[:1], nan, stats.lo[1:]])
    hi = torch.cat([stats.hi[:1], nan, stats.hi[1:]])
    stats = TimestepStats((100.0, 500.0, 900.0), lo, hi)
    b, rho, eta = csb_ssc(stats, w)
    assert math.isnan(rho[1]) and eta[1] == 0 and float(eta.sum()) == pytest.approx(1.0)
    assert torch.isfinite(b).all()


def test_timestep_edges_bucket_every_distinct_value():
    values, edges = timestep_edges(torch.tensor([900.0, 100.0, 300.0, 100.0, 600.0]))
    assert values == (100.0, 300.0, 600.0, 900.0)
    assert [bucket_of(v, edges) for v in values] == [0, 1, 2, 3]


def test_balancing_folds_exactly_before_quantization():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    stats, _ = _hand_stats()
    lo, hi = torch.cat([stats.lo, stats.lo], 1), torch.cat([stats.hi, stats.hi], 1)
    stats = TimestepStats(stats.timesteps, lo, hi)
    b, _, _ = csb_ssc(stats, lin.weight)
    state = QuantState(tensors={"l.balance": b}, meta={})
    plan = LayerPlan("l", "mlp", 6, 4, LayerSpec(16, 16, a_granularity="tensor"))
    q = PTQ4DiTQuantizer.from_spec(4, 8)
    ql = q._build_layer("l", lin, plan, state)
    assert isinstance(ql, QuantLinear) and not torch.allclose(b, torch.ones(6))
    x = torch.randn(3, 5, 6)
    with torch.no_grad():
        assert torch.allclose(ql(x), lin(x), atol=1e-5)


def test_static_range_is_exact_min_max_of_balanced_inputs():
    stats, _ = _hand_stats()
    b = torch.tensor([2.0, 0.5, 4.0])
    lo, hi = balanced_range(stats, b)
    assert lo.item() == pytest.approx(-20.0) and hi.item() == pytest.approx(20.0)

    calib = build_calib()
    target = build_target()
    q = PTQ4DiTQuantizer.from_spec(8, 8, params={"act": "static"})
    state = q.calibrate(target, calib)
    name = "blocks.1.fc2"
    seen = []
    h = target.module.get_submodule(name).register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].reshape(-1, args[0].shape[-1]))
    )
    with torch.no_grad():
        for batch in calib.batches(4):
            target.forward(batch)
    h.remove()
    xb = torch.cat(seen) / state.tensors[f"{name}.balance"]
    assert state.tensors[f"{name}.act_lo"].item() == pytest.approx(xb.min().item(), rel=1e-5)
    assert state.tensors[f"{name}.act_hi"].item() == pytest.approx(xb.max().item(), rel=1e-5)


def test_calibration_is_per_distinct_timestep():
    calib = build_calib()
    q = PTQ4DiTQuantizer.from_spec(4, 8)
    state = q.calibrate(build_target(), calib)
    assert q.config.a_granularity == "token"  # act: dynamic is the default
    assert state.meta["timesteps"] == [100.0, 300.0, 600.0, 900.0]
    eta = state.tensors["blocks.0.fc1.eta"]
    rho = state.tensors["blocks.0.fc1.rho"]
    assert eta.shape == rho.shape == (4,) and float(eta.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(eta, salience_weights(rho.double()).float(), atol=1e-6)
    assert "blocks.0.fc1.act_lo" not in state.tensors  # dynamic: no static range


def test_balancing_helps_static_per_tensor_activations():
    calib = build_calib()
    batch = next(calib.batches(4))
    fp = build_target().forward(batch).detach()

    def err(name: str, params: dict) -> float:
        from vqbench.registry import QUANTIZERS

        q = QUANTIZERS.get(name).from_spec(8, 4, params=params)
        target = build_target()
        q.quantize(target, q.calibrate(target, calib))
        with torch.no_grad():
            return float((target.forward(batch) - fp).norm() / fp.norm())

    assert err("ptq4dit", {"act": "static"}) < err("rtn", {"act": "static"})
