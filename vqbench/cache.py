"""Content-addressed cache of FP videos and calibration sets, shared by the cells of a sweep.

An entry is a directory ``<root>/<kind>/<key>/`` written under a temporary name and renamed
into place, so a killed process never leaves a half-written entry behind. Keys are
:func:`vqbench.config.config_hash` digests of everything that determines the content.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vqbench.config import config_hash
from vqbench.types import CalibrationSet, Video

FP_VIDEOS = "fp_videos"
CALIBRATION = "calibration"
QUANT_STATE = "quant_state"


def cache_key(kind: str, **parts: Any) -> str:
    """Digest of ``parts`` (JSON-able) for an entry of ``kind``."""
    return config_hash({"kind": kind, **parts}, length=16)


class Cache:
    """A directory of immutable entries keyed by content hash."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        """Directory of an entry (it may not exist)."""
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        """Whether a complete entry exists."""
        return (self.path(kind, key) / "meta.json").is_file()

    def _put(self, kind: str, key: str, meta: dict[str, Any], fill: Callable[[Path], None]) -> Path:
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
        try:
            fill(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
            try:
                os.replace(tmp, final)
            except OSError:  # another process finished the same entry first: keep theirs
                if not self.has(kind, key):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def meta(self, kind: str, key: str) -> dict[str, Any]:
        """The JSON metadata of an entry."""
        return json.loads((self.path(kind, key) / "meta.json").read_text())

    # ---- videos ----------------------------------------------------------------------------
    def put_videos(self, key: str, videos: list[Video], meta: dict[str, Any]) -> Path:
        """Store ``videos`` losslessly (uint8 ``.npy`` frames) with ``meta``."""

        def fill(d: Path) -> None:
            for i, v in enumerate(videos):
                np.save(d / f"{i:05d}.npy", v.frames)
            (d / "fps.json").write_text(json.dumps([v.fps for v in videos]))

        return self._put(FP_VIDEOS, key, {**meta, "count": len(videos)}, fill)

    def get_videos(self, key: str) -> list[Video]:
        """The videos of an entry, in stored order."""
        d = self.path(FP_VIDEOS, key)
        fps = json.loads((d / "fps.json").read_text())
        return [Video(np.load(d / f"{i:05d}.npy"), f) for i, f in enumerate(fps)]

    # ---- calibration sets ------------------------------------------------------------------
    def put_calibration(self, key: str, calib: CalibrationSet, meta: dict[str, Any]) -> Path:
        """Store a calibration set as safetensors (its own ``meta`` under ``calib_meta``)."""
        from safetensors.torch import save_file

        def fill(d: Path) -> None:
            save_file(calib.tensors(), str(d / "calibration.safetensors"))

        return self._put(CALIBRATION, key, {**meta, "calib_meta": calib.meta}, fill)

    def get_calibration(self, key: str) -> CalibrationSet:
        """The calibration set of an entry."""
        from safetensors.torch import load_file

        d = self.path(CALIBRATION, key)
        tensors = load_file(str(d / "calibration.safetensors"))
        return CalibrationSet.from_tensors(tensors, self.meta(CALIBRATION, key)["calib_meta"])

    # ---- calibrated quantizer states -------------------------------------------------------
    def put_state(self, key: str, state: Any, meta: dict[str, Any]) -> Path:
        """Store a quantizer's calibration result (a ``QuantState``)."""
        return self._put(QUANT_STATE, key, meta, state.save)

    def get_state(self, key: str) -> Any:
        """The ``QuantState`` of an entry."""
        from vqbench.types import QuantState

        return QuantState.load(self.path(QUANT_STATE, key))
