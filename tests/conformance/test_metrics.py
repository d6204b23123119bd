"""Every registered metric, the same way: the contract's attributes, ``preflight`` (no
weights loaded, one-line problems) and ``set_reference`` where the metric requires a
reference set."""

from __future__ import annotations

import pytest

from metrics.base import MetricBase, constructor_params
from vqbench.registry import METRICS
from vqbench.types import METRIC_REQUIREMENTS

NAMES = METRICS.names()
GEOMETRY = {"frames": 16, "height": 64, "width": 64, "device": "cpu"}
MINI = {"detector": "mini", "frames": 8, "resolution": 32}
#: params under which a metric's backbones are the shipped mini-world ones
MINI_PARAMS = {
    "fvd": MINI,
    "fvd_fp": MINI,
    "clipsim": {"backbone": "mini"},
    "clipsim_evalcrafter": {"backbone": "mini"},
    "clip_temp": {"backbone": "mini"},
    "scene_consistency": {"tagger": "mini"},
}


@pytest.fixture(autouse=True)
def _empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "vq"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))


@pytest.mark.parametrize("name", NAMES)
def test_contract_and_preflight_shape(name):
    cls = METRICS.get(name)
    assert issubclass(cls, MetricBase) and cls.name == name
    assert isinstance(cls.version, str) and isinstance(cls.higher_is_better, bool)
    assert cls.requires <= METRIC_REQUIREMENTS
    problems = cls.preflight(MINI_PARAMS.get(name, {}), **GEOMETRY)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    assert all("\n" not in p for p in problems)
    if name in MINI_PARAMS or name.startswith(("psnr", "ssim")):
        assert problems == [], problems


@pytest.mark.parametrize("name", NAMES)
def test_preflight_names_unknown_params(name):
    cls = METRICS.get(name)
    known = next(iter(constructor_params(cls)), None)
    problems = cls.preflight({"bogus_knob": 1}, **GEOMETRY)
    assert (
        len(problems) == 1 and f"metric_params.{name}.bogus_knob: unknown parameter" in problems[0]
    )
    if known:  # a near miss gets a suggestion
        assert "did you mean" in cls.preflight({known + "x": 1}, **GEOMETRY)[0]


@pytest.mark.parametrize("name", NAMES)
def test_preflight_refuses_too_few_frames(name):
    cls = METRICS.get(name)
    params = MINI_PARAMS.get(name, {})
    need = cls(**params).frames_needed()
    too_few = [p for p in cls.preflight(params, **{**GEOMETRY, "frames": 1}) if "frames" in p]
    assert bool(too_few) == (need > 1), (need, too_few)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("vbench_")])
def test_vbench_preflight_names_missing_weights_or_extra(name):
    import importlib.util

    from metrics.vbench_dims import REQUIRED

    cls = METRICS.get(name)
    problems = " ".join(cls.preflight({}, **GEOMETRY))
    if importlib.util.find_spec("vbench") is None:
        assert "vbench extra is not installed" in problems
    for entry in REQUIRED[cls.dimension]:
        from metrics.backbones.manifest import MANIFEST

        assert MANIFEST[entry].filename in problems and MANIFEST[entry].url in problems


def test_real_backbones_missing_are_named_with_their_source():
    fvd = " ".join(METRICS.get("fvd").preflight({}, **GEOMETRY))
    assert "i3d_torchscript.pt not found" in fvd and "dropbox" in fvd
    clip = " ".join(METRICS.get("clipsim").preflight({}, **GEOMETRY))
    assert "ViT-B-32.pt not found" in clip and "openaipublic" in clip
    bad = METRICS.get("fvd").preflight({"clip_sampling": "middle"}, **GEOMETRY)
    assert bad == [
        "metric_params.fvd: clip_sampling must be one of ('first', 'center', 'uniform'), "
        "got 'middle'"
    ]
    assert "resolution 224" in " ".join(
        METRICS.get("fvd").preflight({"resolution": 112}, **GEOMETRY)
    )


@pytest.mark.parametrize("name", NAMES)
def test_reference_metrics_implement_set_reference(name):
    cls = METRICS.get(name)
    if "reference" in cls.requires:
        assert callable(getattr(cls, "set_reference", None))
