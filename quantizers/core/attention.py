"""Attention statistics without materialising the ``n x n`` attention map.

- :func:`attention_column_sums`: ``S_j = sum_h sum_i softmax(q k^T * scale + mask)_{h,i,j}``
  (the attention each key token *receives*), accumulated over query chunks;
- :class:`AttentionProbe`: while active, records those column sums for chosen attention
  modules. It wraps ``torch.nn.functional.scaled_dot_product_attention``, which the
  diffusers attention processors (Latte, CogVideoX, Wan) call with the final ``q`` and ``k``
  (after QK-norm and rotary embeddings), so no processor needs to be re-implemented;
- :func:`self_attention_modules`: attention modules of a ``QuantTarget`` found generically
  (modules with ``to_q``/``to_k`` linears whose role is spatial or temporal attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from vqbench.types import QuantTarget

SELF_ATTN_ROLES = ("spatial_attn", "temporal_attn")


def attention_column_sums(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Column sums over heads and queries of ``softmax(q k^T * scale + mask)``.

    ``q [B, H, Lq, D]``, ``k [B, Hk, Lk, D]`` (``H`` a multiple of ``Hk``: grouped-query
    keys are repeated); ``attn_mask`` as in ``scaled_dot_product_attention`` (bool: True =
    attend, or additive float), broadcastable to ``[B, H, Lq, Lk]``. Returns float32
    ``[B, Lk]``; at most ``[B, H, chunk, Lk]`` probabilities exist at a time.
    """
    if q.shape[1] != k.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    kf = k.float()
    out = torch.zeros(q.shape[0], k.shape[2], dtype=torch.float32, device=q.device)
    for i in range(0, q.shape[2], chunk):
        logits = q[:, :, i : i + chunk].float() @ kf.transpose(-1, -2) * scale
        if attn_mask is not None:
            m = attn_mask
            if m.dim() >= 2 and m.shape[-2] > 1:
                m = m[..., i : i + chunk, :]
            if m.dtype == torch.bool:
                logits = logits.masked_fill(~m, float("-inf"))
            else:
                logits = logits + m.float()
        out += torch.softmax(logits, dim=-1).nan_to_num(0.0).sum(dim=(1, 2))
    return out


class AttentionProbe:
    """Records attention column sums of the given modules during FP forwards.

    Use as a context manager; ``sums[name]`` collects one ``[B, Lk]`` tensor per
    self-attention call of module ``name`` (cross-attention calls, whose keys are not the
    query tokens, are ignored). Not thread-safe: it patches the global SDPA function.
    """

    def __init__(self, modules: dict[str, nn.Module], chunk: int = 1024) -> None:
        self.modules = modules
        self.chunk = chunk
        self.sums: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
        self._active: str | None = None

    def reset(self) -> None:
        """Forget recorded sums."""
        self.sums = {n: [] for n in self.modules}

    def _wrap(self, sdpa: Callable) -> Callable:
        def probed(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kw):
            if self._active is not None and query.shape[-2] == key.shape[-2]:
                mask = kw.get("attn_mask", args[0] if args else None)
                scale = kw.get("scale", args[3] if len(args) > 3 else None)
                with torch.no_grad():
                    s = attention_column_sums(query, key, scale, mask, self.chunk)
                self.sums[self._active].append(s)
            return sdpa(query, key, value, *args, **kw)

        return probed

    @contextmanager
    def _activate(self) -> Iterator[None]:
        def pre(name: str) -> Callable:
            def hook(_m: nn.Module, _a: tuple) -> None:
                self._active = name

            return hook

        def post(_m: nn.Module, _a: tuple, _o: object) -> None:
            self._active = None

        handles = []
        for name, mod in self.modules.items():
            handles.append(mod.register_forward_pre_hook(pre(name)))
            handles.append(mod.register_forward_hook(post))
        original = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._wrap(original)
        try:
            yield
        finally:
            F.scaled_dot_product_attention = original
            for h in handles:
                h.remove()
            self._active = None

    def __enter__(self) -> AttentionProbe:
        self._ctx = self._activate()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def self_attention_modules(target: QuantTarget, prefix: str = "") -> dict[str, nn.Module]:
    """Modules under ``prefix`` with ``to_q``/``to_k`` linears of a self-attention role.

    Also accepts modules with ``q``/``k`` linears (plain attention blocks). Returns
    ``name -> module`` in registration order.
    """
    out = {}
    for name, mod in target.module.named_modules():
        if prefix and not name.startswith(prefix + "."):
            continue
        for qn in ("to_q", "q"):
            if isinstance(getattr(mod, qn, None), nn.Linear) and hasattr(mod, qn[:-1] + "k"):
                if target.roles.get(f"{name}.{qn}") in SELF_ATTN_ROLES:
                    out[name] = mod
                break
    return out
