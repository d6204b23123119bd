"""The mini world's evaluators as metric backbones, loaded lazily from ``vqbench.mini.assets``.

``vqbench.mini.assets`` (the shipped weights and their loaders) is the one part of the harness
besides its leaf modules that metrics may import (the layering test allows exactly it); it is
imported only here, and only when a metric is asked for the ``"mini"`` backbone.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from metrics.backbones.manifest import file_sha256


def load_mini(loader: str, what: str) -> Any:
    """Call ``vqbench.mini.assets.<loader>()``; ``RuntimeError`` naming it if unavailable."""
    try:
        assets = importlib.import_module("vqbench.mini.assets")
        return getattr(assets, loader)()
    except (ImportError, AttributeError) as e:
        raise RuntimeError(
            f"backbone 'mini' needs vqbench.mini.assets.{loader}() ({what}), "
            f"which is not available: {e}"
        ) from e


def mini_asset_sha256(filename: str) -> str | None:
    """sha256 of a shipped mini-world asset file, or None if it is absent."""
    assets = importlib.import_module("vqbench.mini.assets")
    path = Path(assets.ASSETS) / filename
    return file_sha256(path) if path.is_file() else None


def mini_asset_problem(filename: str, what: str) -> str | None:
    """``None`` if the mini world ships ``filename``, else a one-line problem naming it."""
    try:
        assets = importlib.import_module("vqbench.mini.assets")
    except ImportError as e:
        return f"backbone 'mini' ({what}) needs vqbench.mini.assets: {e}"
    path = Path(assets.ASSETS) / filename
    if path.is_file():
        return None
    return (
        f"backbone 'mini' ({what}): {path} is missing; restore the shipped assets "
        "(git checkout vqbench/mini/assets) or retrain them (vqbench mini train evaluators)"
    )
