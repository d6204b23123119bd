"""The real mode's fused element-wise kernels: exact codes, epilogue formulas, fallbacks."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from quantizers.core import fused
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from quantizers.core.quantizer import qparams_from_range, quantize_codes, token_range


def _act(rows: int = 37, cols: int = 48) -> torch.Tensor:
    """Random tokens plus one row of exact rounding ties (range 255: scale 1, x/s = n + 0.5)."""
    torch.manual_seed(0)
    x = torch.randn(rows, cols) * 3 + 0.5
    x[3, 7] = 40.0  # an outlier token
    x[5] = torch.linspace(-127.5, 127.5, cols).round() + 0.5
    x[5, :3] = torch.tensor([-127.5, -126.5, 0.5])
    x[5, -1] = 127.5
    return x


@pytest.mark.parametrize(("bits", "sym", "shift"), [(8, False, -128), (8, True, 0), (6, False, 0)])
@pytest.mark.parametrize("static", [False, True])
def test_token_codes_equal_op_by_op_and_the_fake_modes_codes(bits, sym, shift, static):
    x = _act()
    scale = zero = None
    if static:
        scale, zero = qparams_from_range(torch.tensor([[-4.0]]), torch.tensor([[6.0]]), bits, sym)
    dtype = torch.int8 if shift <= 0 else torch.float32
    got = fused.token_codes(x, bits, sym, shift, dtype, scale, zero, True)
    ref = fused.token_codes.__wrapped__(x, bits, sym, shift, dtype, scale, zero, True)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)
    s, z = (scale, zero) if static else qparams_from_range(*token_range(x), bits, sym)
    codes = quantize_codes(x, s, z, bits, sym) + shift
    assert torch.equal(got[0], codes.to(dtype))
    assert torch.equal(got[2], z + shift)
    assert torch.equal(got[3], codes.sum(-1))


def test_token_codes_round_ties_to_even():
    q, s, z, _ = fused.token_codes(_act(), 8, False, 0, torch.float32)
    assert s[5].item() == 1.0 and z[5].item() == 128  # round(127.5) = 128
    # round half to even: -127.5 -> -128, -126.5 -> -126, 0.5 -> 0, 127.5 -> 128 (clamped)
    assert q[5, :3].tolist() == [0.0, 2.0, 128.0] and q[5, -1].item() == 255


def test_nan_token_stays_nan_in_the_real_mode():
    torch.manual_seed(1)
    lin = nn.Linear(48, 24)
    layer = QuantLinear(lin, [QuantVariant(LayerSpec(8, 8), "real", lin.weight.detach())])
    x = _act()
    x[2, 4] = float("nan")
    y = layer(x)
    assert torch.isnan(y[2]).all()
    assert torch.isfinite(y[torch.arange(len(x)) != 2]).all()


def _epilogue_case(sym_a: bool, sym_w: bool):
    g = torch.Generator().manual_seed(2)
    m, n, k = 9, 6, 40
    q = torch.randint(-128, 128, (m, k), generator=g)
    c = torch.randint(-128, 128, (n, k), generator=g)
    zx = None if sym_a else torch.randint(-128, 128, (m, 1), generator=g).double()
    zw = None if sym_w else torch.randint(-8, 8, (n,), generator=g).double()
    sx, sw = torch.rand(m, 1, generator=g).double(), torch.rand(n, generator=g).double()
    bias = torch.randn(n, generator=g).double()
    qz = q.double() - (0 if zx is None else zx)
    cz = c.double() - (0 if zw is None else zw.unsqueeze(-1))
    want = (qz @ cz.t()) * sx * sw + bias
    args = [
        (q @ c.t()).int(),
        sw.float(),
        sx.float(),
        None if zx is None else zx.float(),
        c.sum(-1).float(),
        None if zw is None else zw.float(),
        None if zw is None else q.sum(-1).float(),
        k,
        bias.float(),
    ]
    return args, want


@pytest.mark.parametrize(("sym_a", "sym_w"), [(False, False), (True, False), (False, True)])
def test_int_epilogue_is_the_zero_point_formula(sym_a, sym_w):
    args, want = _epilogue_case(sym_a, sym_w)
    for fn in (fused.int_epilogue, fused.int_epilogue.__wrapped__):
        got = fn(*args).double()
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-4 * want.abs().max().item())


def test_fbgemm_epilogue_by_hand():
    out = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    sx, zu = torch.tensor([[0.5], [2.0]]), torch.tensor([[1.0], [3.0]])
    w_corr, bias = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -1.0])
    want = torch.tensor([[0.5 * 8 + 1, 0.5 * 16 - 1], [2.0 * 24 + 1, 2.0 * 28 - 1]])
    assert torch.equal(fused.fbgemm_epilogue(out, sx, zu, w_corr, bias), want)
    assert torch.equal(fused.fbgemm_epilogue(out, sx, zu, w_corr, None), want - bias)


def test_off_runs_op_by_op_with_the_same_outputs(monkeypatch):
    torch.manual_seed(3)
    lin = nn.Linear(48, 24)
    x = _act()
    on = QuantLinear(lin, [QuantVariant(LayerSpec(4, 8), "real", lin.weight.detach())])
    if fused._failed:
        pytest.skip(f"torch.compile does not work here: {fused.status()}")
    assert fused.status() == "inductor"
    y_on = on(x)
    monkeypatch.setenv(fused.ENV, "off")
    assert fused.status() == "eager (VQBENCH_FUSED=off)"
    y_off = on(x)
    assert torch.allclose(y_on, y_off, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv(fused.ENV, "fast")
    with pytest.raises(ValueError, match="VQBENCH_FUSED"):
        fused.enabled()


def test_a_failed_compile_falls_back_and_says_so(monkeypatch, caplog):
    def broken(fn, **_kw):
        def run(*_a, **_k):
            raise RuntimeError("no C++ compiler\nmore")

        return run

    monkeypatch.setattr(fused, "_failed", [])
    monkeypatch.setattr(torch, "compile", broken)
    double = fused._cpu_compiled(lambda x: x * 2)
    assert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))
    assert fused.status() == "eager (compile failed: RuntimeError: no C++ compiler)"
    assert "running op by op" in caplog.text
    assert not fused.enabled()


def test_inductor_cache_is_keyed_by_cpu_capability(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    path = fused.isolate_inductor_cache()
    cap = torch.backends.cpu.get_cpu_capability().lower()
    assert path == os.path.join(str(tmp_path), f"isa-{cap}")
    assert fused.isolate_inductor_cache() == path  # idempotent
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == path
