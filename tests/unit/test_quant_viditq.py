"""ViDiT-Q specifics: exact balancing fold, time ranges, rotation, metric-decoupled MP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantizers.core import LayerSpec, QuantLinear, sampling_step
from quantizers.core.balance import ButterflyHadamard
from quantizers.core.policy import LayerPlan
from quantizers.core.transforms import BlockHadamard, smoothing_scale
from quantizers.viditq import ViDiTQQuantizer
from quantizers.viditq.mixed_precision import (
    group_of,
    guidance_err,
    guidance_pairs,
    rel_err,
    select_rows,
    temporal_err,
)
from tests.conformance.conftest import build_calib, build_target
from vqbench.types import QuantState


def _hand_layer(k: int = 12) -> tuple[nn.Linear, QuantState]:
    torch.manual_seed(0)
    lin = nn.Linear(k, 5)
    a0 = torch.rand(k) + 0.1
    a1 = a0.clone()
    a1[2] = 40.0  # an outlier channel in the high-t range only
    tensors = {"l.act_absmax.0": a0, "l.act_absmax.1": a1}
    return lin, QuantState(tensors=tensors, meta={"t_edges": [500.0], "mp_layers": []})


def test_balancing_folds_exactly_in_every_time_range():
    lin, state = _hand_layer(12)  # 12 = 3 * 4: odd orthogonal factor times a Hadamard
    q = ViDiTQQuantizer.from_spec(4, 8, params={"time_ranges": 2, "alphas": [0.3, 0.7]})
    plan = LayerPlan("l", "mlp", 12, 5, LayerSpec(16, 16))
    ql = q._build_layer("l", lin, plan, state)
    assert isinstance(ql, QuantLinear) and ql.t_edges == (500.0,) and len(ql.variants) == 2
    assert isinstance(ql.input_transform, BlockHadamard)
    r = ql.input_transform.matrix()
    assert torch.allclose(r @ r.t(), torch.eye(12), atol=1e-6)
    for i, alpha in enumerate((0.3, 0.7)):
        c = smoothing_scale(state.tensors[f"l.act_absmax.{i}"], lin.weight, alpha)
        assert torch.allclose(ql.variants[i].smooth, c)
        assert torch.allclose(ql.variants[i].weight, (lin.weight * c) @ r, atol=1e-6)
    assert not torch.allclose(ql.variants[0].smooth, ql.variants[1].smooth)
    x = torch.randn(2, 7, 12)
    with torch.no_grad():
        for t in (100.0, 900.0):
            with sampling_step(0, 10, t):
                assert torch.allclose(ql(x), lin(x), atol=1e-5)


@pytest.mark.parametrize("k", [12, 32, 96, 1152])
def test_butterfly_rotation_is_the_block_hadamard_with_fewer_stored_numbers(k):
    fast, block = ButterflyHadamard(k, seed=3), BlockHadamard(k, seed=3)
    r = fast.matrix()
    assert torch.allclose(r, block.matrix(), atol=1e-6)
    assert torch.allclose(r @ r.t(), torch.eye(k), atol=1e-5)
    x = torch.randn(5, k)
    assert torch.allclose(fast(x), x @ r, atol=1e-5)
    assert len(fast.pass_factors()) == len(block.factors())  # BlockHadamard's passes, not m
    numel = sum(b.numel() for b in fast.buffers())
    assert numel <= sum(b.numel() for b in block.buffers())
    if k == 32:
        assert numel == 20  # five 2x2 butterflies instead of 4x4 and 8x8 factors


def test_without_rotation_only_smoothing_is_folded():
    lin, state = _hand_layer(8)
    q = ViDiTQQuantizer.from_spec(8, 8, params={"rotate": False, "time_ranges": 2})
    ql = q._build_layer("l", lin, LayerPlan("l", "mlp", 8, 5, LayerSpec(16, 16)), state)
    assert ql.input_transform is None
    c = smoothing_scale(state.tensors["l.act_absmax.0"], lin.weight, 0.5)
    assert torch.allclose(ql.variants[0].weight, lin.weight * c)


def test_balancing_tames_an_outlier_channel_under_per_token_quantization():
    torch.manual_seed(1)
    lin = nn.Linear(64, 32)
    x = torch.randn(256, 64)
    x[:, :2] *= 60.0  # two outlier channels, as in DiT activations
    state = QuantState({"l.act_absmax.0": x.abs().amax(0)}, {"t_edges": [], "mp_layers": []})
    plan = LayerPlan("l", "mlp", 64, 32, LayerSpec(4, 4))
    ref = lin(x).detach()

    def err(params: dict) -> float:
        q = ViDiTQQuantizer.from_spec(4, 4, params=params)
        with torch.no_grad():
            return rel_err(q._build_layer("l", lin, plan, state)(x), ref)

    plain = err({"alpha": 0.0, "rotate": False})  # c_j = 1 / max|W_j|: no activation balancing
    smooth_only = err({"rotate": False})
    both = err({})
    assert both < smooth_only < plain


def test_calibration_keeps_statistics_per_time_range():
    calib = build_calib()
    q = ViDiTQQuantizer.from_spec(4, 8, params={"time_ranges": 2, "alpha": 0.11})
    target = build_target()
    state = q.calibrate(target, calib)
    assert state.meta["t_edges"] == [500.0] and state.meta["mp_layers"] == []
    a0, a1 = state.tensors["blocks.0.fc1.act_absmax.0"], state.tensors["blocks.0.fc1.act_absmax.1"]
    assert a0.shape == a1.shape == (32,) and not torch.allclose(a0, a1)
    q.quantize(target, state)
    layer = target.module.get_submodule("blocks.0.fc2")
    assert isinstance(layer, QuantLinear) and len(layer.variants) == 2
    assert isinstance(layer.input_transform, BlockHadamard)  # width 96 = 3 * 32


def test_proxy_metrics_on_hand_tensors():
    ref = torch.randn(2, 4, 3, 5)  # [B, F, S, C]
    same_every_frame = torch.randn(2, 1, 3, 5).expand(2, 4, 3, 5)
    y = ref + 0.1 * same_every_frame  # an error that does not change the motion
    assert rel_err(y, ref) > 0
    assert temporal_err(y, ref, lambda o: o) == pytest.approx(0.0, abs=1e-10)
    assert temporal_err(y, ref, None) == pytest.approx(rel_err(y, ref))
    y2 = ref.clone()
    y2[1, 0] += 0.5  # one frame changes: the motion changes
    assert temporal_err(y2, ref, lambda o: o) > 1e-3

    shift = 0.3 * torch.randn(3, 5)
    out = torch.randn(4, 3, 5)
    pairs = [(0, 1), (2, 3)]
    assert guidance_err(out + shift, out, pairs) == pytest.approx(0.0, abs=1e-10)
    assert guidance_err(out + shift, out, []) == pytest.approx(rel_err(out + shift, out))
    assert [group_of(r) for r in ("cross_attn", "temporal_attn", "spatial_attn", "mlp")] == [
        "text",
        "temporal",
        "visual",
        "visual",
    ]


def test_rows_keep_cond_and_uncond_together():
    calib = build_calib()  # 2 prompts x 4 steps x (cond, uncond)
    rows = select_rows(calib, 6)
    sub = calib.subset(rows)
    pairs = guidance_pairs(sub)
    assert len(rows) == 6 and len(pairs) == 3
    for c, u in pairs:
        assert not sub.is_uncond[c] and sub.is_uncond[u]
        assert sub.prompt_index[c] == sub.prompt_index[u]
        assert sub.step_index[c] == sub.step_index[u]


def test_metric_decoupled_mixed_precision(tmp_path):
    calib = build_calib()
    params = {"mp_fraction": 0.3, "mp_rows": 8}
    q = ViDiTQQuantizer.from_spec(4, 8, params=params)
    target = build_target()
    state = q.calibrate(target, calib)
    chosen = state.meta["mp_layers"]
    scores = state.meta["mp_scores"]
    assert chosen and len(scores) == 28
    plans = q.plans(target)
    total = sum(p.in_features * p.out_features for p in plans.values() if p.spec is not None)
    raised = sum(plans[n].in_features * plans[n].out_features for n in chosen)
    assert raised <= 0.3 * total
    assert max(scores, key=lambda n: (scores[n], n)) in chosen  # the top-scored layer fits
    eb = q.effective_bits(target)
    assert eb["w8_layers"] == len(chosen) and 4 < eb["w_bits"] < 8

    state.save(tmp_path)  # a fresh quantizer picks the same layers from the saved state
    fresh = ViDiTQQuantizer.from_spec(4, 8, params=params)
    target2 = build_target()
    fresh.quantize(target2, type(state).load(tmp_path))
    for n, p in fresh.plans(target2).items():
        layer = target2.module.get_submodule(n)
        if p.spec is not None:
            assert layer.variants[0].spec.w_bits == (8 if n in chosen else 4), n
    assert fresh.effective_bits(target2) == eb
