"""Guards that keep a broken setting from being scored: non-finite denoiser outputs, and a
model that is only partly quantized while its record would say otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from vqbench.types import NonFiniteError, QuantTarget


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, torch.Tensor)]
    sample = getattr(out, "sample", None)
    return [sample] if isinstance(sample, torch.Tensor) else []


@contextmanager
def finite_outputs(denoisers: dict[str, nn.Module], label: str) -> Iterator[None]:
    """Within the block, a denoiser call that returns NaN or infinite values raises
    :class:`~vqbench.types.NonFiniteError` naming the setting and the denoiser."""

    def check(name: str) -> Any:
        def hook(_m: nn.Module, _args: Any, out: Any) -> None:
            for t in _tensors(out):
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    bad = int((~torch.isfinite(t)).sum())
                    raise NonFiniteError(
                        f"{label}: {name} returned {bad} non-finite values of {t.numel()}"
                    )

        return hook

    handles = [m.register_forward_hook(check(n)) for n, m in denoisers.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_quantized(
    denoisers: dict[str, nn.Module], targets: list[QuantTarget], effective: dict[str, Any]
) -> int:
    """Replaced linears of ``targets``, after checking that every denoiser was a target and
    that no linear the quantizer counts as quantized is still a plain ``nn.Linear``.

    Raises ``RuntimeError`` naming what was left in floating point (a half-quantized model
    must never be recorded as quantized).
    """
    covered = {id(t.module) for t in targets}
    missed = [n for n, m in denoisers.items() if id(m) not in covered]
    if missed:
        raise RuntimeError(f"denoiser(s) {missed} have no quantization target: adapter bug")
    replaced = 0
    for t in targets:
        for name in t.roles:
            replaced += type(t.module.get_submodule(name)) is not nn.Linear
    expected = int(effective.get("quantized_layers", 0))
    if replaced < expected:
        raise RuntimeError(
            f"only {replaced} of the {expected} linears counted as quantized were replaced"
        )
    return replaced
