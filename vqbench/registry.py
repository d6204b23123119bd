"""One ``Registry`` class with lazy ``"module:attr"`` entries and did-you-mean errors.

The three registries are filled from catalogs that live beside the code they name:
``quantizers.CATALOG``, ``metrics.CATALOG`` and ``vqbench.adapters.CATALOG``. Entries are
imported only when first used, so ``vqbench ls`` and ``vqbench validate`` stay fast.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any


class UnknownNameError(ValueError):
    """Raised for a name that is not registered; the message suggests close matches."""


class Registry:
    """A name -> object map whose entries may be lazy ``"package.module:attr"`` strings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: Any = None) -> Any:
        """Register ``target`` (an object or a lazy ``"module:attr"`` string) under ``name``.

        Used without ``target`` it returns a decorator.
        """
        if target is None:

            def deco(obj: Any) -> Any:
                self._entries[name] = obj
                return obj

            return deco
        self._entries[name] = target
        return target

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def suggest(self, name: str) -> str:
        """A ``" (did you mean 'x'?)"`` suffix, or an empty string."""
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.5)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def check(self, name: str, field: str | None = None) -> None:
        """Raise :class:`UnknownNameError` naming ``field`` if ``name`` is not registered."""
        if name not in self._entries:
            where = f"{field}: " if field else ""
            raise UnknownNameError(
                f"{where}unknown {self.kind} {name!r}{self.suggest(name)}; "
                f"known: {', '.join(self.names())}"
            )

    def get(self, name: str, field: str | None = None) -> Any:
        """Resolve ``name``, importing a lazy entry on first use."""
        self.check(name, field)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._entries[name] = obj
            return obj
        return entry

    def items(self) -> list[tuple[str, Any]]:
        """``(name, entry)`` pairs without resolving lazy entries."""
        return sorted(self._entries.items())


def _from_catalog(kind: str, loader: Callable[[], dict[str, str]]) -> Registry:
    reg = Registry(kind)
    for name, target in loader().items():
        reg.register(name, target)
    return reg


def _quantizer_catalog() -> dict[str, str]:
    from quantizers import CATALOG

    return CATALOG


def _metric_catalog() -> dict[str, str]:
    from metrics import CATALOG

    return CATALOG


def _model_catalog() -> dict[str, str]:
    from vqbench.adapters import CATALOG

    return CATALOG


QUANTIZERS = _from_catalog("quantizer", _quantizer_catalog)
METRICS = _from_catalog("metric", _metric_catalog)
MODELS = _from_catalog("model", _model_catalog)
