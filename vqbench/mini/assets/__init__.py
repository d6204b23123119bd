"""The mini world's shipped weights: sha256 manifest, verification and loaders.

Layout of this folder::

    generator/{transformer,text_encoder,scheduler}/   diffusers save_pretrained folders
    clip.pt                                           clip-anytorch CLIP state dict (fp16 storage)
    i3d.safetensors, classifier.safetensors, tagger.safetensors
    manifest.json                                     sha256 and size of every file above

``python -m vqbench.mini.assets`` rewrites ``manifest.json`` from the files present.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent
MANIFEST = ASSETS / "manifest.json"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".json")


class AssetError(RuntimeError, ValueError):
    """A shipped asset is missing or does not match its manifest entry."""


def read_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """A manifest's ``files`` table; one-line ``ValueError`` naming the file when corrupt."""
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        for rel, entry in files.items():
            if not (isinstance(entry["sha256"], str) and isinstance(entry["size"], int)):
                raise TypeError(f"bad entry for {rel}")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path}: corrupt mini assets manifest ({type(e).__name__}: {e}); restore it "
            "from the repository or rebuild it with `python -m vqbench.mini.assets`"
        ) from e
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _asset_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and p.name != MANIFEST.name
    )


def write_manifest(root: Path = ASSETS) -> dict[str, Any]:
    """Record sha256 and size of every asset file under ``root`` into ``manifest.json``."""
    files = {
        p.relative_to(root).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
        for p in _asset_files(root)
    }
    manifest = {"files": files, "total_bytes": sum(f["size"] for f in files.values())}
    (root / MANIFEST.name).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def verify(root: Path = ASSETS, files: list[str] | None = None) -> dict[str, Any]:
    """Check every manifest entry (or only ``files``) against sha256 and size.

    Raises :class:`AssetError` naming the first missing or mismatching file.
    """
    manifest_path = root / MANIFEST.name
    if not manifest_path.is_file():
        raise AssetError(f"mini assets: manifest not found: {manifest_path}")
    manifest = read_manifest(manifest_path)
    for rel, entry in manifest["files"].items():
        if files is not None and not any(rel.startswith(f) for f in files):
            continue
        _check(root / rel, entry, manifest_path)
    return manifest


def _check(p: Path, entry: dict[str, Any], manifest_path: Path) -> None:
    if not p.is_file():
        raise AssetError(f"mini assets: missing file {p} (listed in {manifest_path})")
    if p.stat().st_size != entry["size"] or _sha256(p) != entry["sha256"]:
        raise AssetError(
            f"mini assets: {p} does not match its sha256 in {manifest_path} "
            "(re-download or retrain, then `python -m vqbench.mini.assets`)"
        )


def shipped_generator_digests() -> dict[str, str]:
    """Relative path -> sha256 of the shipped generator's files (from the shipped manifest)."""
    files = read_manifest(MANIFEST)["files"]
    prefix = "generator/"
    return {k[len(prefix) :]: v["sha256"] for k, v in files.items() if k.startswith(prefix)}


def verify_generator(path: Path) -> dict[str, str]:
    """Check a generator folder (shipped or relocated ``model.path``) against its manifest.

    The manifest is ``path.parent/manifest.json`` when that lists ``<path.name>/`` files (an
    assets folder), else the shipped one (its ``generator/`` entries). Returns the folder's
    relative path -> sha256; raises :class:`AssetError` naming the first bad file.
    """
    manifest_path = path.parent / MANIFEST.name
    prefix = f"{path.name}/"
    files = read_manifest(manifest_path)["files"] if manifest_path.is_file() else {}
    if not any(rel.startswith(prefix) for rel in files):
        manifest_path, prefix = MANIFEST, "generator/"
        files = read_manifest(MANIFEST)["files"]
    out: dict[str, str] = {}
    for rel, entry in files.items():
        if rel.startswith(prefix):
            _check(path / rel[len(prefix) :], entry, manifest_path)
            out[rel[len(prefix) :]] = entry["sha256"]
    return out


def available() -> bool:
    """True when the manifest and every file it lists exist (without hashing)."""
    if not MANIFEST.is_file():
        return False
    files = read_manifest(MANIFEST)["files"]
    return all((ASSETS / rel).is_file() for rel in files)


def load_generator(dtype: str = "float32") -> Any:
    """The shipped generator as a loaded :class:`~vqbench.adapters.mini.MiniAdapter`."""
    from vqbench.adapters.mini import MiniAdapter

    verify(files=["generator/"])
    adapter = MiniAdapter(str(ASSETS / "generator"))
    adapter.load("cpu", dtype)
    return adapter


def load_clip() -> tuple[Any, Any]:
    """The mini CLIP and its preprocess, through ``clip.load(path)`` (fp32 on CPU)."""
    import clip

    verify(files=["clip.pt"])
    return clip.load(str(ASSETS / "clip.pt"), device="cpu", jit=False)


def _load_net(name: str) -> Any:
    from vqbench.mini.evaluators import load_net

    verify(files=[name])
    return load_net(ASSETS / name)


def load_i3d() -> Any:
    """The FVD detector: the I3D-style video network behind ``features(videos) -> [N, D]``."""
    from vqbench.mini.evaluators import MiniVideoFeatures

    manifest = read_manifest(MANIFEST) if MANIFEST.is_file() else {"files": {}}
    sha = manifest["files"].get("i3d.safetensors", {}).get("sha256")
    return MiniVideoFeatures(_load_net("i3d.safetensors"), sha256=sha)


def load_classifier() -> Any:
    """The held-out attribute classifier of the quality bars."""
    return _load_net("classifier.safetensors")


def load_attribute_classifier() -> Any:
    """The held-out classifier behind ``predict(videos) -> {attribute: [name per video]}``."""
    from vqbench.mini.evaluators import VideoClassifier

    return VideoClassifier(_load_net("classifier.safetensors"))


def load_tagger() -> Any:
    """The per-frame scene/object tagger."""
    return _load_net("tagger.safetensors")
