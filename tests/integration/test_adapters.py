"""The diffusers adapters (Latte, CogVideoX, Wan) on tiny random pipelines of the real classes."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
import torch
from torch import nn

from vqbench.adapters import CATALOG
from vqbench.adapters.cogvideox import CogVideoXAdapter, TinyCogVideoXAdapter
from vqbench.adapters.latte import LatteAdapter, TinyLatteAdapter
from vqbench.adapters.wan import TinyWanAdapter, WanAdapter
from vqbench.config import GenerationSpec
from vqbench.types import ROLES

PROMPTS = ["a red circle moves left across the sky", "a dog runs on the beach"]
TINY = {
    "tiny-latte": TinyLatteAdapter,
    "tiny-cogvideox": TinyCogVideoXAdapter,
    "tiny-wan": TinyWanAdapter,
}
REAL = {"tiny-latte": LatteAdapter, "tiny-cogvideox": CogVideoXAdapter, "tiny-wan": WanAdapter}
# expected latent token geometry (F, S, prefix) of the tiny defaults
GEOMETRY = {"tiny-latte": (8, 16, 0), "tiny-cogvideox": (3, 16, 16), "tiny-wan": (3, 16, 0)}
QUANTIZED_ROLES = ("spatial_attn", "temporal_attn", "cross_attn", "mlp")


@pytest.fixture(scope="module", params=sorted(TINY))
def adapter(request):
    a = TINY[request.param]()
    a.load("cpu", "float32")
    return a


@pytest.fixture(scope="module")
def calib(adapter):
    spec = GenerationSpec(steps=4, batch_size=2)
    return adapter.capture(PROMPTS, [3, 4], spec, every_k_steps=2)


def test_catalog_entries_resolve_to_the_adapters():
    expected = {**TINY, "latte": LatteAdapter, "cogvideox": CogVideoXAdapter, "wan": WanAdapter}
    for name, cls in expected.items():
        module, _, attr = CATALOG[name].partition(":")
        assert getattr(importlib.import_module(module), attr) is cls
        assert cls.name == name


def test_generate_is_deterministic_and_batch_independent(adapter):
    spec = adapter.resolve(GenerationSpec(batch_size=2))
    videos = adapter.generate(PROMPTS, [0, 1], spec)
    assert len(videos) == 2
    for v in videos:
        assert v.frames.shape == (spec.frames, spec.height, spec.width, 3)
        assert v.frames.dtype == np.uint8 and v.fps == spec.fps
        assert v.frames.std() > 1.0  # not a constant image
    again = adapter.generate(PROMPTS, [0, 1], spec)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(videos, again, strict=True))
    alone = adapter.generate(PROMPTS[1:], [1], GenerationSpec(batch_size=1))[0]
    diff = np.abs(alone.frames.astype(int) - videos[1].frames.astype(int))
    assert diff.max() <= 1  # batch position changes at most float rounding
    other = adapter.generate(PROMPTS[1:], [2], GenerationSpec(batch_size=1))[0]
    assert np.abs(other.frames.astype(int) - videos[1].frames.astype(int)).mean() > 1.0


def test_progress_is_called_per_video(adapter):
    seen: list[int] = []
    adapter.generate(PROMPTS, [0, 1], GenerationSpec(steps=2, batch_size=1), progress=seen.append)
    assert sum(seen) == 2


def test_generation_announces_sampling_steps(adapter):
    from quantizers.core.context import current_step

    seen: list[tuple] = []

    def record(module, args, kwargs):
        c = current_step()
        seen.append((c.step, c.num_steps))

    spec = GenerationSpec(steps=3, batch_size=2)
    # a linear inside the denoiser sees what quantized layers see
    inner = next(m for m in adapter.denoiser().modules() if isinstance(m, nn.Linear))
    handle = inner.register_forward_pre_hook(record, with_kwargs=True)
    try:
        adapter.generate(PROMPTS, [0, 1], spec)
    finally:
        handle.remove()
    steps = sorted({s for s, _ in seen})
    assert steps == [0, 1, 2] and {n for _, n in seen} == {3}
    # within each pipeline call steps only advance; cond/uncond passes share their index
    order = [s for s, _ in seen]
    assert all(b in (a, a + 1) or b == 0 for a, b in zip(order, order[1:], strict=False))
    assert current_step().step is None  # nothing leaks out of generation


def test_capture_rows(adapter, calib):
    assert len(calib) == 2 * 2 * 2  # prompts x captured steps (0, 2 of 4) x {cond, uncond}
    assert sorted(set(calib.step_index.tolist())) == [0, 2]
    for p in range(2):
        for s in (0, 2):
            sel = (calib.prompt_index == p) & (calib.step_index == s)
            assert sorted(calib.is_uncond[sel].tolist()) == [False, True]
            cond, uncond = calib.text[sel & ~calib.is_uncond], calib.text[sel & calib.is_uncond]
            assert not torch.equal(cond, uncond)
            # cond and uncond rows of a step share x_t and t
            assert torch.equal(calib.latents[sel][0], calib.latents[sel][1])
            assert torch.equal(calib.timesteps[sel][0], calib.timesteps[sel][1])
    first = calib.timesteps[calib.step_index == 0].float()
    later = calib.timesteps[calib.step_index == 2].float()
    assert first.min() > later.max()  # noisiest first
    assert calib.meta["every_k_steps"] == 2 and calib.meta["model"] == adapter.name


def test_capture_without_guidance_has_only_cond_rows(adapter):
    c = adapter.capture(PROMPTS[:1], [0], GenerationSpec(steps=2, guidance=1.0), every_k_steps=1)
    assert len(c) == 2 and not c.is_uncond.any()
    assert c.step_index.tolist() == [0, 1]


def test_calib_forward_reproduces_fp_outputs(adapter, calib):
    n = 0
    with torch.no_grad():
        for batch in calib.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)):
            out = adapter.calib_forward(batch)
            assert out.shape == batch["outputs"].shape
            torch.testing.assert_close(out, batch["outputs"], atol=1e-5, rtol=1e-5)
            n += len(out)
    assert n == len(calib)


def test_calib_forward_has_gradients(adapter, calib):
    batch = next(calib.batches(2))
    out = adapter.calib_forward(batch)
    out.square().mean().backward()
    grads = [p.grad for p in adapter.denoiser().parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    adapter.denoiser().zero_grad(set_to_none=True)


def test_every_linear_has_a_role(adapter):
    roles = adapter.layer_roles()
    linears = {n for n, m in adapter.denoiser().named_modules() if isinstance(m, nn.Linear)}
    assert set(roles) == linears
    assert set(roles.values()) <= set(ROLES)
    assert {"spatial_attn", "mlp", "final"} <= set(roles.values())
    if adapter.name != "tiny-cogvideox":
        assert "cross_attn" in roles.values()
    if adapter.name == "tiny-latte":
        assert "temporal_attn" in roles.values()
    skip = adapter.default_skip()
    assert skip and all(roles[n] in ("embed", "timestep_embed", "final") for n in skip)
    mods = dict(adapter.denoiser().named_modules())
    for name, role in roles.items():
        if role in QUANTIZED_ROLES:  # wide enough for per-channel 4 vs 8 bit to differ
            assert min(mods[name].in_features, mods[name].out_features) >= 32
    blocks = adapter.blocks()
    assert blocks and all(b in mods for b in blocks)


def test_token_layouts_fit_linear_inputs(adapter):
    spec = adapter.resolve(GenerationSpec(steps=2))
    layouts = adapter.token_layouts(spec)
    roles = adapter.layer_roles()
    assert set(layouts) == set(roles)
    f, s, prefix = GEOMETRY[adapter.name]
    seen: dict[str, torch.Size] = {}
    mods = dict(adapter.denoiser().named_modules())

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen.setdefault(name, args[0].shape)

        return hook

    handles = [mods[name].register_forward_pre_hook(record(name)) for name in roles]
    try:
        adapter.capture(PROMPTS[:1], [0], spec, every_k_steps=1)
    finally:
        for h in handles:
            h.remove()
    assert set(seen) == set(roles)
    framed = 0
    for name, layout in layouts.items():
        if layout.kind == "none":
            assert roles[name] not in ("spatial_attn", "temporal_attn", "mlp"), name
            continue
        framed += 1
        assert (layout.frames, layout.tokens_per_frame) == (f, s), name
        if name != "proj_out":
            assert layout.prefix == prefix, name
        x = torch.randn(seen[name])
        frames = layout.to_frames(x)
        assert frames.shape[1:] == (f, s, x.shape[-1]), name
        ids = layout.frame_index(x)
        assert ids.shape == x.shape[:2]
        assert sorted(ids[ids >= 0].unique().tolist()) == list(range(f)), name
    assert framed >= len([r for r in roles.values() if r in ("spatial_attn", "mlp")])
    target = adapter.quant_target(spec)
    assert target.layouts == layouts and target.forward == adapter.calib_forward


def test_layouts_locate_true_frames(adapter, calib):
    """Perturbing latent frame k changes exactly the tokens that the layout assigns to frame k.

    Checked at the first linear of the first block of each kind, where no attention has yet
    mixed frames: this pins down the frame order (frame-major, text prefix, N = B*F or B*S).
    """
    f, _, _ = GEOMETRY[adapter.name]
    k = f - 1
    blocks = adapter.blocks()
    names = [f"{b}.attn1.to_q" for b in blocks[: 2 if adapter.name == "tiny-latte" else 1]]
    layouts = adapter.token_layouts(GenerationSpec())
    mods = dict(adapter.denoiser().named_modules())
    batch = next(calib.batches(2))
    frame_axis = 1 if adapter.name == "tiny-cogvideox" else 2
    moved = dict(batch, latents=batch["latents"].clone())
    moved["latents"].select(frame_axis, k).add_(1.0)
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [
        mods[n].register_forward_pre_hook(lambda m, a, n=n: inputs[n].append(a[0].clone()))
        for n in names
    ]
    try:
        with torch.no_grad():
            adapter.calib_forward(batch)
            adapter.calib_forward(moved)
    finally:
        for h in handles:
            h.remove()
    for n in names:
        before, after = inputs[n]
        changed = (after - before).abs().amax(-1) > 1e-6
        assert torch.equal(changed, layouts[n].frame_index(before) == k), n


def test_output_to_frames(adapter, calib):
    f, _, _ = GEOMETRY[adapter.name]
    frames = adapter.output_to_frames(calib.outputs[:2])
    lat = calib.latents
    h, w = lat.shape[-2:]
    assert frames.shape[:3] == (2, f, h * w)
    # frame 0 of the output equals frame 0 of the raw tensor (frame axis identified correctly)
    out0 = calib.outputs[0]
    raw0 = out0[0] if adapter.name == "tiny-cogvideox" else out0[:, 0]  # [C, H, W]
    torch.testing.assert_close(frames[0, 0], raw0.reshape(raw0.shape[0], -1).T)


def test_model_info(adapter):
    info = adapter.model_info()
    assert info["revision"] is None and info["dtype"] == "float32" and info["id"] == adapter.name


def test_real_adapter_loads_a_saved_pipeline(adapter, tmp_path):
    adapter.pipe.save_pretrained(tmp_path / "pipe")
    real = REAL[adapter.name](path=str(tmp_path / "pipe"))
    real.load("cpu", "float32")
    assert type(real.denoiser()) is type(adapter.denoiser())
    assert real.layer_roles() == adapter.layer_roles()
    spec = GenerationSpec(steps=2, frames=adapter.defaults["frames"], height=32, width=32)
    want = adapter.generate(PROMPTS[:1], [7], spec)[0]
    got = real.generate(PROMPTS[:1], [7], spec)[0]
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1
    info = real.model_info()
    assert info["id"] == real.hub_id and info["path"] == str(tmp_path / "pipe")


@pytest.mark.parametrize("cls", [LatteAdapter, CogVideoXAdapter, WanAdapter])
def test_missing_path_names_directory_and_hub_repo(cls, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as err:
        cls(path=str(missing)).load()
    assert cls.hub_id in str(err.value)
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "cache" / "models"))):
        cls(path=None).load()
