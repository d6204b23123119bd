"""Every registered quantizer on every model adapter with a tiny random model (from the
registry: ``ModelAdapter.tiny``), and on the mini world's generator when its weights are
installed.

Per (quantizer, model): for every denoiser (expert), calibrate on the captured rows it serves,
quantize, then check that exactly the adapter's quantizable, non-skipped linears were
replaced, that generation still runs and that W8A8 stays close to FP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from quantizers.core import QuantLinear
from vqbench.adapters import CATALOG, adapter_class
from vqbench.adapters.base import match_any
from vqbench.config import GenerationSpec
from vqbench.registry import MODELS, QUANTIZERS

PROMPTS = ["a red circle moving left in the sky", "a blue square moving up in the sea"]
MODELS_UNDER_TEST = [
    pytest.param(n, marks=[pytest.mark.slow] if adapter_class(n).tiny.slow else [], id=n)
    for n in CATALOG
    if adapter_class(n).tiny is not None
] + ["mini"]
#: (quantizer, model) pairs that fail for a known reason outside the adapters (strict xfail)
KNOWN_GAPS = {
    ("s2q_vdit", "tiny-mochi"): "S2Q-VDiT's attention probe stacks column sums of calls whose "
    "key length differs (Mochi drops each prompt's padded text tokens); quantizers/core/attention",
}


def _mini_available() -> bool:
    try:
        from vqbench.mini.assets import verify

        verify()
    except Exception:  # missing or unverifiable assets: the mini cases skip
        return False
    return True


def _adapter(model: str, image: str):
    """A loaded adapter; image-to-video ones get ``image`` bound to every prompt."""
    if model == "mini" and not _mini_available():
        pytest.skip("mini world weights are not installed")
    a = MODELS.get(model)()
    a.load("cpu", "float32")
    if a.needs_image:
        gen, cap = a.generate, a.capture
        a.generate = lambda p, s, spec: gen(p, s, spec, images=[image] * len(p))
        a.capture = lambda p, s, spec: cap(p, s, spec, images=[image] * len(p))
    return a


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    """A 32x32 RGB gradient as PNG (the conditioning image of image-to-video models)."""
    from PIL import Image

    ramp = np.linspace(0, 255, 32, dtype=np.float64)
    pixels = np.stack([ramp[None, :].repeat(32, 0), ramp[:, None].repeat(32, 1)] * 2, -1)
    path = tmp_path_factory.mktemp("img") / "first.png"
    Image.fromarray(pixels[..., :3].astype(np.uint8)).save(path)
    return str(path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module", params=MODELS_UNDER_TEST)
def fp_case(request, image):
    """(model name, generation spec, calibration set, FP videos), computed once per model."""
    a = _adapter(request.param, image)
    spec = a.resolve(GenerationSpec(steps=3, batch_size=2))
    calib = a.capture(PROMPTS, [11, 12], spec)
    fp = a.generate(PROMPTS[:1], [5], spec)[0]
    return request.param, spec, calib, fp


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_quantizer_runs_on_adapter(name, fp_case, image, request):
    model, spec, calib, fp = fp_case
    if (name, model) in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[name, model], strict=True))
    a = _adapter(model, image)
    cls = QUANTIZERS.get(name)
    targets = a.quant_targets(spec)
    assert [t.name for t in targets] == list(a.denoisers())
    for target in targets:
        rows = a.calibration_for(target.name, calib)
        q = cls.from_spec(8, 8, params=cls.smoke_params)
        state = q.calibrate(target, rows)
        q.quantize(target, state)

        mods = dict(target.module.named_modules())
        quantized = {n for n, m in mods.items() if isinstance(m, QuantLinear)}
        expected = {n for n in target.roles if not match_any(n, target.skip)}
        assert quantized == expected, sorted(quantized ^ expected)[:5]
        assert all(isinstance(mods[n], nn.Linear) for n in target.skip if n in mods)

        eb = q.effective_bits(target)
        assert eb["quantized_layers"] == len(expected) and 8 <= eb["w_bits"] < 16
        with torch.no_grad():
            out = target.forward(next(rows.batches(2)))
        assert torch.isfinite(out).all()

    video = a.generate(PROMPTS[:1], [5], spec)[0]
    assert video.frames.shape == fp.frames.shape
    assert _psnr(video.frames, fp.frames) > 25.0
