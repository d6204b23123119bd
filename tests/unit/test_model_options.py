"""Model options: CPU offload and VAE tiling/slicing, and the per-step progress bar."""

from __future__ import annotations

import pytest

from vqbench.adapters import adapter_class
from vqbench.adapters.options import ModelOptions
from vqbench.config import ConfigError, GenerationSpec, ModelSpec, load_config

PROMPTS = ["a red circle moves left"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.offload=gpu", "model.offload: must be one of"),
        ("model.offload=model", "model.offload: CPU offload needs an accelerator"),
        ("model.device=cuda model.offload=sequential", "model.offload: sequential offload"),
        ("model.step_progress=sometimes", "model.step_progress: must be one of"),
        ("model.vae_tiling=maybe", "model.vae_tiling: expected true/false"),
    ],
)
def test_invalid_options_name_their_field(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=override.split())


def test_valid_options_load():
    cfg = load_config(overrides=["model.device=cuda", "model.offload=model"])
    assert cfg.model.offload == "model" and cfg.model.vae_tiling is False
    fp_only = ["model.device=cuda", "model.offload=sequential", "quantizers=[]"]
    assert load_config(overrides=fp_only).model.offload == "sequential"


def test_vae_tiling_and_slicing_are_enabled():
    a = adapter_class("tiny-latte")()
    a.configure(ModelSpec(name="tiny-latte", vae_tiling=True, vae_slicing=True))
    a.load()
    assert a.pipe.vae.use_tiling and a.pipe.vae.use_slicing
    plain = adapter_class("tiny-latte")()
    plain.load()
    assert not plain.pipe.vae.use_tiling and not plain.pipe.vae.use_slicing


def test_offload_on_cpu_is_refused_at_load():
    a = adapter_class("tiny-latte")()
    a.configure(ModelSpec(offload="model"))
    with pytest.raises(ValueError, match="model.offload"):
        a.load()


@pytest.mark.parametrize(
    ("mode", "quiet", "steps", "shown"),
    [
        ("auto", False, 2, False),
        ("auto", False, 200, True),
        ("on", False, 2, True),
        ("on", True, 2, False),
        ("off", False, 500, False),
    ],
)
def test_step_progress_rule(mode, quiet, steps, shown):
    assert ModelOptions(step_progress=mode, quiet=quiet).shows_steps(steps, 1) is shown


def test_step_bar_ticks_per_step_and_keeps_capture_intact(monkeypatch):
    import tqdm.auto

    bars: list[list[int]] = []

    class Recording(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append([])

        def update(self, n=1):
            bars[-1].append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    a = adapter_class("tiny-wan")()
    a.load()
    spec = GenerationSpec(steps=3)
    plain = a.capture(PROMPTS, [0], spec)
    assert bars == []  # auto: 3 steps x 1 sample is short
    a.configure(ModelSpec(step_progress="on"))
    with_bar = a.capture(PROMPTS, [0], spec)
    assert bars == [[1, 1, 1]]  # one tick per sampling step
    assert with_bar.step_index.tolist() == plain.step_index.tolist()
    assert (with_bar.latents - plain.latents).abs().max() == 0
    a.configure(ModelSpec(step_progress="on"), quiet=True)
    a.generate(PROMPTS, [0], spec)
    assert len(bars) == 1  # quiet: no bar
