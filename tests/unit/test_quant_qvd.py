"""QVD (reconstructed): SCRI exactness, TDScore/HTDQ behaviour, role-based selection, adapters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core import LayerSpec, QuantLinear, QuantVariant, sampling_step
from quantizers.qvd import QVDQuantizer
from quantizers.qvd.folds import prompt_folds
from quantizers.qvd.htdq import FiniteSetLinear, htdq_search, tdscore
from quantizers.qvd.scri import SCRILinear, fold, output_error, scri_params, search_alpha
from tests.conformance.conftest import build_calib, build_target


def _skewed_input(n: int = 64, k: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    centre = torch.linspace(-5, 5, k)
    width = torch.logspace(-2, 1, k)  # scattered, off-centre channel ranges
    return centre + width * torch.randn(n, k, generator=g)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_scri_folding_leaves_fp_output_unchanged(alpha):
    x = _skewed_input()
    lin = nn.Linear(16, 8)
    shift, scale, (lo, hi) = scri_params(x.amin(0), x.amax(0), alpha)
    w, b = fold(lin.weight, lin.bias, shift, scale)
    xs = (x - shift) / scale
    torch.testing.assert_close(F.linear(xs, w, b), lin(x), rtol=1e-5, atol=1e-4)
    assert torch.allclose(lo, -hi) and xs.abs().max() <= hi * (1 + 1e-5)
    if alpha == 1.0:  # every channel now spans the same symmetric range
        span = xs.amax(0) - xs.amin(0)
        torch.testing.assert_close(span, torch.full_like(span, float(2 * hi)))
    variant = QuantVariant(LayerSpec(16, 16), "fake", w, smooth=scale)
    layer = SCRILinear(lin, [variant], shift[None], b[None])
    with torch.no_grad():
        torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-4)


def test_tdscore_of_collapsed_quantizer_is_minimal():
    fp = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    collapsed = fp[:1].expand_as(fp)  # every timestep mapped to the same code
    noisy = fp + 0.05 * torch.randn_like(fp)
    assert tdscore(collapsed, fp) == 0.0
    assert 0.0 < tdscore(fp.round(), fp) <= 1.0
    assert tdscore(fp, fp) == pytest.approx(1.0)
    assert tdscore(noisy, fp) <= 1.0  # noise cannot score above "no pair got closer"


def test_htdq_range_beats_minmax_on_skewed_features():
    # timestep features: a small bulk that encodes t, plus two large, nearly constant
    # channels (a long right tail), as in timestep embeddings with massive activations
    t = torch.linspace(0, 1, 24)[:, None]
    bulk = 0.1 * torch.sin(torch.arange(1, 15) * 3.0 * t)
    x = torch.cat([bulk, 20.0 + 0.1 * t, 12.0 - 0.1 * t], 1)
    eye = torch.eye(16)
    res = htdq_search(x, eye, eye, None, bits=4, grid=8)  # pure TDScore, MSE tie-break
    assert res.score_minmax < 0.5 and res.score > res.score_minmax + 0.3
    assert res.hi < float(x.max())
    assert htdq_search(x, eye, eye, None, bits=4, grid=1).score == res.score_minmax
    guarded = htdq_search(x, eye, eye, None, bits=4, grid=8, mse_weight=1.0)
    assert guarded.mse < res.mse  # the relative-MSE penalty refuses the destructive clip


def _quantize(params: dict, w: int = 8, a: int = 8):
    calib = build_calib()
    q = QVDQuantizer.from_spec(w, a, "fake", params)
    target = build_target()
    state = q.calibrate(target, calib)
    q.quantize(target, state)
    return target, state, calib


def test_htdq_touches_only_timestep_embedding_layers():
    params = {"quantize_timestep": True}
    searched, state, calib = _quantize({**params, "htdq": "search"}, 4, 4)
    minmax, _, _ = _quantize({**params, "htdq": "minmax"}, 4, 4)
    ts = {n for n, r in searched.roles.items() if r == "timestep_embed"}
    assert set(state.meta["htdq"]) == ts == {"t_embed"}
    late = state.meta["htdq"]["t_embed"]["late"]
    assert late["score"] >= late["score_minmax"] and late["timesteps"] == 4
    a, b = searched.module.state_dict(), minmax.module.state_dict()
    changed = {k.rsplit(".variants", 1)[0] for k in a if not torch.equal(a[k], b[k])}
    assert changed <= ts
    assert isinstance(searched.module.get_submodule("t_embed"), QuantLinear)
    # by default the adapter's FP choice for timestep layers is respected
    default, _, _ = _quantize({})
    assert type(default.module.get_submodule("t_embed")) is nn.Linear


def test_finite_set_caches_fp_timestep_features():
    target, state, calib = _quantize({"htdq": "finite_set"})
    fp_only, _, _ = _quantize({})
    layer = target.module.get_submodule("t_embed")
    assert isinstance(layer, FiniteSetLinear) and state.tensors["t_embed.fs_t"].numel() == 4
    batch = next(calib.batches(2))  # one prompt, step 0: cond and uncond rows
    t = float(batch["timesteps"][0])
    with torch.no_grad(), sampling_step(0, num_steps=4, timestep=t):
        out = target.forward(batch)
        ref = fp_only.forward(batch)
    assert layer.hits == 1
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_scri_alpha_search_beats_plain_static_quantization():
    x = _skewed_input(256)
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    spec = LayerSpec(8, 4, a_granularity="tensor")
    lo, hi = x.amin(0), x.amax(0)
    alphas = (0.0, 0.5, 1.0)
    best = search_alpha([(x, (lo, hi))], w, spec, alphas, static=True)

    def err(alpha: float | None) -> float:
        if alpha is None:  # no SCRI: one per-tensor range over the raw channels
            zero, one = torch.zeros(16), torch.ones(16)
            return output_error(x, w, spec, zero, one, (lo.min(), hi.max()))
        shift, scale, rng = scri_params(lo, hi, alpha)
        return output_error(x, w, spec, shift, scale, rng)

    assert err(best) == min(err(a) for a in alphas)
    assert err(best) < 0.5 * err(None)


def test_scri_alpha_search_scores_against_held_out_ranges():
    # channel 0 is nearly constant on the prompts the ranges come from and varies on the
    # others: equalising the ranges (alpha 1) blows it up past the static range there
    g = torch.Generator().manual_seed(3)
    seen = torch.randn(128, 8, generator=g) * torch.tensor([0.01] + [1.0] * 7)
    unseen = torch.randn(128, 8, generator=g)
    w = torch.randn(4, 8, generator=g)
    spec = LayerSpec(16, 6, a_granularity="tensor")
    ranges = (seen.amin(0), seen.amax(0))
    in_sample = search_alpha([(seen, ranges)], w, spec, (0.0, 1.0), static=True)
    held_out = search_alpha([(unseen, ranges)], w, spec, (0.0, 1.0), static=True)
    assert (in_sample, held_out) == (1.0, 0.0)


def test_scri_shift_leaves_the_weight_error_alone():
    # W4A16, shift only: with the bias folded from the quantized weight, centring changes
    # nothing on the weight side; the exact-FP fold b + W z would scale the weight error
    # with |x - z|, which exceeds |x| on one-sided, long-tailed channels (GELU outputs)
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(4)).exp()
    lin = nn.Linear(16, 8)
    spec = LayerSpec(4, 16)
    shift, scale, _ = scri_params(x.amin(0), x.amax(0), 0.0)
    w, _ = fold(lin.weight, lin.bias, shift, scale)
    variant = QuantVariant(spec, "fake", w, smooth=scale)
    w_q = variant.float_weight()
    _, b_q = fold(lin.weight, lin.bias, shift, scale, w_q)
    layer = SCRILinear(lin, [variant], shift[None], b_q[None])
    with torch.no_grad():
        rtn = F.linear(x, w_q, lin.bias)  # plain RTN: W is unchanged at alpha 0
        torch.testing.assert_close(layer(x), rtn, rtol=1e-5, atol=1e-3)
        _, b_fp = fold(lin.weight, lin.bias, shift, scale)
        naive = F.linear((x - shift) / scale, w_q, b_fp)
        ref = lin(x)
    assert (naive - ref).norm() > 2 * (rtn - ref).norm()


def test_prompt_folds_split_by_prompt():
    calib = build_calib(num_prompts=3)
    folds = prompt_folds(calib)
    assert [f.prompt_index.unique().tolist() for f in folds] == [[0, 2], [1]]
    assert sum(len(f) for f in folds) == len(calib)
    assert len(prompt_folds(build_calib(num_prompts=1))) == 1


def test_gptq_base_beats_minmax_weights():
    calib = build_calib()
    batch = next(calib.batches(len(calib)))
    errs = {}
    for weights in ("gptq", "minmax"):
        target, state, _ = _quantize({"weights": weights}, 4, 16)
        with torch.no_grad():
            errs[weights] = float((target.forward(batch) - batch["outputs"]).norm())
        assert any(k.endswith(".v0.codes") for k in state.tensors) == (weights == "gptq")
    assert errs["gptq"] < errs["minmax"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-latte", "tiny-cogvideox", "tiny-wan"])
def test_runs_on_tiny_adapters(name):
    from vqbench.adapters.cogvideox import TinyCogVideoXAdapter
    from vqbench.adapters.latte import TinyLatteAdapter
    from vqbench.adapters.wan import TinyWanAdapter
    from vqbench.config import GenerationSpec

    cls = {
        "tiny-latte": TinyLatteAdapter,
        "tiny-cogvideox": TinyCogVideoXAdapter,
        "tiny-wan": TinyWanAdapter,
    }[name]
    adapter = cls()
    adapter.load("cpu", "float32")
    spec = GenerationSpec(steps=4, batch_size=2)
    calib = adapter.capture(["a red circle moves left", "a dog runs"], [3, 4], spec, 2)
    batch = next(calib.batches(2))
    fp = adapter.calib_forward(batch).detach()
    target = adapter.quant_target(spec)
    q = QVDQuantizer.from_spec(8, 8, "fake", {"quantize_timestep": True})
    state = q.calibrate(target, calib)
    q.quantize(target, state)
    ts = {n for n, r in target.roles.items() if r == "timestep_embed"}
    assert ts and set(state.meta["htdq"]) == ts
    mods = dict(target.module.named_modules())
    assert all(isinstance(mods[n], QuantLinear) for n in ts)
    assert any(isinstance(m, SCRILinear) for m in mods.values())
    with torch.no_grad():
        out = target.forward(batch)
    assert torch.isfinite(out).all()
    assert float((out - fp).norm() / fp.norm()) < 0.1


def test_linears_that_never_ran_stay_fp():
    calib = build_calib()
    target = build_target()
    target.module.add_module("unused", nn.Linear(8, 8))
    target.roles["unused"] = "mlp"
    q = QVDQuantizer.from_spec(8, 8, "fake", {})
    state = q.calibrate(target, calib)
    q.quantize(target, state)
    assert state.meta["unseen"] == ["unused"]
    assert type(target.module.get_submodule("unused")) is nn.Linear
    assert isinstance(target.module.get_submodule("blocks.0.fc1"), SCRILinear)
