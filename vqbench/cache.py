"""Content-addressed cache of FP videos and calibration sets, shared by the cells of a sweep.

An entry is a directory ``<root>/<kind>/<key>/`` written under a temporary name and renamed
into place, so a killed process never leaves a half-written entry behind. Keys are
:func:`vqbench.config.config_hash` digests of everything that determines the content. Its
``meta.json`` lists the sha256 of every file; an entry whose files do not match, or that does
not load, is removed and reported as missing, so it is rebuilt and never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vqbench.config import config_hash
from vqbench.types import CalibrationSet, Video

log = logging.getLogger(__name__)

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
        """Whether a complete entry exists whose files match the digests of its meta."""
        d = self.path(kind, key)
        if not (d / "meta.json").is_file():
            return False
        try:
            files = self.meta(kind, key)["files"]
            intact = all(_sha256(d / name) == digest for name, digest in files.items())
        except (OSError, ValueError, KeyError, TypeError):
            intact = False
        if not intact:
            self.discard(kind, key, "its files do not match their recorded digests")
        return intact

    def discard(self, kind: str, key: str, why: str) -> None:
        """Remove a corrupt entry (it will be rebuilt)."""
        log.warning(
            "cache entry %s/%s is corrupt (%s): removed, it will be rebuilt", kind, key, why
        )
        shutil.rmtree(self.path(kind, key), ignore_errors=True)

    def _load(self, kind: str, key: str, read: Callable[[Path], Any]) -> Any:
        """``read(entry dir)`` of an intact entry; ``None`` when missing, corrupt or unreadable
        (a corrupt entry is removed)."""
        if not self.has(kind, key):
            return None
        try:
            return read(self.path(kind, key))
        except Exception as e:  # any decoding failure means a corrupt entry, never a result
            self.discard(kind, key, f"{type(e).__name__}: {e}")
            return None

    def _put(self, kind: str, key: str, meta: dict[str, Any], fill: Callable[[Path], None]) -> Path:
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}."))
        try:
            fill(tmp)
            files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            meta = {**meta, "files": files}
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

    def get_videos(self, key: str) -> list[Video] | None:
        """The videos of an entry, in stored order (``None``: missing or corrupt)."""

        def read(d: Path) -> list[Video]:
            fps = json.loads((d / "fps.json").read_text())
            return [
                Video(np.load(d / f"{i:05d}.npy", allow_pickle=False), f) for i, f in enumerate(fps)
            ]

        return self._load(FP_VIDEOS, key, read)

    # ---- calibration sets ------------------------------------------------------------------
    def put_calibration(self, key: str, calib: CalibrationSet, meta: dict[str, Any]) -> Path:
        """Store a calibration set as safetensors (its own ``meta`` under ``calib_meta``)."""
        from safetensors.torch import save_file

        def fill(d: Path) -> None:
            save_file(calib.tensors(), str(d / "calibration.safetensors"))

        return self._put(CALIBRATION, key, {**meta, "calib_meta": calib.meta}, fill)

    def get_calibration(self, key: str) -> CalibrationSet | None:
        """The calibration set of an entry (``None``: missing or corrupt)."""
        from safetensors.torch import load_file

        def read(d: Path) -> CalibrationSet:
            tensors = load_file(str(d / "calibration.safetensors"))
            return CalibrationSet.from_tensors(tensors, self.meta(CALIBRATION, key)["calib_meta"])

        return self._load(CALIBRATION, key, read)

    # ---- calibrated quantizer states -------------------------------------------------------
    def put_state(self, key: str, state: Any, meta: dict[str, Any]) -> Path:
        """Store a quantizer's calibration result (a ``QuantState``)."""
        return self._put(QUANT_STATE, key, meta, state.save)

    def get_state(self, key: str) -> Any:
        """The ``QuantState`` of an entry (``None``: missing or corrupt)."""
        from vqbench.types import QuantState

        return self._load(QUANT_STATE, key, QuantState.load)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
