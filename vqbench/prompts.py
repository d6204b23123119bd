"""Prompt suites: JSONL files with one prompt per line and their provenance.

Each line holds ``id`` and ``text`` (required) and optionally ``scene`` (VBench scene tag),
``class``, ``attributes`` (a mapping), ``image`` (the conditioning image of image-to-video
models: a path, relative to the suite file or absolute), ``source`` and ``license``. A suite
is named by its file stem in ``prompts/`` (for example ``mini_eval``) or given as a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqbench.config import ConfigError
from vqbench.paths import check_name


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite."""

    id: str
    text: str
    scene: str | None = None
    cls: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str | None = None
    license: str | None = None
    image: str | None = None  # absolute path of the conditioning image (image-to-video)


def prompts_dirs() -> list[Path]:
    """Where suites are looked up: $VQBENCH_PROMPTS_DIR, the source tree, the installed copy."""
    dirs = []
    if os.environ.get("VQBENCH_PROMPTS_DIR"):
        dirs.append(Path(os.environ["VQBENCH_PROMPTS_DIR"]))
    dirs.append(Path(__file__).resolve().parent.parent / "prompts")
    dirs.append(Path(sys.prefix) / "share" / "vqbench" / "prompts")
    return dirs


def available_suites() -> list[str]:
    """Names of the suites found in the prompt directories."""
    names: set[str] = set()
    for d in prompts_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.jsonl"))
    return sorted(names)


def resolve_suite(name_or_path: str, field_name: str = "generation.prompts") -> Path:
    """Path of a suite given by name or path; ``ConfigError`` naming the field if missing."""
    p = Path(name_or_path)
    if p.suffix == ".jsonl" or os.sep in name_or_path:
        if p.is_file():
            return p
        raise ConfigError(f"{field_name}: prompts file not found: {p}")
    for d in prompts_dirs():
        cand = d / f"{name_or_path}.jsonl"
        if cand.is_file():
            return cand
    import difflib

    suites = available_suites()
    close = difflib.get_close_matches(name_or_path, suites, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{field_name}: unknown prompt suite {name_or_path!r}{hint}; known: {', '.join(suites)}"
    )


def load_prompts(
    name_or_path: str, limit: int | None = None, field_name: str = "generation.prompts"
) -> list[Prompt]:
    """Load a suite (first ``limit`` prompts); raises ``ConfigError`` on bad or empty files."""
    path = resolve_suite(name_or_path, field_name)
    out: list[Prompt] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{field_name}: cannot read {path}: {e}") from e
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{field_name}: {path}:{lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(d, dict) or "text" not in d:
            raise ConfigError(f"{field_name}: {path}:{lineno}: each line needs a 'text' field")
        pid = str(d.get("id", f"{path.stem}-{lineno:04d}"))
        check_name(pid, f"{field_name}: {path}:{lineno}: id")
        image = d.get("image")
        if image is not None:
            img = Path(str(image))
            img = img if img.is_absolute() else path.parent / img
            if not img.is_file():
                raise ConfigError(f"{field_name}: {path}:{lineno}: image not found: {img}")
            image = str(img.resolve())
        out.append(
            Prompt(
                id=pid,
                text=str(d["text"]),
                scene=d.get("scene"),
                cls=d.get("class"),
                attributes=dict(d.get("attributes") or {}),
                source=d.get("source"),
                license=d.get("license"),
                image=image,
            )
        )
    if not out:
        raise ConfigError(f"{field_name}: prompt suite {path} is empty")
    if limit is not None and limit < 1:
        raise ConfigError(f"{field_name}: the number of prompts must be >= 1 (or null: all)")
    ids = [p.id for p in out]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise ConfigError(f"{field_name}: {path}: prompt id {dup!r} appears twice")
    return out[:limit] if limit is not None else out


def prompts_hash(prompts: list[Prompt]) -> str:
    """Short sha256 over prompt ids and texts (order-sensitive)."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(f"{p.id}\t{p.text}\n".encode())
        if p.image is not None:  # the image's content, not its path
            h.update(hashlib.sha256(Path(p.image).read_bytes()).hexdigest().encode())
    return h.hexdigest()[:12]
