"""``mini-outlier``: mini's function, mini's videos, realistic channel outliers, its own id."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vqbench.adapters import adapter_class
from vqbench.adapters.mini_outlier import OutlierProfile, folded_linears, reparametrise
from vqbench.config import GenerationSpec
from vqbench.mini import assets

pytestmark = pytest.mark.skipif(
    not assets.available(),
    reason="mini assets not present (train them, see vqbench/mini/README.md)",
)
PROMPTS = ["a red circle moving left in the sky", "a blue square moving up in the desert"]


@pytest.fixture(scope="module")
def pair():
    mini, outlier = adapter_class("mini")(), adapter_class("mini-outlier")()
    mini.load("cpu", "float32")
    outlier.load("cpu", "float32")
    return mini, outlier


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 32, 32, generator=g)
    return x, torch.tensor([950, 40]), torch.randn(2, 16, 64, generator=g)


def test_profile_is_deterministic_and_sparse() -> None:
    p = OutlierProfile()
    s = p.scales(192, 3)
    assert torch.equal(s, p.scales(192, 3)) and not torch.equal(s, p.scales(192, 4))
    big = s[s != 1]
    assert big.numel() == p.channels and bool((big >= p.low).all() and (big <= p.high).all())


def test_denoiser_outputs_match_mini(pair) -> None:
    mini, outlier = pair
    x, t, text = _inputs()
    with torch.no_grad():
        a = mini.transformer(x, timestep=t, encoder_hidden_states=text).sample
        b = outlier.transformer(x, timestep=t, encoder_hidden_states=text).sample
    assert (a - b).abs().max() < 1e-4 * a.abs().max()


def test_videos_match_mini_above_60_db(pair) -> None:
    mini, outlier = pair
    spec = GenerationSpec(steps=4, batch_size=2)
    for a, b in zip(
        mini.generate(PROMPTS, [0, 1], spec), outlier.generate(PROMPTS, [0, 1], spec), strict=True
    ):
        mse = np.mean((a.frames.astype(np.float64) - b.frames.astype(np.float64)) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 60


def test_folded_linears_see_outlier_channels(pair) -> None:
    ratios: dict[str, list[float]] = {"mini": [], "mini-outlier": []}
    x, t, text = _inputs()
    for adapter in pair:
        den = adapter.denoiser()
        mods = dict(den.named_modules())

        def hook(mod: nn.Module, args: tuple, name: str = adapter.name) -> None:
            m = args[0].abs().reshape(-1, args[0].shape[-1]).amax(0)
            ratios[name].append(float(m.max() / m.median()))

        handles = [mods[n].register_forward_pre_hook(hook) for n in folded_linears(den)]
        with torch.no_grad():
            den(x, timestep=t, encoder_hidden_states=text)
        for h in handles:
            h.remove()
    assert np.median(ratios["mini"]) < 8
    assert np.median(ratios["mini-outlier"]) > 3 * np.median(ratios["mini"])


def test_identity_is_its_own(pair) -> None:
    mini, outlier = pair
    a, b = mini.model_info(), outlier.model_info()
    assert b["id"] == "mini-outlier" and a["id"] == "mini"
    assert b["revision"] != a["revision"] and b["base_model"]["revision"] == a["revision"]
    assert b["reparametrisation"]["high"] == OutlierProfile().high


def test_reparametrise_refuses_reduced_precision(pair) -> None:
    den = pair[0].transformer
    bf = type(den).from_config(den.config).to(torch.bfloat16)
    with pytest.raises(ValueError, match="float32"):
        reparametrise(bf, OutlierProfile())
