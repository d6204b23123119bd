"""Scene consistency by VBench's ``scene`` rule (metrics.md §3.3), x100 as the papers print.

Per video, ``frames`` frames (VBench: 16, "middle" sampling, the last index repeated for
shorter videos) are captioned or tagged; a frame succeeds when every whitespace-separated
word of the prompt's scene tag is a substring of its caption (case-sensitive, as VBench).
The value is the frame-level micro average (successes over all frames of all videos) x100;
``per_sample`` holds each video's success rate x100.

The tagger is pluggable: any object with ``tag(frames: np.ndarray [T, H, W, 3] uint8) ->
list[str]`` (one caption per frame); ``"tag2text"`` (the default, VBench's rule): VBench's
own Tag2Text captioner run through vbench's code (the ``vbench`` extra, see
:mod:`metrics.vbench_compat`), with ``tag2text_swin_14m.pth`` and bert-base-uncased's
``vocab.txt`` from the backbone manifest; when they are missing it refuses, naming the file
and where to get it; or ``"mini"``: ``vqbench.mini.assets.load_tagger()``, only for the mini
world (its adapter asks for it), whose word lists per frame (scene, colours, shapes) are
joined into one caption. The record's params name the tagger that ran.

Version 2: the default tagger is Tag2Text (was the mini tagger, which scored real models'
videos 0).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from metrics.backbones.manifest import missing_message
from metrics.backbones.mini import load_mini, mini_asset_problem, mini_asset_sha256
from metrics.base import MetricBase, check_batch, result_from_samples, sample_key
from vqbench.types import MetricResult, SampleContext, Video


@runtime_checkable
class FrameTagger(Protocol):
    """Captions or tags for each frame."""

    def tag(self, frames: np.ndarray) -> list[str]: ...


def middle_indices(num_frames: int, length: int) -> list[int]:
    """VBench's ``get_frame_indices(sample="middle")``: middle of equal segments, padded."""
    n = min(num_frames, length)
    edges = np.linspace(0, length, n + 1).astype(int)
    idx = [int((a + b - 1) // 2) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return idx + [idx[-1]] * (num_frames - len(idx))


def frame_matches(caption: str, scene: str, case_sensitive: bool = True) -> bool:
    """VBench's ``check_generate``: every word of ``scene`` occurs in ``caption``."""
    if not case_sensitive:
        caption, scene = caption.lower(), scene.lower()
    return all(word in caption for word in scene.split(" "))


class _MiniTagger:
    """Adapts the mini world's ``FrameTagger.tags`` (word lists) to one caption per frame."""

    name = "mini"

    def __init__(self, net: Any, sha256: str | None) -> None:
        self.net, self.sha256 = net, sha256

    def tag(self, frames: np.ndarray) -> list[str]:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        return [" ".join(words) for words in self.net.tags(x)]


def _load_mini() -> FrameTagger:
    net = load_mini("load_tagger", "the mini world's per-frame tagger")
    return _MiniTagger(net, mini_asset_sha256("tagger.safetensors"))


TAGGERS = ("tag2text", "mini")
TAG2TEXT_FILES = ("tag2text_swin_14m", "bert_base_uncased_vocab")


class SceneConsistency(MetricBase):
    """VBench ``scene`` score x100 with a pluggable per-frame tagger (Tag2Text by default)."""

    name = "scene_consistency"
    version = "2"
    higher_is_better = True
    requires = frozenset({"scene"})

    def __init__(
        self,
        tagger: str | FrameTagger = "tag2text",
        frames: int | None = 16,
        case_sensitive: bool = True,
        device: str = "cpu",
    ) -> None:
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be positive or None (all frames), got {frames}")
        if isinstance(tagger, str) and tagger not in TAGGERS:
            raise ValueError(
                f"tagger must be one of {TAGGERS} or an object with tag(), got {tagger!r}"
            )
        self._tagger_spec = tagger
        self._tagger: FrameTagger | None = None
        self.frames, self.case_sensitive, self.device = frames, case_sensitive, device
        self.hits: list[int] = []
        self.counts: list[int] = []
        self.keys: list[str] = []

    @property
    def tagger(self) -> FrameTagger:
        """The tagger, resolved on first use."""
        if self._tagger is None:
            spec = self._tagger_spec
            if spec == "mini":
                self._tagger = _load_mini()
            elif spec == "tag2text":
                missing = [m for m in map(missing_message, TAG2TEXT_FILES) if m]
                if missing:
                    raise FileNotFoundError(f"{self.name} (tagger 'tag2text'): {missing[0]}")
                from metrics.vbench_compat import Tag2TextTagger

                self._tagger = Tag2TextTagger.from_cache(self.device)
            else:
                self._tagger = spec
        return self._tagger

    def _preflight(self, *, frames: int, height: int, width: int, device: str) -> list[str]:
        import importlib.util

        spec = self._tagger_spec
        if spec == "mini":
            problem = mini_asset_problem("tagger.safetensors", "the mini world's tagger")
            return [f"{self.name}: {problem}"] if problem else []
        if spec != "tag2text":
            return []
        out = [
            f"{self.name} (tagger 'tag2text'): {m}"
            for m in map(missing_message, TAG2TEXT_FILES)
            if m
        ]
        if importlib.util.find_spec("vbench") is None:
            from metrics.vbench_compat import INSTALL_HINT

            out.append(f"{self.name} (tagger 'tag2text'): vbench is not installed; {INSTALL_HINT}")
        return out

    def update(self, videos: list[Video], ctx: list[SampleContext]) -> None:
        check_batch(self.name, videos, ctx)
        for v, c in zip(videos, ctx, strict=True):
            if not c.scene:
                raise ValueError(f"{self.name}: sample {c.prompt_id} has no scene tag")
            n = v.num_frames if self.frames is None else self.frames
            frames = v.frames[middle_indices(n, v.num_frames)]
            captions = self.tagger.tag(frames)
            if len(captions) != len(frames):
                raise ValueError(
                    f"tagger returned {len(captions)} captions for {len(frames)} frames"
                )
            self.hits.append(sum(frame_matches(t, c.scene, self.case_sensitive) for t in captions))
            self.counts.append(len(frames))
            self.keys.append(sample_key(c.prompt_id, c.seed))

    def compute(self) -> MetricResult:
        per_video = [h / n for h, n in zip(self.hits, self.counts, strict=True)]
        micro = sum(self.hits) / sum(self.counts) if self.counts else 0.0
        return result_from_samples(
            self.name,
            per_video,
            version=self.version,
            higher_is_better=True,
            params=self.params(),
            value=micro,
            scale=100.0,
        )

    def params(self) -> dict[str, Any]:
        spec = self._tagger_spec
        return {
            "tagger": spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__),
            "tagger_sha256": getattr(self._tagger, "sha256", None),
            "frames": self.frames if self.frames is not None else "all",
            "frame_sampling": "middle",
            "rule": "vbench_scene_all_words_substring",
            "case_sensitive": self.case_sensitive,
            "aggregate": "frame_micro_average_x100",
        }

    def reset(self) -> None:
        self.hits.clear()
        self.counts.clear()
        self.keys.clear()
