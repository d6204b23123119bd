"""Formulas of the quantizer primitives on hand-sized tensors."""

from __future__ import annotations

import torch

from quantizers.core.fused import token_codes
from quantizers.core.kernels import int_mm, pack_int4, unpack_int4
from quantizers.core.observers import EMAObserver, MinMaxObserver, TimeRangeObserver, bucket_of
from quantizers.core.quantizer import (
    LSQQuantizer,
    fake_quant,
    fake_quant_act,
    fake_quant_weight,
    mse_clip_search,
    qparams_from_range,
    qrange,
    round_ste,
)


def test_qrange():
    assert qrange(8, True) == (-128, 127) and qrange(4, False) == (0, 15)


def test_asymmetric_qparams_by_hand():
    s, z = qparams_from_range(torch.tensor(-1.0), torch.tensor(2.0), 2, symmetric=False)
    assert torch.isclose(s, torch.tensor(1.0)) and z.item() == 1.0
    x = torch.tensor([-1.0, -0.4, 0.6, 2.0, 5.0])
    # codes clamp(round(x/1) + 1, 0, 3) = [0, 1, 2, 3, 3] -> (q - 1) * 1
    assert torch.equal(fake_quant(x, s, z, 2, False), torch.tensor([-1.0, 0.0, 1.0, 2.0, 2.0]))


def test_range_always_contains_zero():
    s, z = qparams_from_range(torch.tensor(1.0), torch.tensor(3.0), 8, symmetric=False)
    assert z.item() == 0 and torch.isclose(s, torch.tensor(3.0 / 255))


def test_symmetric_by_hand():
    s, z = qparams_from_range(torch.tensor(-0.5), torch.tensor(1.4), 3, symmetric=True)
    assert torch.isclose(s, torch.tensor(1.4 / 3)) and z.item() == 0
    x = torch.tensor([-1.4, 0.2, 1.4])
    assert torch.allclose(fake_quant(x, s, z, 3, True), torch.tensor([-1.4, 0.0, 1.4]))


def test_weight_granularities():
    w = torch.tensor([[1.0, -2.0, 0.5, 4.0], [0.1, 0.2, -0.3, 0.4]])
    per_t = fake_quant_weight(w, 2, "tensor", symmetric=True)
    per_c = fake_quant_weight(w, 2, "channel", symmetric=True)
    per_g = fake_quant_weight(w, 2, "group", group_size=2, symmetric=True)
    assert torch.equal(per_t[1], torch.zeros(4))  # row 1 is below one tensor-wide step
    assert (per_c[1] != 0).any()
    err = [(x - w).abs().sum() for x in (per_t, per_c, per_g)]
    assert err[0] > err[1] > err[2]


def test_round_ste_and_lsq_gradient():
    x = torch.tensor([0.3, 1.7], requires_grad=True)
    round_ste(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(2))
    w = torch.randn(4, 8)
    lsq = LSQQuantizer.from_weight(w, 4)
    assert torch.allclose(lsq(w), fake_quant_weight(w, 4), atol=1e-6)
    lsq(w).pow(2).sum().backward()
    assert lsq.delta.grad is not None and lsq.delta.grad.abs().sum() > 0


def test_fused_ste_gradients_by_hand():
    # s = 0.5, z = 1, 2-bit asymmetric (codes 0..3): x/s = [-3, 0.6, 1.2, 4.4]
    x = torch.tensor([[-1.5, 0.3, 0.6, 2.2]], requires_grad=True)
    s = torch.tensor([[0.5]], requires_grad=True)
    z = torch.tensor([[1.0]])
    y = fake_quant(x, s, z, 2, False, ste=True)
    # codes round(x/s) + z = [-2, 2, 2, 5] -> clamped [0, 2, 2, 3]; (c - z) * s
    assert torch.allclose(y, torch.tensor([[-0.5, 0.5, 0.5, 1.0]]))
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y.backward(g)
    assert torch.equal(x.grad, torch.tensor([[0.0, 2.0, 3.0, 0.0]]))  # clamped: no gradient
    # inside: round(x/s) - x/s = [0.4, -0.2]; clamped: c - z = [-1, 2]
    expect = 1.0 * -1 + 2.0 * 0.4 + 3.0 * -0.2 + 4.0 * 2
    assert abs(float(s.grad) - expect) < 1e-5


def test_fused_ste_matches_op_chain():
    torch.manual_seed(0)
    x0 = torch.randn(6, 10) * 3
    lo, hi = x0.amin(-1, keepdim=True), x0.amax(-1, keepdim=True)
    s0, z0 = qparams_from_range(lo, hi, 4, False)
    grads = []
    for fused in (True, False):
        x, s = x0.clone().requires_grad_(), (s0 * 0.8).requires_grad_()
        z = z0.clone().requires_grad_(not fused)  # a learnable zero takes the op chain
        y = fake_quant(x, s, z, 4, False, ste=True)
        y.pow(2).sum().backward()
        grads.append((y.detach(), x.grad, s.grad))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mse_clip_beats_minmax_with_outlier():
    torch.manual_seed(0)
    w = torch.randn(4, 256)
    w[:, 0] = 20.0
    r = mse_clip_search(w, 3)
    assert r.shape == (4, 1) and (r < 1).all()
    from quantizers.core.quantizer import weight_qparams

    s, z = weight_qparams(w, 3, clip_ratio=r)
    clipped = fake_quant(w, s, z, 3, False)
    assert (clipped - w).pow(2).sum() < (fake_quant_weight(w, 3) - w).pow(2).sum()


def test_per_token_activation_is_per_row():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 100.0, 200.0, 300.0]])
    assert torch.allclose(fake_quant_act(x, 2), x)  # 4 levels fit each row exactly


def test_observers_and_time_ranges():
    mm, ema = MinMaxObserver(per_channel=True), EMAObserver(per_channel=True, momentum=0.5)
    for x in (torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, -1.0]])):
        mm.update(x)
        ema.update(x)
    assert torch.equal(mm.hi, torch.tensor([3.0, -1.0])) and torch.equal(
        mm.lo, torch.tensor([1.0, -2.0])
    )
    assert torch.equal(ema.hi, torch.tensor([2.0, -1.5]))
    tr = TimeRangeObserver((500.0,), MinMaxObserver)
    tr.update(torch.ones(2, 2), 100.0)
    tr.update(-torch.ones(2, 2), 900.0)
    assert tr.observers[0].hi.item() == 1 and tr.observers[1].hi.item() == -1
    assert bucket_of(499.0, (500.0,)) == 0 and bucket_of(500.0, (500.0,)) == 1


def test_pack_unpack_int4_round_trip_odd_width():
    codes = torch.randint(-8, 8, (3, 7), dtype=torch.int8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 4)
    assert torch.equal(unpack_int4(packed, 7), codes)


def test_int_mm_exact_and_act_codes():
    a = torch.randint(-128, 128, (5, 7), dtype=torch.int8)
    b = torch.randint(-128, 128, (7, 3), dtype=torch.int8)
    assert torch.equal(int_mm(a, b), a.int() @ b.int())
    x = torch.randn(6, 16)
    q, s, z, _ = token_codes(x, 6, False, -32, torch.int8)
    assert q.dtype == torch.int8 and q.min() >= -32 and q.max() <= 31
    assert torch.allclose((q.float() - z) * s, fake_quant_act(x, 6), atol=1e-6)
