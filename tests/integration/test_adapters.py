"""Every adapter that declares a tiny random model (``ModelAdapter.tiny``), from the registry.

Each runs the real diffusers classes: generation, trajectory capture of every denoiser input,
calibration replay per denoiser (expert), layer roles, token layouts on true frames and the
model identity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vqbench.adapters import CATALOG, adapter_class
from vqbench.adapters.base import match_any
from vqbench.config import GenerationSpec
from vqbench.sampling import current_step
from vqbench.types import ROLES

PROMPTS = ["a red circle moves left across the sky", "a dog runs on the beach"]
QUANTIZED_ROLES = ("spatial_attn", "temporal_attn", "cross_attn", "mlp")
TINY = {n: adapter_class(n) for n in CATALOG if adapter_class(n).tiny is not None}


def _param(name: str):
    marks = [pytest.mark.slow] if TINY[name].tiny.slow else []
    return pytest.param(name, marks=marks, id=name)


def write_image(path, seed: int = 0):
    """A small RGB test image (a colour gradient plus noise) as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 32)[None, :, None] * np.ones((32, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module", params=[_param(n) for n in sorted(TINY)])
def adapter(request, tmp_path_factory):
    """A loaded tiny adapter; image-to-video ones get one test image bound to every prompt."""
    a = TINY[request.param]()
    a.load("cpu", "float32")
    a.test_image = None
    if a.needs_image:
        image = a.test_image = write_image(tmp_path_factory.mktemp("img") / "first.png")
        gen, cap = a.generate, a.capture
        a.generate = lambda p, s, spec, progress=None: gen(p, s, spec, progress, [image] * len(p))
        a.capture = lambda p, s, spec, every_k_steps=1: cap(
            p, s, spec, every_k_steps, [image] * len(p)
        )
    return a


@pytest.fixture(scope="module")
def calib(adapter):
    spec = GenerationSpec(steps=4, batch_size=2)
    return adapter.capture(PROMPTS, [3, 4], spec, every_k_steps=2)


def test_catalog_entries_resolve_to_the_adapters():
    assert len(TINY) >= 5
    for name in CATALOG:
        cls = adapter_class(name)
        assert cls.name == name
        if cls.tiny is not None:
            assert name.startswith("tiny-") and cls.tiny.real in CATALOG
            assert issubclass(cls, adapter_class(cls.tiny.real))


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
    seen: list[tuple] = []

    def record(module, args, kwargs):
        c = current_step()
        seen.append((c.step, c.num_steps))

    spec = GenerationSpec(steps=4, batch_size=2)
    # a linear inside each denoiser sees what quantized layers see
    handles = []
    for module in adapter.denoisers().values():
        inner = next(m for m in module.modules() if isinstance(m, nn.Linear))
        handles.append(inner.register_forward_pre_hook(record, with_kwargs=True))
    try:
        adapter.generate(PROMPTS, [0, 1], spec)
    finally:
        for h in handles:
            h.remove()
    assert sorted({s for s, _ in seen}) == [0, 1, 2, 3] and {n for _, n in seen} == {4}
    # within each pipeline call steps only advance; cond/uncond passes share their index
    order = [s for s, _ in seen]
    assert all(b in (a, a + 1) or b == 0 for a, b in zip(order, order[1:], strict=False))
    assert current_step().step is None  # nothing leaks out of generation


def test_capture_rows(adapter, calib):
    cfg = adapter.cfg_policy == "classifier_free"
    per_step = 2 if cfg else 1
    assert len(calib) == 2 * 2 * per_step  # prompts x captured steps (0, 2 of 4) x kinds
    assert sorted(set(calib.step_index.tolist())) == [0, 2]
    for p in range(2):
        for s in (0, 2):
            sel = (calib.prompt_index == p) & (calib.step_index == s)
            want = [False, True] if cfg else [False]
            assert sorted(calib.is_uncond[sel].tolist()) == want
            if not cfg:
                continue
            cond, uncond = calib.text[sel & ~calib.is_uncond], calib.text[sel & calib.is_uncond]
            assert not torch.equal(cond, uncond)
            # cond and uncond rows of a step share x_t and t
            assert torch.equal(calib.latents[sel][0], calib.latents[sel][1])
            assert torch.equal(calib.timesteps[sel][0], calib.timesteps[sel][1])
    first = calib.timesteps[calib.step_index == 0].float()
    later = calib.timesteps[calib.step_index == 2].float()
    assert first.min() > later.max()  # noisiest first
    assert calib.meta["every_k_steps"] == 2 and calib.meta["model"] == adapter.name
    assert isinstance(calib.meta["call_kwargs"], dict)
    for key, value in calib.extra.items():  # every extra input is per row
        assert value.shape[0] == len(calib), key


def test_capture_without_guidance_has_only_cond_rows(adapter):
    c = adapter.capture(PROMPTS[:1], [0], GenerationSpec(steps=2, guidance=1.0), every_k_steps=1)
    assert len(c) == 2 and not c.is_uncond.any()
    assert c.step_index.tolist() == [0, 1]


def test_each_denoiser_replays_the_rows_it_serves(adapter, calib):
    served = torch.zeros(len(calib), dtype=torch.long)
    for name in adapter.denoisers():
        rows = adapter.calibration_for(name, calib)
        assert len(rows) > 0, name
        forward = adapter.forward_for(name)
        with torch.no_grad():
            for batch in rows.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0)):
                out = forward(batch)
                assert out.shape == batch["outputs"].shape
                torch.testing.assert_close(out, batch["outputs"], atol=1e-5, rtol=1e-5)
        keys = (rows.timesteps, rows.step_index, rows.prompt_index, rows.is_uncond)
        for t, s, p, u in zip(*keys, strict=True):
            hit = (
                (calib.timesteps == t)
                & (calib.step_index == s)
                & (calib.prompt_index == p)
                & (calib.is_uncond == u)
            )
            served += hit.long()
    assert served.tolist() == [1] * len(calib)  # every row served by exactly one denoiser


def test_calib_forward_has_gradients(adapter, calib):
    batch = next(adapter.calibration_for(next(iter(adapter.denoisers())), calib).batches(2))
    out = adapter.calib_forward(batch)
    out.square().mean().backward()
    grads = [p.grad for p in adapter.denoiser().parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    adapter.denoiser().zero_grad(set_to_none=True)


def test_every_linear_has_a_role(adapter):
    roles = adapter.layer_roles()
    for module in adapter.denoisers().values():
        linears = {n for n, m in module.named_modules() if isinstance(m, nn.Linear)}
        assert set(roles) == linears
    assert set(roles.values()) <= set(ROLES)
    assert set(adapter.tiny.roles) <= set(roles.values())
    skip = adapter.default_skip()
    assert skip and all(any(match_any(n, [p]) for n in roles) for p in skip)  # no dead pattern
    skipped = {n for n in roles if match_any(n, skip)}
    assert {n for n, r in roles.items() if r in ("embed", "timestep_embed", "final")} <= skipped
    mods = dict(adapter.denoiser().named_modules())
    for name, role in roles.items():
        if role in QUANTIZED_ROLES:  # wide enough for per-channel 4 vs 8 bit to differ
            assert min(mods[name].in_features, mods[name].out_features) >= 32, name
    blocks = adapter.blocks()
    assert blocks and all(b in mods for b in blocks)


def test_quant_targets_cover_every_denoiser(adapter):
    spec = adapter.resolve(GenerationSpec())
    targets = adapter.quant_targets(spec)
    assert [t.name for t in targets] == list(adapter.denoisers())
    for t in targets:
        assert t.module is adapter.denoisers()[t.name]
        assert set(t.linears()) == {
            n for n, m in t.module.named_modules() if isinstance(m, nn.Linear)
        }
    assert adapter.quant_target(spec).module is adapter.denoiser()


def test_token_layouts_fit_linear_inputs(adapter):
    spec = adapter.resolve(GenerationSpec(steps=2))
    layouts = adapter.token_layouts(spec)
    roles = adapter.layer_roles()
    assert set(layouts) == set(roles)
    f, s, prefix = adapter.tiny.geometry
    seen: dict[str, torch.Size] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()))  # UNets pass input=...
            seen.setdefault(name, x.shape)

        return hook

    handles = []
    for module in adapter.denoisers().values():
        mods = dict(module.named_modules())
        handles += [
            mods[name].register_forward_pre_hook(record(name), with_kwargs=True) for name in roles
        ]
    try:
        adapter.capture(PROMPTS[:1], [0], spec, every_k_steps=1)
    finally:
        for h in handles:
            h.remove()
    assert set(seen) == set(roles)
    framed = 0
    for name, layout in layouts.items():
        if layout.kind == "none":
            video_role = roles[name] in ("spatial_attn", "temporal_attn", "mlp")
            assert not video_role or match_any(name, list(adapter.tiny.frameless)), name
            continue
        framed += 1
        # S at the finest level; UNet levels halve each side
        assert layout.frames == f and s % layout.tokens_per_frame == 0, name
        if name != "proj_out":
            assert layout.prefix == prefix, name
        x = torch.randn(seen[name])
        frames = layout.to_frames(x)
        assert frames.shape[1:] == (f, layout.tokens_per_frame, x.shape[-1]), name
        ids = layout.frame_index(x)
        assert ids.shape == x.shape[:2]
        assert sorted(ids[ids >= 0].unique().tolist()) == list(range(f)), name
    video = [n for n, r in roles.items() if r in ("spatial_attn", "mlp")]
    assert framed >= len([n for n in video if not match_any(n, list(adapter.tiny.frameless))])
    target = adapter.quant_target(spec)
    assert target.layouts == layouts and target.forward == adapter.calib_forward


def test_layouts_locate_true_frames(adapter, calib):
    """Perturbing latent frame k changes exactly the tokens that the layout assigns to frame k.

    Checked at the adapter's probe linears (first linear of the first block of each kind),
    where no attention has yet mixed frames: this pins down the frame order.
    """
    f, _, _ = adapter.tiny.geometry
    k = f - 1
    names = list(adapter.tiny.probes)
    if not names:
        pytest.skip(f"{adapter.name}: no framed linear sees unmixed frames")
    layouts = adapter.token_layouts(GenerationSpec())
    mods = dict(adapter.denoiser().named_modules())
    batch = next(adapter.calibration_for(next(iter(adapter.denoisers())), calib).batches(2))
    moved = dict(batch, latents=batch["latents"].clone())
    adapter.frame_slice(moved["latents"], k).add_(1.0)
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def keep(n: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs[n].append((args[0] if args else next(iter(kwargs.values()))).clone())

        return hook

    handles = [mods[n].register_forward_pre_hook(keep(n), with_kwargs=True) for n in names]
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
    f, _, _ = adapter.tiny.geometry
    out = calib.outputs[:2]
    frames = adapter.output_to_frames(out)
    assert frames.shape[:2] == (2, f)
    # frame 0 of the output holds the values of frame 0 of the raw tensor (frame axis found)
    raw0 = adapter.frame_slice(out, 0)[0]
    assert frames[0, 0].numel() == raw0.numel() == frames.shape[2] * frames.shape[3]
    torch.testing.assert_close(frames[0, 0].flatten().sort()[0], raw0.flatten().sort()[0])


def test_model_info_of_the_random_model(adapter):
    info = adapter.model_info()
    assert info["name"] == adapter.name and info["dtype"] == "float32"
    assert info["class_name"] == adapter.pipeline_cls and info["random"] is True
    assert info["id"].startswith(adapter.pipeline_cls) and len(info["revision"]) == 64
    again = type(adapter)()
    again.load("cpu", "float32")
    assert again.model_info()["revision"] == info["revision"]


def test_real_adapter_loads_a_saved_pipeline(adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "cache"))
    adapter.pipe.save_pretrained(tmp_path / "pipe")
    real = adapter_class(adapter.tiny.real)(path=str(tmp_path / "pipe"))
    real.load("cpu", "float32")
    assert list(real.denoisers()) == list(adapter.denoisers())
    assert type(real.denoiser()) is type(adapter.denoiser())
    assert real.layer_roles() == adapter.layer_roles()
    spec = GenerationSpec(steps=2, frames=adapter.defaults["frames"], height=32, width=32)
    want = adapter.generate(PROMPTS[:1], [7], spec)[0]
    images = [adapter.test_image] if real.needs_image else None
    got = real.generate(PROMPTS[:1], [7], spec, images=images)[0]
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1
    info = real.model_info()
    assert info["path"] == str(tmp_path / "pipe") and len(info["revision"]) == 64
    assert info["id"].startswith(adapter.pipeline_cls) and info["id"] != adapter.model_info()["id"]
    # the tiny adapter accepts the saved folder of its own class too (and no other)
    tiny = type(adapter)(path=str(tmp_path / "pipe"))
    tiny.load("cpu", "float32")
    assert tiny.model_info()["revision"] == info["revision"]


def test_image_to_video_takes_the_prompt_suite_image(tmp_path):
    """The ``image`` field of a prompt suite reaches the I2V pipeline; it is required there."""
    from vqbench.prompts import load_prompts, prompts_hash

    a = adapter_class("tiny-cogvideox-i2v")()
    a.load()
    suite = tmp_path / "i2v.jsonl"
    lines = [
        {"id": "a", "text": PROMPTS[0], "image": write_image(tmp_path / "a.png", 0)},
        {"id": "b", "text": PROMPTS[0], "image": "b.png"},  # relative to the suite file
    ]
    write_image(tmp_path / "b.png", 1)
    suite.write_text("".join(json.dumps(x) + "\n" for x in lines))
    prompts = load_prompts(str(suite))
    assert prompts[1].image == str((tmp_path / "b.png").resolve())
    spec = GenerationSpec(steps=2)
    videos = a.generate([p.text for p in prompts], [0, 0], spec, images=[p.image for p in prompts])
    assert np.abs(videos[0].frames.astype(int) - videos[1].frames.astype(int)).mean() > 1.0
    with pytest.raises(ValueError, match="generation.prompts: .*image"):
        a.generate(PROMPTS[:1], [0], spec)
    before = prompts_hash(prompts)
    write_image(tmp_path / "b.png", 2)  # the hash follows the image's content
    assert prompts_hash(load_prompts(str(suite))) != before
    (tmp_path / "b.png").unlink()
    with pytest.raises(ValueError, match="image not found"):
        load_prompts(str(suite))


def test_calibration_survives_the_cache_round_trip(adapter, calib, tmp_path):
    """Tensors through safetensors and meta through JSON (as the cache stores them) replay."""
    from safetensors.torch import load_file, save_file

    from vqbench.types import CalibrationSet

    save_file(calib.tensors(), str(tmp_path / "calib.safetensors"))
    meta = json.loads(json.dumps(calib.meta))
    back = CalibrationSet.from_tensors(load_file(str(tmp_path / "calib.safetensors")), meta)
    fresh = type(adapter)()  # nothing bound from a capture
    fresh.load()
    for name in fresh.denoisers():
        rows = fresh.calibration_for(name, back)
        with torch.no_grad():
            batch = next(rows.batches(2))
            out = fresh.forward_for(name)(batch)
        torch.testing.assert_close(out, batch["outputs"], atol=1e-5, rtol=1e-5)
