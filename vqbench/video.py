"""Video IO: PyAV write (libx264), decord read with a PyAV fallback.

The ``Video`` type lives in ``vqbench.types``.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from vqbench.types import Video

__all__ = ["Video", "write_video", "read_video"]


def write_video(video: Video, path: str | Path, lossless: bool = False) -> Path:
    """Write ``video`` as H.264 mp4 atomically.

    ``lossless=True`` uses yuv444p at crf 0 (near-lossless, about 0.4/255 mean error);
    the default yuv420p at crf 10 plays everywhere (about 1.5/255 mean error).
    Odd frame sizes are padded by edge replication to even sizes for yuv420p.
    """

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = video.frames
    pix_fmt = "yuv444p" if lossless else "yuv420p"
    if pix_fmt == "yuv420p" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        frames = np.pad(
            frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), "edge"
        )
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    try:
        _encode(tmp, frames, video.fps, pix_fmt, lossless)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (a full disk) leaves nothing behind
    return path


def _encode(tmp: Path, frames: np.ndarray, fps: float, pix_fmt: str, lossless: bool) -> None:
    import av

    # the file is ours to close: PyAV leaves its own handle open when a write fails
    with open(tmp, "wb") as fh, av.open(fh, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "0" if lossless else "10", "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path: str | Path, num_frames: int | None = None) -> Video:
    """Read a video with decord (PyAV fallback for streams decord rejects, e.g. yuv444p).

    ``num_frames`` samples that many frames uniformly.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        frames, fps = _read_decord(path)
    except Exception:  # decord raises its own DECORDError for unsupported pixel formats
        frames, fps = _read_av(path)
    if num_frames is not None:
        idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
        frames = frames[idx]
    return Video(np.ascontiguousarray(frames, dtype=np.uint8), fps or 8.0)


def _read_decord(path: Path) -> tuple[np.ndarray, float]:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return vr.get_batch(list(range(len(vr)))).asnumpy(), float(vr.get_avg_fps())


def _read_av(path: Path) -> tuple[np.ndarray, float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        fps = float(stream.average_rate or 0)
    return np.stack(frames), fps
