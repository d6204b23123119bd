"""Q-VDiT: TQE (Eq.7-9), TMD, true frames on real layouts, modes, ablations, tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from quantizers.core import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.quantizer import fake_quant_act, fake_quant_weight
from quantizers.q_vdit import (
    QVDiTQuantizer,
    TQEBranch,
    TQEQuantLinear,
    eq9_m,
    output_frames,
    tmd_loss,
    tmd_rows,
)
from quantizers.q_vdit.tqe import FrameStats, frame_scale
from tests.conformance.conftest import build_calib, build_target
from vqbench.adapters.cogvideox import TinyCogVideoXAdapter
from vqbench.adapters.latte import TinyLatteAdapter
from vqbench.adapters.wan import TinyWanAdapter
from vqbench.config import GenerationSpec
from vqbench.types import TokenLayout

F_, S_, C_, O_ = 3, 2, 4, 5


def _frame_of(kind: str, n: int, tok: int, prefix: int = 0) -> int:
    """Frame of token ``tok`` of row ``n``, written out per layout kind (-1: no frame)."""
    if kind == "spatial":  # rows are (batch, frame), tokens the spatial positions
        return n % F_
    if kind == "temporal":  # rows are (batch, position), tokens the frames
        return tok
    return (tok - prefix) // S_ if tok >= prefix else -1  # joint, frame-major after the prefix


@pytest.mark.parametrize(
    ("layout", "shape"),
    [
        (TokenLayout("spatial", F_, S_), (2 * F_, S_, C_)),
        (TokenLayout("temporal", F_, S_), (2 * S_, F_, C_)),
        (TokenLayout("joint", F_, S_, prefix=2), (2, 2 + F_ * S_, C_)),
    ],
)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("mode", ["fake", "real"])
def test_tqe_forward_equals_eq8_by_hand(layout, shape, residual, mode):
    torch.manual_seed(0)
    linear = nn.Linear(C_, O_)
    spec = LayerSpec(w_bits=4, a_bits=6)
    alpha, beta, m = torch.randn(C_), torch.randn(O_), torch.tensor([0.5, 2.0, -1.0])
    branch = TQEBranch(alpha, beta, m, layout, residual=residual)
    layer = TQEQuantLinear(linear, [QuantVariant(spec, mode, linear.weight)], branch)
    x = torch.randn(shape)
    xq, wq = fake_quant_act(x, 6), fake_quant_weight(linear.weight.detach(), 4)
    want = torch.empty(*shape[:2], O_)
    for n in range(shape[0]):
        for tok in range(shape[1]):
            i = _frame_of(layout.kind, n, tok, layout.prefix)
            mi = 1.0 if i < 0 else float(m[i]) + (1.0 if residual else 0.0)
            delta = mi * float(xq[n, tok] @ alpha)  # (M_i ⊙ Q(X)) alpha
            want[n, tok] = xq[n, tok] @ wq.T + linear.bias + delta * beta
    with torch.no_grad():
        got = layer(x)
    tol = 1e-5 if mode == "fake" else 1e-3
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_tqe_add_to_equals_sum_with_gradients():
    torch.manual_seed(0)
    layout = TokenLayout("spatial", F_, S_)
    grads = []
    for fused in (True, False):
        torch.manual_seed(1)
        branch = TQEBranch(torch.randn(C_), torch.randn(O_), torch.randn(F_), layout)
        y = torch.randn(2 * F_, S_, O_, requires_grad=True)
        xq = torch.randn(2 * F_, S_, C_, requires_grad=True)
        out = branch.add_to(y, xq) if fused else y + branch(xq)
        out.pow(2).sum().backward()
        grads.append([out.detach(), y.grad, xq.grad, *(p.grad for p in branch.parameters())])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_tqe_without_m_is_eq7_and_starts_as_identity():
    torch.manual_seed(0)
    linear = nn.Linear(C_, O_)
    spec = LayerSpec(w_bits=4, a_bits=8)
    alpha, beta = torch.randn(C_), torch.randn(O_)
    plain = QuantLinear(linear, [QuantVariant(spec, "fake", linear.weight)])
    x = torch.randn(7, C_)
    with torch.no_grad():
        eq7 = TQEQuantLinear(
            linear, [QuantVariant(spec, "fake", linear.weight)], TQEBranch(alpha, beta)
        )
        xq = fake_quant_act(x, 8)
        torch.testing.assert_close(eq7(x), plain(x) + (xq @ alpha)[:, None] * beta)
        zero = TQEBranch(alpha, torch.zeros(O_))
        assert torch.equal(TQEQuantLinear(linear, list(plain.variants), zero)(x), plain(x))
    with pytest.raises(ValueError, match="frames"):
        TQEBranch(alpha, beta, torch.ones(4), TokenLayout("spatial", F_, S_))


def test_m_init_equals_eq9():
    assert torch.allclose(
        eq9_m(torch.ones(3), torch.tensor([1.0, 1.0, 2.0])), torch.tensor([4 / 3, 4 / 3, 2 / 3])
    )
    torch.manual_seed(0)
    x = torch.randn(F_, S_, C_) * torch.tensor([1.0, 3.0, 0.5])[:, None, None]
    stats = FrameStats(TokenLayout("spatial", F_, S_), a_bits=3, a_symmetric=False)
    stats.update(x.reshape(-1, C_))  # 2-D rows are regrouped by the layout
    xq = fake_quant_act(x, 3)
    rho = [
        float(x[i].flatten() @ xq[i].flatten() / (x[i].norm() * xq[i].norm())) for i in range(F_)
    ]
    eta = [math.exp(1 - r) / sum(math.exp(1 - q) for q in rho) for r in rho]
    mass = [float(x[i].abs().sum()) for i in range(F_)]
    want = [eta[i] / (mass[i] / sum(mass)) for i in range(F_)]
    torch.testing.assert_close(stats.m_init(), torch.tensor(want), atol=1e-5, rtol=1e-5)


def test_tmd_equals_hand_kl_on_three_frames():
    pred = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # frames as 2-vectors
    ref = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    h = 1 / math.sqrt(2)
    sim_q = [[1, 0, h], [0, 1, h], [h, h, 1]]
    sim_p = [[1, h, 0], [h, 1, h], [0, h, 1]]

    def softmax(row):
        z = sum(math.exp(v) for v in row)
        return [math.exp(v) / z for v in row]

    kl = [
        sum(p * math.log(p / q) for p, q in zip(softmax(sp), softmax(sq), strict=True))
        for sp, sq in zip(sim_p, sim_q, strict=True)
    ]
    torch.testing.assert_close(tmd_rows(pred, ref)[0], torch.tensor(kl), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(tmd_loss(pred, ref), torch.tensor(sum(kl) / 9), atol=1e-7, rtol=1e-5)
    x = torch.randn(2, 4, 3, 5)
    assert float(tmd_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(tmd_loss(x + 0.3 * torch.randn_like(x), x)) > 0


# ---- the real architectures' layouts (tiny random-weight adapters) -------------------------
TINY = {
    "tiny-latte": TinyLatteAdapter,
    "tiny-cogvideox": TinyCogVideoXAdapter,
    "tiny-wan": TinyWanAdapter,
}
FRAME_AXIS = {"tiny-latte": 2, "tiny-cogvideox": 1, "tiny-wan": 2}  # of the raw output/latents


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny(request):
    adapter = TINY[request.param]()
    adapter.load("cpu", "float32")
    spec = adapter.resolve(GenerationSpec(steps=2, batch_size=1))
    calib = adapter.capture(["a red circle moves left"], [0], spec, every_k_steps=1)
    return adapter, spec, calib


def test_tmd_frames_are_true_frames(tiny):
    adapter, spec, calib = tiny
    target = adapter.quant_target(spec)
    out = calib.outputs[:2].clone()
    axis = FRAME_AXIS[adapter.name]
    for k in range(out.shape[axis]):
        out.select(axis, k).fill_(float(k))
    frames = output_frames(target, out)
    for k in range(frames.shape[1]):
        assert torch.all(frames[:, k] == k), k
    if adapter.name != "tiny-cogvideox":  # the code's chunking mixes channels and frames
        chunks = output_frames(target, out, "chunks")
        assert not all(torch.all(chunks[:, k] == k) for k in range(chunks.shape[1]))


def test_frame_scale_follows_true_frames(tiny):
    """Perturbing latent frame k changes exactly the tokens that get M_k, at the first spatial
    (Latte) and joint-attention (CogVideoX, Wan) linear, where no attention mixed frames yet."""
    adapter, spec, calib = tiny
    layouts = adapter.token_layouts(spec)
    name = f"{adapter.blocks()[0]}.attn1.to_q"
    layout = layouts[name]
    assert layout.kind == ("spatial" if adapter.name == "tiny-latte" else "joint")
    k = layout.frames - 1
    batch = next(calib.batches(1))
    moved = dict(batch, latents=batch["latents"].clone())
    moved["latents"].select(FRAME_AXIS[adapter.name], k).add_(1.0)
    seen = []
    mod = adapter.denoiser().get_submodule(name)
    handle = mod.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        with torch.no_grad():
            adapter.calib_forward(batch)
            adapter.calib_forward(moved)
    finally:
        handle.remove()
    changed = (seen[1] - seen[0]).abs().amax(-1) > 1e-6
    m = torch.arange(layout.frames, dtype=torch.float32) + 10
    scale = frame_scale(seen[0], layout, m)[..., 0]
    assert torch.equal(changed, scale == 10 + k)


def test_runs_on_tiny_models(tiny):
    adapter, spec, calib = tiny
    target = adapter.quant_target(spec)
    batch = next(calib.batches(2))
    with torch.no_grad():
        fp = target.forward(batch)
    q = QVDiTQuantizer.from_spec(4, 8, params={"iters": 3})
    state = q.calibrate(target, calib)
    assert state.meta["tmd"] == "on (true frames)" and state.meta["iters"] == 3
    q.quantize(target, state)
    tqe = [m for m in target.module.modules() if isinstance(m, TQEQuantLinear)]
    with_m = [m for m in tqe if m.tqe.m is not None]
    assert tqe and with_m and all(torch.isfinite(m.tqe.m).all() for m in with_m)
    with torch.no_grad():
        out = target.forward(batch)
    assert torch.isfinite(out).all()
    assert float((out - fp).norm() / fp.norm()) < 0.5
    adapter.load("cpu", "float32")  # leave an FP model for the other tests


# ---- modes, ablations and the anchors' mixed precision (conformance tiny model) ----------------
def _layers(params: dict) -> tuple[dict, dict]:
    q = QVDiTQuantizer.from_spec(4, 6, params={"iters": 0, **params})
    target = build_target()
    state = q.calibrate(target, build_calib())
    q.quantize(target, state)
    mods = dict(target.module.named_modules())
    return {n: mods[n] for n in target.roles}, state.meta


def test_modes_and_ablation_switches():
    paper, meta = _layers({})
    assert meta["tmd"].startswith("off")  # the synthetic target has no output_to_frames
    m_paper = {n for n, m in paper.items() if isinstance(m, TQEQuantLinear) and m.tqe.m is not None}
    assert "blocks.0.spatial.q" in m_paper and "blocks.0.fc1" in m_paper  # every framed layer
    assert "blocks.0.cross.k" not in m_paper  # text tokens: no frames
    m = paper["blocks.0.spatial.q"].tqe.m
    assert not torch.allclose(m, torch.ones_like(m)) and (m > 0).all()  # Eq.9, not ones
    code, _ = _layers({"mode": "code"})
    m_code = {n for n, m in code.items() if isinstance(m, TQEQuantLinear) and m.tqe.m is not None}
    assert m_code == {f"blocks.{i}.temporal.{p}" for i in range(2) for p in "qkvo"}
    assert all(torch.equal(code[n].tqe.m, torch.ones(4)) and code[n].tqe.residual for n in m_code)
    no_m, _ = _layers({"frame_scale": False})
    assert all(m.tqe.m is None for m in no_m.values() if isinstance(m, TQEQuantLinear))
    no_tqe, _ = _layers({"tqe": False})
    assert not any(isinstance(m, TQEQuantLinear) for m in no_tqe.values())
    assert any(isinstance(m, QuantLinear) for m in no_tqe.values())


def test_anchor_mixed_precision_switch():
    target = build_target()
    uniform = QVDiTQuantizer.from_spec(3, 6)
    mixed = QVDiTQuantizer.from_spec(3, 6, params={"mlp_w8a8": True})
    plans = mixed.plans(target)
    assert {(p.spec.w_bits, p.spec.a_bits) for p in plans.values() if p.role == "mlp"} == {(8, 8)}
    assert {p.spec.w_bits for p in plans.values() if p.spec and p.role != "mlp"} == {3}
    eb_u, eb_m = uniform.effective_bits(target), mixed.effective_bits(target)
    assert eb_u["w8_layers"] == 0 and eb_m["w8_layers"] == 4
    assert eb_m["w_bits"] > eb_u["w_bits"] and eb_m["a_bits"] > eb_u["a_bits"]
    with pytest.raises(ValueError, match="mode"):
        QVDiTQuantizer.from_spec(4, 6, params={"mode": "both"})
