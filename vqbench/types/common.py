"""Value sets every layer shares (bit widths, kernel modes, dtypes), the one digest and the
one name-pattern matcher."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable
from typing import Any

BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 16)
"""Supported weight and activation bit widths (16: kept in floating point)."""

KERNEL_MODES: tuple[str, ...] = ("fake", "real")
"""``fake``: reference numerics on any device; ``real``: packed integers and int8 GEMMs."""

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""Model dtypes by name (float16 only on accelerators)."""

DIGEST_LENGTH = 16


class NonFiniteError(RuntimeError):
    """A model produced NaN or infinite values (denoiser outputs or decoded frames): the
    setting cannot be scored. The runner records it as failed with this message."""


def digest(obj: Any, length: int = DIGEST_LENGTH) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), cut to ``length`` hex chars.

    The one hash of vqbench: configs, cache keys and quantizer configs all use it.
    """
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def match_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches any fnmatch pattern (a plain name matches itself): layer
    names against skip patterns, setting labels against ``--settings`` and gate patterns."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
