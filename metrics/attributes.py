"""``attribute_accuracy``: a mini VBench of object, colour, motion and scene.

The mini world's held-out attribute classifier (``vqbench.mini.assets.load_attribute_classifier()``,
a :class:`~vqbench.mini.evaluators.VideoNet` trained on another seed and data stream than
the FVD detector; neither trains the generator) reads each generated video and predicts its
shape, colour, motion and scene. A video scores the share of the four it gets right, x100,
against the attributes of its prompt (the mini suites carry them); the metric is the mean
over videos, and ``params.per_attribute`` gives each attribute's accuracy, x100, like
VBench's object-class, colour, motion and scene dimensions.

It exists only for the mini world: other models' prompts carry no attributes, and validate
refuses it for them before any work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics.backbones.mini import load_mini, mini_asset_problem, mini_asset_sha256
from metrics.base import PerVideoMetric, check_batch, sample_key
from vqbench.types import SampleContext, Video

ATTRIBUTE_KEYS = ("shape", "colour", "motion", "scene")


class AttributeAccuracy(PerVideoMetric):
    """Share of the prompt's attributes the held-out classifier recognises, x100."""

    name = "attribute_accuracy"
    version = "1"
    higher_is_better = True
    requires = frozenset({"attributes"})
    attribute_keys = ATTRIBUTE_KEYS
    min_frames = 1
    scale = 100.0

    def __init__(self, classifier: str = "mini") -> None:
        super().__init__()
        if classifier != "mini":
            raise ValueError(
                f"attribute_accuracy: classifier must be 'mini' (the mini world's held-out "
                f"classifier, the only one there is), got {classifier!r}"
            )
        self._net: Any = None
        self.hits: dict[str, list[bool]] = {k: [] for k in ATTRIBUTE_KEYS}

    @staticmethod
    def missing_attributes(attributes: dict[str, Any]) -> list[str]:
        """The attributes a prompt lacks for this metric (each must be one name); the one
        rule that validate and :meth:`update` apply."""
        return [k for k in ATTRIBUTE_KEYS if not isinstance(attributes.get(k), str)]

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        problem = mini_asset_problem("classifier.safetensors", "the held-out classifier")
        return [f"{self.name}: {problem}"] if problem else []

    @property
    def net(self) -> Any:
        """The classifier, loaded on first use."""
        if self._net is None:
            self._net = load_mini("load_attribute_classifier", "the held-out classifier")
        return self._net

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        want = [_attributes(c) for c in ctx]
        pred = self.net.predict(videos)
        for i, (c, attrs) in enumerate(zip(ctx, want, strict=True)):
            right = [pred[k][i] == attrs[k] for k in ATTRIBUTE_KEYS]
            for k, ok in zip(ATTRIBUTE_KEYS, right, strict=True):
                self.hits[k].append(bool(ok))
            self.values.append(float(np.mean(right)))
            self.keys.append(sample_key(c.prompt_id, c.seed))

    def params(self) -> dict[str, Any]:
        """The classifier and each attribute's accuracy (x100)."""
        return {
            "classifier": "mini",
            "classifier_sha256": mini_asset_sha256("classifier.safetensors"),
            "per_attribute": {
                k: 100.0 * float(np.mean(v)) if v else None for k, v in self.hits.items()
            },
        }

    def reset(self) -> None:
        super().reset()
        for v in self.hits.values():
            v.clear()


def _attributes(c: SampleContext) -> dict[str, str]:
    """The prompt's single-object attributes; ``ValueError`` naming it if it has none."""
    if missing := AttributeAccuracy.missing_attributes(c.attributes):
        raise ValueError(
            f"attribute_accuracy: prompt {c.prompt_id} carries no {'/'.join(missing)} "
            "attribute; the metric needs the mini world's single-object prompt suites"
        )
    return {k: c.attributes[k] for k in ATTRIBUTE_KEYS}
