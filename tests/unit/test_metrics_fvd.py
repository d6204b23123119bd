"""Fréchet distance numerics, the I3D re-implementation, detectors and the FVD metrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from metrics.backbones.i3d import InceptionI3d, load_i3d
from metrics.backbones.video_features import (
    preprocess_i3d,
    resolve_detector,
    sample_clip,
)
from metrics.frechet import feature_stats, frechet_distance, trace_sqrt_product
from metrics.fvd import FVDvsFP, FVDvsReference
from vqbench.types import SampleContext, Video


def _reference_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Independent float64 computation (np.cov + scipy sqrtm of the product)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def test_frechet_matches_independent_float64():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(0.3, 1.5, size=(150, 16)) @ rng.normal(size=(16, 16)) * 0.5
    assert frechet_distance(a, b) == pytest.approx(_reference_fd(a, b), rel=1e-8)


def test_frechet_identical_and_shifted():
    x = np.random.default_rng(1).normal(size=(100, 12))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    delta = np.linspace(-1.0, 2.0, 12)
    assert frechet_distance(x, x + delta) == pytest.approx(float(delta @ delta), rel=1e-10)


def test_frechet_rank_deficient_is_finite_and_agrees():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 40)), rng.normal(size=(9, 40)) + 0.1
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(_reference_fd(a, b), rel=1e-6)
    _, s1 = feature_stats(a)
    _, s2 = feature_stats(b)
    eig = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(eig, rel=1e-6)


def test_frechet_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_i3d_keys_load_strict_and_16x224_features(tmp_path):
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    state = model.state_dict()
    for key in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Mixed_3b.b0.conv3d.weight",
        "Mixed_4f.b1b.conv3d.weight",
        "Mixed_5c.b3b.bn.bias",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ):
        assert key in state
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    # a PyTorch 0.3-era checkpoint (as rgb_imagenet.pt): no num_batches_tracked buffers
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "rgb_imagenet.pt")
    loaded = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert torch.equal(loaded.Mixed_4f.b1b.conv3d.weight, model.Mixed_4f.b1b.conv3d.weight)
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    logits = loaded(x)
    assert logits.shape == (1, 400, 1, 1, 1)
    assert torch.allclose(loaded.features(x), logits.flatten(1))
    torch.save({"junk.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError):
        load_i3d(tmp_path / "bad.pt")


def test_preprocess_and_clip_sampling():
    frames = np.arange(20)[:, None, None, None] * np.ones((1, 8, 12, 3))
    v = Video(frames.astype(np.uint8))
    assert sample_clip(v.frames, 4, "first")[:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert sample_clip(v.frames, 4, "center")[:, 0, 0, 0].tolist() == [8, 9, 10, 11]
    assert sample_clip(v.frames, 3, "uniform")[:, 0, 0, 0].tolist() == [0, 10, 19]
    with pytest.raises(ValueError, match="frames"):
        sample_clip(v.frames, 21)
    x = preprocess_i3d(v, frames=16, resolution=32)
    assert x.shape == (3, 16, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert x[0, 0, 0, 0].item() == pytest.approx(-1.0)
    assert preprocess_i3d(v, 16, 32, resize="short_side_crop").shape == (3, 16, 32, 32)


class _TorchscriptLike(nn.Module):
    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        assert not rescale and not resize and return_features
        return x.mean(dim=(2, 3, 4)).repeat(1, 2)


def test_torchscript_detector_and_missing_weights(tmp_path, monkeypatch):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_TorchscriptLike()).save(str(path))
    det = resolve_detector("i3d_torchscript", detector_path=str(path), resolution=32)
    v = Video(np.full((16, 8, 8, 3), 255, np.uint8))
    assert det.features([v, v]).shape == (2, 6) and len(det.sha256) == 64
    with pytest.raises(ValueError, match="sha256"):
        resolve_detector("i3d_torchscript", detector_path=str(path), detector_sha256="0" * 64)
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="rgb_imagenet.pt.*github.com/piergiaj"):
        resolve_detector("i3d")
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", None)
    with pytest.raises(RuntimeError, match="load_i3d"):
        resolve_detector("mini")


class _ColourStats:
    """A toy detector: per-frame channel means of the first 4 frames (12-d)."""

    name = "toy"
    sha256 = None

    def __init__(self) -> None:
        self.calls = 0

    def features(self, videos: list[Video]) -> np.ndarray:
        self.calls += len(videos)
        return np.stack([v.frames[:4].mean(axis=(1, 2)).ravel() for v in videos])


def _videos(seed: int, n: int, offset: int = 0) -> list[Video]:
    rng = np.random.default_rng(seed)
    return [
        Video(np.clip(rng.normal(128 + offset, 30, size=(4, 8, 8, 3)), 0, 255).astype(np.uint8))
        for _ in range(n)
    ]


def _ctx(n: int, fps: list[Video] | None = None) -> list[SampleContext]:
    return [
        SampleContext(f"p{i}", f"id{i}", 0, fp_video=None if fps is None else fps[i])
        for i in range(n)
    ]


def test_fvd_fp_metric_and_disk_cache(tmp_path):
    det = _ColourStats()
    fp, q = _videos(0, 20), _videos(1, 20, offset=40)
    m = FVDvsFP(detector=det, cache_dir=str(tmp_path), ci_resamples=50)
    m.update(fp, _ctx(20, fp))
    same = m.compute()
    assert same.value == pytest.approx(0.0, abs=1e-9) and same.n == 20
    assert det.calls == 20  # FP videos hashed once: the second lookup hits the cache
    m.reset()
    m.update(q[:10], _ctx(10, fp))
    m.update(q[10:], _ctx(10, fp[10:]))
    r = m.compute()
    assert r.value > 40**2 * 12 * 0.5 and r.ci[0] < r.value < r.ci[1] * 1.5
    assert r.params["detector"] == "toy" and r.params["n"] == 20 and r.params["cov_ddof"] == 1
    assert r.higher_is_better is False and det.calls == 40
    assert len(list((tmp_path / "features").glob("*.npy"))) == 40


def test_fvd_reference_set_and_dir(tmp_path):
    from vqbench.video import write_video

    det = _ColourStats()
    real = _videos(2, 12)
    m = FVDvsReference(detector=det, ci_resamples=0)
    m.update(_videos(3, 4), _ctx(4))
    with pytest.raises(ValueError, match="reference"):
        m.compute()
    m.set_reference(real)
    near = m.compute().value
    m.reset()
    m.update(_videos(4, 8, offset=60), _ctx(8))
    far = m.compute()
    assert far.value > near and far.ci is None and far.params["n_reference"] == 12
    for i, v in enumerate(real[:6]):
        write_video(v, tmp_path / f"{i:02d}.mp4", lossless=True)
    d = FVDvsReference(reference_dir=str(tmp_path), n_reference=5, detector=det, ci_resamples=0)
    d.update(_videos(4, 8, offset=60), _ctx(8))
    r = d.compute()
    assert r.params["n_reference"] == 5 and r.params["reference"] == str(tmp_path)
    assert r.value > near


def test_mini_detector_via_assets_load_i3d(monkeypatch):
    import types

    fake = types.ModuleType("vqbench.mini.assets")
    fake.load_i3d = _ColourStats
    monkeypatch.setitem(sys.modules, "vqbench.mini.assets", fake)
    m = FVDvsFP(detector="mini", ci_resamples=0)
    fp = _videos(5, 6)
    m.update(_videos(6, 6), _ctx(6, fp))
    r = m.compute()
    assert r.params["detector"] == "toy" and r.params["frames"] is None and r.value > 0


def test_fvd_fp_refuses_videos_of_another_length_than_their_fp():
    from metrics.fvd import FVDvsFP

    rng = np.random.default_rng(0)
    v8 = [Video(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    v4 = [Video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    ctx = [SampleContext("p", f"i{i}", 0, fp_video=v4[i]) for i in range(2)]
    with pytest.raises(ValueError, match=r"fvd_fp: i0 .* but its FP video is \(4, 32, 32\)"):
        FVDvsFP(detector="mini", frames=8, resolution=32).update(v8, ctx)
