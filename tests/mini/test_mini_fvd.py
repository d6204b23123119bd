"""FVD on the mini world through the harness path: the adapter's real reference videos and its
own detector. Generated FP videos must be far closer to real videos than noise videos are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqbench.config import GenerationSpec
from vqbench.mini import assets
from vqbench.mini.dataset import PROMPTS_DIR
from vqbench.registry import METRICS
from vqbench.types import SampleContext, Video

pytestmark = pytest.mark.skipif(not assets.available(), reason="mini assets not present")


def test_fvd_of_fp_samples_beats_noise_videos() -> None:
    adapter = assets.load_generator()
    records = [json.loads(x) for x in (PROMPTS_DIR / "mini_eval.jsonl").read_text().splitlines()]
    records = records[:8]
    ctx = [SampleContext(r["text"], r["id"], 0, attributes=r["attributes"]) for r in records]
    spec = GenerationSpec(steps=10, batch_size=8)
    videos = adapter.generate([c.prompt for c in ctx], [0] * len(ctx), spec)
    rng = np.random.default_rng(0)
    noise = [Video(rng.integers(0, 256, v.frames.shape, dtype=np.uint8)) for v in videos]

    def fvd(vids: list[Video]) -> float:
        params = adapter.metric_defaults()["fvd"]
        metric = METRICS.get("fvd")(**params)
        metric.set_reference(adapter.reference_videos(ctx))
        metric.update(vids, ctx)
        result = metric.compute()
        assert result.params["detector"] == "mini-i3d" and result.params["detector_sha256"]
        return result.value

    fp, rand = fvd(videos), fvd(noise)
    assert np.isfinite(fp) and fp < 0.5 * rand
