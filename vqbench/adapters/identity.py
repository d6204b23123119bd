"""Model identity and integrity: the id, revision and weights check of a model folder.

- :func:`read_model_index` reads ``model_index.json`` (one-line ``ValueError`` naming the file
  when malformed); :func:`check_pipeline_class` compares its ``_class_name`` with an adapter's.
- :func:`folder_digest` digests a diffusers folder's files. Under a Hugging Face hub cache
  (``.../snapshots/<rev>/``, files linking to ``blobs/<hash>``) the blob names are the
  files' own hashes (sha256 for LFS weights), so nothing is re-hashed; elsewhere every file
  is sha256-hashed once and the result cached per (path, size, mtime) in
  ``$VQBENCH_CACHE_DIR/digests.json``. Safetensors files are checked for truncation from
  their header (cheap) on every load.
- :func:`identity` turns a class name, configs and a weights digest into ``(id, revision)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
#: configs, tokenizer vocabularies and merges (they change outputs too)
CONFIG_SUFFIXES = (".json", ".model", ".txt", ".tiktoken")


class ModelPathError(FileNotFoundError, ValueError):
    """``model.path`` is missing or is not a folder of the right kind (a ``ValueError`` too)."""


def cache_root() -> Path:
    """``$VQBENCH_CACHE_DIR`` (default ``~/.cache/vqbench``)."""
    root = os.environ.get("VQBENCH_CACHE_DIR") or os.path.join("~", ".cache", "vqbench")
    return Path(root).expanduser()


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; one-line ``ValueError`` naming the file when malformed."""
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: malformed JSON ({e}); re-download or re-save the file") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_model_index(folder: Path) -> dict[str, Any]:
    """``model_index.json`` of a diffusers folder (must name its ``_class_name``)."""
    path = folder / "model_index.json"
    index = read_json(path)
    if not isinstance(index.get("_class_name"), str):
        raise ValueError(f"{path}: no '_class_name'; not a diffusers pipeline folder")
    return index


def check_pipeline_class(folder: Path, expected: str, model: str, hint: str | None) -> None:
    """Raise ``ValueError`` when the folder's pipeline class is not ``expected``.

    ``hint`` is the catalog name of the adapter that fits the folder's class, if any.
    """
    found = read_model_index(folder)["_class_name"]
    if found == expected:
        return
    fix = f"use model.name={hint}" if hint else "no vqbench adapter loads it"
    raise ValueError(
        f"model.path: {folder} holds a {found}, not the {expected} that model.name={model} "
        f"loads; {fix}"
    )


def check_safetensors(path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` if its header or size shows truncation."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(n))
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid safetensors file ({e}); re-download it") from e
    if 8 + n + end != size:
        raise ValueError(
            f"{path}: truncated or padded safetensors ({size} bytes, header says {8 + n + end}); "
            "re-download it"
        )


def hub_snapshot(folder: Path) -> str | None:
    """The revision when ``folder`` is a hub cache ``snapshots/<rev>`` folder, else ``None``."""
    folder = folder.absolute()
    return folder.name if folder.parent.name == "snapshots" else None


class _DigestCache:
    """sha256 per (path, size, mtime) in a small JSON file, written atomically."""

    def __init__(self) -> None:
        self.path = cache_root() / "digests.json"
        self.data: dict[str, str] = {}
        if self.path.is_file():
            try:
                self.data = {str(k): str(v) for k, v in read_json(self.path).items()}
            except ValueError:
                self.data = {}  # a corrupt cache is rebuilt, never trusted
        self.dirty = False

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self.data:
            self.data[key] = sha256_file(path)
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=0, sort_keys=True)
        os.replace(tmp, self.path)


def folder_files(folder: Path) -> list[Path]:
    """Files of a model folder that define the model (weights, configs, tokenizer files)."""
    suffixes = WEIGHT_SUFFIXES + CONFIG_SUFFIXES
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes)


def folder_digest(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every model file; safetensors checked for truncation.

    Hub snapshots use their blob names (the files' own hashes); other folders are hashed.
    """
    snapshot = hub_snapshot(folder)
    cache = _DigestCache()
    out: dict[str, str] = {}
    for p in folder_files(folder):
        if p.suffix == ".safetensors":
            check_safetensors(p)
        rel = p.relative_to(folder).as_posix()
        if snapshot and p.is_symlink():
            out[rel] = Path(os.readlink(p)).name
        else:
            out[rel] = cache.sha256(p)
    cache.save()
    return out


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def identity(class_name: str, files: dict[str, str]) -> tuple[str, str]:
    """``(id, revision)``: revision digests every file (weights and configs), id adds the class."""
    revision = digest(files)
    return f"{class_name}-{digest([class_name, revision])[:16]}", revision


def random_identity(class_name: str, builder: str, pipe: Any) -> dict[str, Any]:
    """Id and revision of a tiny random pipeline: a digest of its builder, seed and configs."""
    from vqbench.adapters._tiny import TINY_SEED

    configs: dict[str, Any] = {}
    for key, component in pipe.components.items():
        cfg = getattr(component, "config", None)
        if cfg is not None:  # diffusers FrozenDict or transformers PretrainedConfig
            configs[key] = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        elif component is not None:  # tokenizers: fixed by construction
            configs[key] = type(component).__name__
    revision = digest([builder, TINY_SEED, configs])
    return {"id": f"{class_name}-{revision[:16]}", "revision": revision, "random": True}
