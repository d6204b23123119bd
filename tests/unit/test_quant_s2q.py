"""S2Q-VDiT on hand-sized tensors: SDS scores and selection, STD weights, folded transforms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quantizers.core.attention import AttentionProbe, attention_column_sums
from quantizers.core.gptq import gptq_quantize
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.quantizer import held_weights
from quantizers.s2q_vdit import S2QVDiTQuantizer
from quantizers.s2q_vdit.sds import (
    diffusion_salience,
    gram_norm,
    minmax,
    select,
    stratified_top,
)
from quantizers.s2q_vdit.std import token_weights
from quantizers.s2q_vdit.transform import (
    OnlineTransform,
    TrainableLinear,
    fold_weight,
    kron_apply,
    transform_hessian,
)
from tests.conformance.conftest import build_calib, build_target
from vqbench.types import CalibrationSet, QuantTarget, TokenLayout


def _calib(latents: torch.Tensor, prompts: list[int], steps: list[int], uncond: list[bool]):
    n = len(latents)
    return CalibrationSet(
        latents=latents,
        timesteps=1000.0 - 100.0 * torch.tensor(steps, dtype=torch.float32),
        text=torch.zeros(n, 1, 2),
        outputs=torch.zeros_like(latents),
        step_index=torch.tensor(steps),
        prompt_index=torch.tensor(prompts),
        is_uncond=torch.tensor(uncond),
    )


def _latent_target() -> QuantTarget:
    return QuantTarget(nn.Identity(), {}, {}, [], forward=lambda b: b["latents"])


# ---- SDS ---------------------------------------------------------------------------------
def test_sds_saliences_on_a_hand_made_trajectory():
    x = torch.tensor([[[2.0, 0], [0, 0]], [[1.0, 0], [0, 0]], [[1.0, 0], [0, 1]]])
    calib = _calib(x, [0, 0, 0], [0, 1, 2], [False] * 3)
    # ||x0-x1||^2/||x0||^2 = 1/4, ||x1-x2||^2/||x1||^2 = 1, last step backward: 1/2
    assert diffusion_salience(calib).tolist() == pytest.approx([0.25, 1.0, 0.5])
    # x^T x = diag(4,0), diag(1,0), diag(1,1): spectral 4, 1, 1; Frobenius 4, 1, sqrt(2)
    assert gram_norm(x, "spectral").tolist() == pytest.approx([4.0, 1.0, 1.0])
    assert gram_norm(x, "frobenius").tolist() == pytest.approx([4.0, 1.0, math.sqrt(2)])
    assert minmax(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]


@pytest.mark.parametrize("norm", ["spectral", "frobenius"])
def test_sds_scores_equal_the_formulas_and_top_k(norm):
    g = torch.Generator().manual_seed(0)
    prompts, steps = (
        [p for p in range(2) for _ in range(8)],
        [s for _ in range(2) for s in range(4) for _ in range(2)],
    )
    uncond = [bool(i % 2) for i in range(16)]
    # rows of a pair differ here (in captures they share x_t) so that pair averaging shows
    lat = torch.randn(16, 5, 3, generator=g)
    calib = _calib(lat, prompts, steps, uncond)
    sel = select(_latent_target(), calib, k=3, feature="latent", norm=norm)
    diff, quant = torch.zeros(16), torch.zeros(16)
    for r in range(16):
        same = [i for i in range(16) if prompts[i] == prompts[r] and uncond[i] == uncond[r]]
        nxt = [i for i in same if steps[i] == steps[r] + 1] or [
            i for i in same if steps[i] == steps[r] - 1
        ]
        diff[r] = (lat[r] - lat[nxt[0]]).square().sum() / lat[r].square().sum()
        gram = lat[r].double().T @ lat[r].double()
        quant[r] = torch.linalg.matrix_norm(gram, 2 if norm == "spectral" else "fro")
    diff, quant = diff.reshape(8, 2).mean(1), quant.reshape(8, 2).mean(1)  # joint pairs
    torch.testing.assert_close(sel.c_diff, diff)
    torch.testing.assert_close(sel.c_quant, quant, rtol=1e-5, atol=1e-5)
    nd = (diff - diff.min()) / (diff.max() - diff.min())
    nq = (quant - quant.min()) / (quant.max() - quant.min())
    torch.testing.assert_close(sel.score, nd * nq)
    top = torch.argsort(nd * nq, descending=True)[:3]
    assert sel.units.tolist() == top.tolist()
    assert sel.rows.tolist() == sorted(r for u in top.tolist() for r in (2 * u, 2 * u + 1))


def test_sds_ablations_random_uniform_separate():
    lat = torch.randn(12, 4, 3, generator=torch.Generator().manual_seed(1))
    calib = _calib(lat, [0] * 6 + [1] * 6, list(range(6)) * 2, [False] * 12)
    t = _latent_target()
    uni = select(t, calib, 3, mode="uniform", feature="latent", cfg_pairs="separate")
    assert sorted(calib.step_index[uni.rows].tolist()) == [
        0,
        3,
        5,
    ]  # evenly spaced (step, prompt) order
    r1 = select(t, calib, 4, mode="random", feature="latent", seed=3)
    r2 = select(t, calib, 4, mode="random", feature="latent", seed=3)
    assert torch.equal(r1.rows, r2.rows) and len(r1.rows) == 4
    everything = select(t, calib, 100, feature="latent")
    assert everything.rows.tolist() == list(range(12))


def test_stratified_sds_takes_the_top_units_of_each_step_range():
    score = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.05, 0.95])
    steps = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # 2 bins (steps 0-1, 2-3), 4 units: the best 2 of each, best first
    assert stratified_top(score, steps, 4, 2).tolist() == [7, 3, 4, 2]
    # 3 units over 2 bins: the earlier bin takes the remainder
    assert sorted(stratified_top(score, steps, 3, 2).tolist()) == [2, 3, 7]
    # a bin short of its share passes the rest on: bins {0}, {1}, {2} hold 1, 5 and 2 units
    lop = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.9, 0.8, 0.7, 0.6])
    lop_steps = torch.tensor([0, 1, 1, 1, 1, 1, 2, 2])
    assert sorted(stratified_top(lop, lop_steps, 6, 3).tolist()) == [0, 1, 4, 5, 6, 7]
    # plain top-K picks only late steps here; stratified spreads over all step ranges
    lat = torch.randn(12, 4, 3, generator=torch.Generator().manual_seed(1))
    calib = _calib(lat, [0] * 6 + [1] * 6, list(range(6)) * 2, [False] * 12)
    sel = select(_latent_target(), calib, 6, "stratified", "latent", cfg_pairs="separate", bins=3)
    chosen = calib.step_index[sel.rows]
    assert [int(((chosen >= lo) & (chosen < lo + 2)).sum()) for lo in (0, 2, 4)] == [2, 2, 2]


def test_gptq_hessians_from_the_pool_or_the_selection():
    calib = build_calib(num_prompts=3)
    base = {"num_samples": 2, "epochs": 0, "sds": "random"}
    states = {}
    for h in ("pool", "selected"):
        q = S2QVDiTQuantizer.from_spec(4, 8, params={**base, "hessians": h})
        states[h] = q.calibrate(build_target(), calib)
    codes = [k for k in states["pool"].tensors if k.endswith(".v0.codes")]
    assert codes and states["pool"].meta["sds_steps"] == states["selected"].meta["sds_steps"]
    assert sum(states["pool"].meta["sds_steps"].values()) == 4  # 2 cond/uncond pairs
    assert states["pool"].meta["record"] == ["sds_steps"]
    assert any(
        not torch.equal(states["pool"].tensors[k], states["selected"].tensors[k]) for k in codes
    )  # the Hessians (hence GPTQ's codes) differ: all 24 rows against 4


def test_sds_selection_is_stored_in_the_state():
    calib = build_calib(num_prompts=3)
    q = S2QVDiTQuantizer.from_spec(4, 8, params={"num_samples": 2, "epochs": 0, "gptq": False})
    state = q.calibrate(build_target(), calib)
    units = state.tensors["sds.selected_units"]
    assert len(units) == 2 and len(state.tensors["sds.score"]) == 12  # 3 prompts x 4 steps
    score = state.tensors["sds.score"]
    assert units.tolist() == torch.argsort(score, descending=True)[:2].tolist()
    chosen = state.meta["sds"]["selected"]
    assert len(chosen) == 4 and sum(c["uncond"] for c in chosen) == 2  # pairs stay together
    assert [c["row"] for c in chosen] == state.tensors["sds.selected_rows"].tolist()


# ---- STD ---------------------------------------------------------------------------------
def test_column_sums_of_a_hand_made_attention_map():
    # one head, two queries, keys with logits so that A = [[0.5, 0.5, 0], [0.25, 0.25, 0.5]]
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[None, None]
    ln2 = math.log(2.0)
    k = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1e4, ln2]])[None, None]
    s = attention_column_sums(q, k, scale=1.0)
    torch.testing.assert_close(s, torch.tensor([[0.75, 0.75, 0.5]]))
    lam = token_weights({"a": s}, {"a": TokenLayout("none")}, [torch.zeros(1, 3, 4)], 0.5)[0]
    torch.testing.assert_close(lam, torch.tensor([[1.0, 1.0, 0.5]]))
    lam = token_weights({"a": torch.tensor([[2.0, 4, 6, 4]])}, {"a": TokenLayout("none")},
                        [torch.zeros(1, 4, 2)], 0.25)[0]  # fmt: skip
    torch.testing.assert_close(lam, torch.tensor([[0.25, 0.625, 1.0, 0.625]]))


def test_chunked_column_sums_equal_dense_and_probe_records_them():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 4, generator=g) for _ in range(3))
    mask = torch.rand(10, 10, generator=g) > 0.3
    mask[:, 0] = True
    for m in (None, mask):
        logits = q @ k.transpose(-1, -2) / 2.0
        if m is not None:
            logits = logits.masked_fill(~m, float("-inf"))
        dense = torch.softmax(logits, -1).sum((1, 2))
        torch.testing.assert_close(attention_column_sums(q, k, attn_mask=m, chunk=3), dense)

    class Attn(nn.Module):
        def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(x, ctx, ctx)

    mod = Attn()
    with AttentionProbe({"attn": mod}, chunk=4) as probe:
        out = mod(q, k)
        mod(q, k[:, :, :5])  # cross-attention shape: not recorded
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, k))
    assert len(probe.sums["attn"]) == 1
    torch.testing.assert_close(probe.sums["attn"][0], attention_column_sums(q, k))
    assert F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


def test_token_weights_follow_layouts_to_block_outputs():
    b, f, s = 2, 3, 4
    video = torch.rand(b, f, s)
    spatial, temporal = TokenLayout("spatial", f, s), TokenLayout("temporal", f, s)
    sums = {"sp": video.reshape(b * f, s), "tp": video.transpose(1, 2).reshape(b * s, f)}
    lays = {"sp": spatial, "tp": temporal}
    lam_sp, lam_tp, lam_4d = token_weights(
        sums,
        lays,
        [torch.zeros(b * f, s, 8), torch.zeros(b * s, f, 8), torch.zeros(b, f, s, 8)],
        0.5,
    )
    v = 2 * video  # both modules saw the same map
    lo, hi = v.amin((1, 2), keepdim=True), v.amax((1, 2), keepdim=True)
    want = 0.5 + 0.5 * (v - lo) / (hi - lo)  # per-sample min-max over all frames
    torch.testing.assert_close(lam_4d, want)
    torch.testing.assert_close(lam_sp, want.reshape(b * f, s))
    torch.testing.assert_close(lam_tp, want.transpose(1, 2).reshape(b * s, f))
    joint = TokenLayout("joint", f, s, prefix=2)
    full = torch.cat([torch.rand(b, 2), video.reshape(b, -1)], 1)
    lam_video, lam_text = token_weights(
        {"j": full}, {"j": joint}, [torch.zeros(b, f * s, 8), torch.zeros(b, 2, 8)], 0.5
    )
    assert lam_video.shape == (b, f * s) and lam_text.shape == (b, 2)
    both = torch.cat([lam_text, lam_video], 1)
    torch.testing.assert_close(both.amin(1), torch.full((b,), 0.5))
    torch.testing.assert_close(both.amax(1), torch.ones(b))


# ---- transforms --------------------------------------------------------------------------
def _transform(k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(k, generator=g) + 0.5
    f0 = torch.eye(4) + 0.3 * torch.randn(4, 4, generator=g)  # invertible, not orthogonal
    f1 = torch.eye(k // 4) + 0.3 * torch.randn(k // 4, k // 4, generator=g)
    return c, f0, f1


def test_folded_transform_leaves_fp_output_unchanged():
    torch.manual_seed(0)
    lin = nn.Linear(24, 10)
    x = torch.randn(5, 7, 24)
    c, f0, f1 = _transform(24)
    torch.testing.assert_close(kron_apply(x, f0, f1), x @ torch.kron(f0, f1))
    w = fold_weight(lin.weight.detach(), c, f0, f1)
    fp = QuantLinear(lin, [QuantVariant(LayerSpec(16, 16), "fake", w)], OnlineTransform(c, f0, f1))
    with torch.no_grad():
        torch.testing.assert_close(fp(x), lin(x), rtol=1e-4, atol=1e-5)
        train = TrainableLinear(lin, 16, 16, True, True, init="rotation")
        torch.testing.assert_close(train(x), lin(x), rtol=1e-4, atol=1e-5)
    xt = kron_apply(x.reshape(-1, 24) / c, f0, f1).double()
    h = x.reshape(-1, 24).double().T @ x.reshape(-1, 24).double()
    torch.testing.assert_close(
        transform_hessian(h, c, f0, f1).double(), xt.T @ xt, rtol=1e-4, atol=1e-4
    )


def test_held_weights_give_the_same_outputs_and_are_released():
    torch.manual_seed(0)
    train = TrainableLinear(nn.Linear(24, 10), 4, 6, True, True, init="rotation")
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        want = train(x)
    with held_weights([train]):
        assert train.held_weight is not None
        assert torch.equal(train(x), want)
    assert train.held_weight is None
    assert train(x).requires_grad  # training again recomputes the weight with autograd


def test_activation_clip_and_gptq_clip_shrink_ranges():
    x = torch.tensor([[-4.0, 1.0, 2.0, 8.0]])
    c, f0, f1 = torch.ones(4), torch.eye(2), torch.eye(2)
    y = OnlineTransform(c, f0, f1, torch.tensor(0.5))(x)
    assert y.tolist() == [[-2.0, 1.0, 2.0, 4.0]]
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    spec = LayerSpec(4, 16, w_symmetric=True)
    full = gptq_quantize(w, torch.eye(16), spec)
    clipped = gptq_quantize(w, torch.eye(16), spec, clip_ratio=torch.full((6, 1), 0.8))
    torch.testing.assert_close(clipped.scale, 0.8 * full.scale)


# ---- end to end (tiny model of the conformance suite) --------------------------------------
def _run(params: dict, w: int = 4, a: int = 6):
    calib = build_calib()
    q = S2QVDiTQuantizer.from_spec(w, a, params={"epochs": 2, **params})
    target = build_target()
    state = q.calibrate(target, calib)
    q.quantize(target, state)
    with torch.no_grad():
        return target.forward(next(calib.batches(4))), state


def test_std_switches_and_reconstruction_records():
    out, state = _run({})
    rec = state.meta["recon"]["blocks.0"]
    assert rec["attention_modules"] == ["blocks.0.spatial", "blocks.0.temporal"]
    assert rec["std_weighted_outputs"][0] == rec["std_weighted_outputs"][1] > 0
    assert rec["loss_last_epoch"] < rec["loss_first_epoch"]
    off, state_off = _run({"std": False})
    assert state_off.meta["recon"]["blocks.0"]["std_weighted_outputs"][0] == 0
    flat, _ = _run({"lambda_min": 1.0})  # lambda == 1 everywhere: the same as STD off
    torch.testing.assert_close(flat, off)
    assert not torch.equal(out, off)


def test_reconstruction_keeps_the_best_evaluated_state():
    _, state = _run({"lr": 0.5, "clip_lr": 5.0})  # rates that wreck the transforms
    for block, rec in state.meta["recon"].items():
        assert len(rec["eval_loss"]) == 3  # before training and after each of 2 epochs
        assert rec["eval_loss"][rec["kept_epoch"]] == min(rec["eval_loss"])
        assert state.meta["recon_kept_epoch"][block] == rec["kept_epoch"]
    assert 0 in state.meta["recon_kept_epoch"].values()  # some block kept its initial state
    assert "recon_kept_epoch" in state.meta["record"]
    _, last = _run({"lr": 0.5, "clip_lr": 5.0, "keep_best": False})
    assert all("kept_epoch" not in r for r in last.meta["recon"].values())


@pytest.mark.parametrize("model", ["tiny-latte", "tiny-cogvideox", "tiny-wan"])
def test_runs_on_tiny_diffusers_models(model):
    from vqbench.config import GenerationSpec
    from vqbench.registry import MODELS

    adapter = MODELS.get(model)()
    adapter.load("cpu", "float32")
    spec = adapter.resolve(GenerationSpec(steps=2, batch_size=2))
    calib = adapter.capture(["a red circle", "a blue square moving up"], [0, 1], spec)
    target = adapter.quant_target(spec)
    q = S2QVDiTQuantizer.from_spec(4, 6, params={"num_samples": 2, "epochs": 1})
    state = q.calibrate(target, calib)
    assert len(state.tensors["sds.selected_rows"]) == 4  # 2 cond/uncond pairs
    for block in target.blocks:  # every block output got attention-derived weights
        rec = state.meta["recon"][block]
        assert len(rec["attention_modules"]) == 1, block
        matched, total = rec["std_weighted_outputs"]
        assert matched == total > 0 and math.isfinite(rec["loss_last_epoch"])
    q.quantize(target, state)
    batch = next(calib.batches(2))
    with torch.no_grad():
        out = target.forward(batch)
    assert torch.isfinite(out).all()
    assert float((out - batch["outputs"]).norm() / batch["outputs"].norm()) < 1.0
