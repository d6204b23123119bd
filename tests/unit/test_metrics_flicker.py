"""Native ``temporal_flickering``: VBench's rule on hand-sized videos."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.flicker import flicker_score
from vqbench.registry import METRICS
from vqbench.types import SampleContext, Video


def _video() -> Video:
    f = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    f[1] = 10
    f[2] = 10
    f[2, :, 1] = 40  # half the pixels jump by 30
    return Video(f, fps=8.0)


def test_hand_computed_score():
    # consecutive MAEs: 10 and (0 + 30) / 2 = 15, mean 12.5 -> (255 - 12.5) / 255
    assert flicker_score(_video().frames) == pytest.approx((255 - 12.5) / 255)


def test_registered_metric_reports_x100_with_ci():
    m = METRICS.get("temporal_flickering")()
    static = Video(np.full((4, 2, 2, 3), 7, dtype=np.uint8), fps=8.0)
    ctx = [SampleContext(prompt="p", prompt_id=f"id{i}", seed=0) for i in range(2)]
    m.update([_video(), static], ctx)
    r = m.compute()
    assert r.per_sample == pytest.approx([100 * (255 - 12.5) / 255, 100.0])
    assert r.value == pytest.approx(np.mean(r.per_sample)) and r.higher_is_better
    assert r.name == "temporal_flickering" and r.version == "1"
    assert m.preflight({}, frames=8, height=32, width=32, device="cpu") == []
    assert "frames" in m.preflight({}, frames=1, height=32, width=32, device="cpu")[0]


def test_one_frame_is_refused():
    with pytest.raises(ValueError, match="2 frames"):
        flicker_score(np.zeros((1, 2, 2, 3), dtype=np.uint8))
