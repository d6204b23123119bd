"""Protocol variants (issue #20), each against a hand-computed value and recorded in params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metrics.backbones.video_features import (
    I3DFeatureExtractor,
    preprocess_i3d,
    random_offsets,
    short_side_size,
)
from metrics.clip_score import CLIPSim, CLIPSimEvalCrafter, CLIPTemp
from metrics.fidelity import PSNRvsFP, frame_mean_psnr, psnr
from metrics.fvd import FVDvsFP, FVDvsReference
from vqbench.types import SampleContext, Video


def test_short_side_crop_rounds_the_long_side_up_by_default():
    # 640 * 224 / 360 = 398.22: JunyaoHu / VideoGPT take 399, nearest rounding 398
    assert short_side_size(360, 640, 224) == (224, 399)
    assert short_side_size(360, 640, 224, "nearest") == (224, 398)
    assert short_side_size(640, 360, 224, "ceil") == (399, 224)
    with pytest.raises(ValueError, match="resize_rounding"):
        short_side_size(360, 640, 224, "floor")
    v = Video(np.zeros((16, 36, 64, 3), np.uint8))
    assert preprocess_i3d(v, 16, 22, resize="short_side_crop").shape == (3, 16, 22, 22)


class _FirstFrameMean:
    """Toy detector: mean of the first frame (1-d), so the clip offset shows in the value."""

    name, sha256 = "toy", None

    def features(self, videos: list[Video]) -> np.ndarray:
        return np.stack([[v.frames[0].mean()] for v in videos]).astype(np.float64)


def _ramp(t: int) -> Video:
    """Frame i is constant i (so a clip's first frame tells its offset)."""
    return Video(np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, 2, 2, 3)))


def test_random_reference_clips_are_seeded_stylegan_v_offsets():
    # numpy.random.default_rng(0).integers(0, T - 16 + 1) for T = 20, 16, 30 in order: 4, 0, 9
    assert random_offsets([20, 16, 30], 16, seed=0) == [4, 0, 9]
    with pytest.raises(ValueError, match="needs 16"):
        random_offsets([15], 16, seed=0)
    m = FVDvsReference(
        detector=_FirstFrameMean(),
        frames=16,
        reference_clip_sampling="random",
        clip_seed=0,
        ci_resamples=0,
        cov_ddof=0,
    )
    m.set_reference([_ramp(20), _ramp(16), _ramp(30)])  # first frames 4, 0, 9
    gen = [_ramp(16)] * 2 + [Video(np.full((16, 2, 2, 3), 6, np.uint8))]  # 0, 0, 6
    m.update(gen, [SampleContext("p", f"i{i}", 0) for i in range(3)])
    r = m.compute()
    # ref mean 13/3, var (N) 122/9; gen mean 2, var 8; FD = (7/3)^2 + 122/9 + 8 - 2 sqrt(122/9 * 8)
    expected = (7 / 3) ** 2 + 122 / 9 + 8 - 2 * math.sqrt(122 / 9 * 8)
    assert r.value == pytest.approx(expected)
    assert r.params["reference_clip_sampling"] == "random" and r.params["clip_seed"] == 0
    assert r.params["ci_covers"].startswith("FVD at N = 3 generated vs 3 reference videos")


def test_cov_ddof_follows_the_detector_protocol():
    assert FVDvsFP(detector="i3d_torchscript").cov_ddof == 0  # StyleGAN-V, cd-fvd: N
    assert FVDvsFP(detector="i3d").cov_ddof == 1  # TF-GAN: N - 1
    assert FVDvsFP(detector="mini").cov_ddof == 1
    assert FVDvsFP(detector="i3d_torchscript", cov_ddof=1).cov_ddof == 1
    fp = [Video(np.full((4, 2, 2, 3), c, np.uint8)) for c in (0, 2)]  # features 0, 2
    q = [Video(np.full((4, 2, 2, 3), 1, np.uint8))] * 2  # features 1, 1
    ctx = [SampleContext("p", f"i{i}", 0, fp_video=fp[i]) for i in range(2)]
    for ddof, expected in ((1, 2.0), (0, 1.0)):  # var of {0, 2}: 2 (N - 1) or 1 (N)
        m = FVDvsFP(detector=_FirstFrameMean(), cov_ddof=ddof, frames=4, ci_resamples=0)
        m.update(q, ctx)
        r = m.compute()
        assert r.value == pytest.approx(expected)
        assert r.params["cov_ddof"] == ddof and r.params["cov_convention"] == ("N-1", "N")[1 - ddof]
        assert r.params["n"] == 2 and r.params["feature_dim"] == 1


class _SpatialMap(torch.nn.Module):
    def forward(self, x, rescale=False, resize=False, return_features=False):  # noqa: ANN001
        return torch.zeros(x.shape[0], 400, 1, 2, 2)  # what the TorchScript I3D gives off 224


def test_torchscript_spatial_map_is_refused_not_flattened():
    ex = I3DFeatureExtractor(_SpatialMap(), "i3d_torchscript", None, frames=16, resolution=256)
    with pytest.raises(ValueError, match=r"\(2, 400, 1, 2, 2\), a spatial map.*resolution=224"):
        ex.features([Video(np.zeros((16, 8, 8, 3), np.uint8))] * 2)


def test_psnr_per_frame_mean_variant():
    fp = np.zeros((2, 4, 4, 3), np.uint8)
    q = fp.copy()
    q[0] += 1  # frame MSE 1 -> 48.1308 dB
    q[1] += 2  # frame MSE 4 -> 42.1102 dB; pooled MSE 2.5 -> 44.1514 dB
    assert psnr(q, fp) == pytest.approx(10 * math.log10(255**2 / 2.5))
    assert psnr(q, fp) == pytest.approx(44.1514, abs=1e-4)
    assert frame_mean_psnr(q, fp) == pytest.approx((48.1308 + 42.1102) / 2, abs=1e-4)
    ctx = [SampleContext("p", "a", 0, fp_video=Video(fp))]
    for reduction, expected in (("mse_over_video", 44.1514), ("mean_of_frame_psnr", 45.1205)):
        m = PSNRvsFP(reduction=reduction)
        m.update([Video(q)], ctx)
        r = m.compute()
        assert r.value == pytest.approx(expected, abs=1e-4) and r.params["reduction"] == reduction
    with pytest.raises(ValueError, match="reduction"):
        PSNRvsFP(reduction="mean")


def test_clip_precision_defaults_and_fp32_cast(tmp_path, monkeypatch):
    assert CLIPSimEvalCrafter().precision == "fp32" and CLIPSimEvalCrafter.version == "2"
    assert CLIPSim().precision == "clip_load" and CLIPTemp().precision == "clip_load"
    assert CLIPTemp(precision="fp32").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        CLIPSim(precision="fp16")
    import clip

    from metrics import clip_score

    class _Half(torch.nn.Module):  # what clip.load gives on CUDA: fp16 weights
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float16))

    monkeypatch.setattr(clip, "load", lambda *a, **k: (_Half(), None))
    clip_score._clip_load.cache_clear()
    assert clip_score._clip_load("x.pt", "cpu", True).w.dtype == torch.float32
    assert clip_score._clip_load("x.pt", "cpu", False).w.dtype == torch.float16
    clip_score._clip_load.cache_clear()
