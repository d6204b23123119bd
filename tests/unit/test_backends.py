"""Kernel backends of the real mode: the capability table, the override, and real == fake on
every backend this machine has (including fbgemm capped to AVX2, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from quantizers.core import backends
from quantizers.core.backends import ENV, choose_backend, cpu_backend
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from vqbench.environment import cpu_info
from vqbench.registry import QUANTIZERS

# relative L2 error of real vs fake: identical integer codes, float summation order only
TOL = 1e-5
AVAILABLE = ["int_mm", *(["fbgemm"] if backends.fbgemm_available() else [])]
SPECS = [
    LayerSpec(8, 8),
    LayerSpec(4, 8),
    LayerSpec(8, 8, w_symmetric=True, a_symmetric=True),
    LayerSpec(3, 6),
    LayerSpec(2, 4, "group", 16),
    LayerSpec(8, 8, "group", 16),
    LayerSpec(8, 8, "tensor"),
    LayerSpec(6, 6, w_symmetric=True),
]


def _real_vs_fake(spec: LayerSpec, x: torch.Tensor, act_range=None) -> tuple[float, str]:
    torch.manual_seed(0)
    lin = nn.Linear(x.shape[-1], 24)
    fake = QuantLinear(lin, [QuantVariant(spec, "fake", lin.weight, act_range=act_range)])
    real = QuantLinear(lin, [QuantVariant(spec, "real", lin.weight, act_range=act_range)])
    with torch.no_grad():
        yf, yr = fake(x), real(x)
    assert yr.shape == yf.shape
    return ((yr - yf).norm() / yf.norm()).item(), real.variants[0].backend


def test_capability_table():
    assert cpu_backend("AVX512", vnni=True, amx=False) == "int_mm"
    assert cpu_backend("AVX512", vnni=False, amx=True) == "int_mm"
    assert cpu_backend("AVX512", vnni=False, amx=False) == "fbgemm"
    assert cpu_backend("AVX2", vnni=True, amx=True) == "fbgemm"  # _int_mm skips oneDNN there
    assert cpu_backend("DEFAULT", vnni=False, amx=False) == "fbgemm"
    assert cpu_backend("DEFAULT", vnni=False, amx=False, fbgemm=False) == "int_mm"


def test_override_and_errors(monkeypatch):
    monkeypatch.setenv(ENV, "int_mm")
    assert choose_backend("cpu") == "int_mm"
    assert choose_backend("cuda") == "int_mm"
    monkeypatch.setenv(ENV, "fbgemm")
    if backends.fbgemm_available():
        assert choose_backend("cpu") == "fbgemm"
    with pytest.raises(ValueError, match=ENV):
        choose_backend("cuda")
    monkeypatch.setenv(ENV, "cutlass")
    with pytest.raises(ValueError, match=f"^{ENV}: 'cutlass'"):
        choose_backend("cpu")
    monkeypatch.delenv(ENV)
    flags = backends.cpu_flags()
    want = cpu_backend(
        torch.backends.cpu.get_cpu_capability(),
        flags["avx512_vnni"],
        flags["amx"],
        backends.fbgemm_available(),
    )
    assert choose_backend("cpu") == want
    info = cpu_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_real_matches_fake_on_every_backend(backend, spec, monkeypatch):
    monkeypatch.setenv(ENV, backend)
    x = torch.randn(2, 9, 48) * 3 + 0.5
    x[..., 5] *= 12  # an outlier channel: codes near both ends of the range
    err, used = _real_vs_fake(spec, x)
    assert used == backend
    assert err < TOL


@pytest.mark.parametrize("backend", AVAILABLE)
def test_static_range_and_memory_same_on_every_backend(backend, monkeypatch):
    monkeypatch.setenv(ENV, backend)
    rng = (torch.tensor(-4.0), torch.tensor(6.0))
    err, _ = _real_vs_fake(LayerSpec(8, 8, a_granularity="tensor"), torch.randn(7, 48) * 2, rng)
    assert err < TOL
    lin = nn.Linear(64, 32)
    w4 = QuantLinear(lin, [QuantVariant(LayerSpec(4, 8), "real", lin.weight)])
    assert w4.variants[0].qweight.numel() == 32 * 32  # stored packed two per byte
    assert w4.memory_bytes() == 32 * 32 + 32 * 8 + 32 * 4


_AVX2_SCRIPT = """
import torch
from quantizers.core.kernels import fbgemm_saturates
from tests.unit.test_backends import SPECS, _real_vs_fake
assert fbgemm_saturates(), "FBGEMM_ENABLE_INSTRUCTIONS=AVX2 did not cap fbgemm"
x = torch.randn(3, 40, 48) * 3 + 0.5
x[..., 5] *= 12
for spec in SPECS:
    err, used = _real_vs_fake(spec, x)
    assert used == "fbgemm" and err < 1e-5, (spec, used, err)
print("ok")
"""


@pytest.mark.skipif(not backends.fbgemm_available(), reason="no fbgemm in this torch build")
def test_fbgemm_exact_when_capped_to_avx2():
    """fbgemm without VNNI saturates int16 pair sums; the split GEMM keeps W8A8 exact."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), ENV: "fbgemm", "OMP_NUM_THREADS": "1"}
    env.update(FBGEMM_ENABLE_INSTRUCTIONS="AVX2", ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run(
        [sys.executable, "-c", _AVX2_SCRIPT], env=env, cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_describe_names_the_backend(monkeypatch):
    from tests.conformance.conftest import build_calib, build_target

    for kernel, backend in (("fake", "fake"), ("real", AVAILABLE[-1])):
        monkeypatch.setenv(ENV, AVAILABLE[-1])
        target = build_target()
        q = QUANTIZERS.get("rtn").from_spec(4, 8, kernel=kernel)
        q.quantize(target, q.calibrate(target, build_calib()))
        assert q.describe()["kernel_backend"] == backend


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", SPECS[:4], ids=str)
def test_cuda_real_matches_fake(spec):
    torch.manual_seed(0)
    lin = nn.Linear(64, 40).cuda()
    x = torch.randn(33, 64, device="cuda") * 3
    fake = QuantLinear(lin, [QuantVariant(spec, "fake", lin.weight)])
    real = QuantLinear(lin, [QuantVariant(spec, "real", lin.weight)])
    assert real.variants[0].backend == "int_mm"
    with torch.no_grad():
        yf, yr = fake(x), real(x)
    assert ((yr - yf).norm() / yf.norm()).item() < TOL


def test_bf16_only_where_native(monkeypatch, caplog):
    from vqbench.mini import train_generator

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with caplog.at_level("INFO", logger="vqbench.mini.train_generator"):
        assert train_generator.use_bf16(True) is False
    assert "no native bf16" in caplog.text
    assert train_generator.use_bf16(False) is False
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert train_generator.use_bf16(True) is True
