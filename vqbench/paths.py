"""Names that become path components, and paths that must stay under their root.

Every name from user input that vqbench turns into a file or directory name (tags, prompt
ids, setting labels, run ids, sweep model keys, video names in ``samples.jsonl``) must match
:data:`SAFE_NAME`; every path built from such names is resolved and checked to stay under
its root, so no input writes or reads outside ``output_dir`` or a record's directory.
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")
"""A path component: letters, digits and ``._+=-``, not starting with a dot, ≤ 128 chars."""


class UnsafePathError(ValueError):
    """A name or path that would leave its root; the message names the field."""


def check_name(name: str, field: str) -> str:
    """``name`` if it is a safe path component, else :class:`UnsafePathError` naming ``field``."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UnsafePathError(
            f"{field}: {name!r} is not a safe name (use letters, digits and ._+=-, no '/' "
            "or '..', not starting with '.')"
        )
    return name


def under(root: str | Path, *parts: str) -> Path:
    """``root / parts...`` resolved, or :class:`UnsafePathError` if it leaves ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise UnsafePathError(f"{Path(*parts)}: path leaves {base}")
    return path
