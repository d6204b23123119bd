"""Trajectory capture of diffusers denoiser calls: every call input, stored for replay.

A forward hook binds each call's positional and keyword arguments to the denoiser's
signature. The latent, timestep and text inputs become the ``CalibrationSet``'s own fields;
every other tensor whose first dimension is the batch goes to ``extra`` as ``kw.<name>``
(one row per sample); JSON-able constants (``None``, flags, numbers, plain mappings) go to
``meta['call_kwargs']``. A text embedding repeated per frame by the pipeline is stored once
per sample (``meta['text_repeat']``). Inputs the adapter recomputes at replay
(``derived_kwargs``, e.g. rotary embeddings) and output switches are skipped; anything
else is an error naming the
argument, so a new family cannot silently lose an input.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import torch
from torch import nn

from vqbench.types import CalibrationSet

SKIPPED = ("return_dict", "attention_kwargs", "cross_attention_kwargs")
KW = "kw."


def bind_call(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A denoiser call's arguments by parameter name (defaults not filled in)."""
    try:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs)
    except TypeError:
        return dict(kwargs)
    return dict(bound.arguments)


def _json_constant(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


class Recorder:
    """Collects denoiser calls during pipeline runs (one per pipeline call batch)."""

    def __init__(
        self,
        every_k: int,
        names: tuple[str, str, str],
        derived: tuple[str, ...],
        row_kinds: Any,
        cfg: bool,
    ) -> None:
        self.every_k = every_k
        self.latent_key, self.time_key, self.text_key = names
        self.derived = derived
        self.row_kinds = row_kinds
        self.cfg = cfg
        self.step = 0
        self.call_in_step = 0
        self.sample_ids: list[int] = []
        self.rows: list[dict[str, Any]] = []
        self.constants: dict[str, Any] = {}
        self.text_repeat = 1  # pipelines that repeat the text per frame (AnimateDiff)

    def new_call(self, idx: list[int]) -> None:
        """A pipeline call on samples ``idx`` starts."""
        self.sample_ids, self.step, self.call_in_step = idx, 0, 0

    def on_step_end(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end``: the next denoiser calls belong to step ``i + 1``."""
        self.step = i + 1
        self.call_in_step = 0
        return {}

    def _constant(self, key: str, value: Any) -> None:
        if not _json_constant(value):
            raise RuntimeError(
                f"capture: denoiser input {key!r} ({type(value).__name__}) is neither a per-row "
                "tensor nor a JSON constant; list it in the adapter's derived_kwargs"
            )
        if key in self.constants and self.constants[key] != value:
            raise RuntimeError(f"capture: denoiser input {key!r} changes between calls")
        self.constants[key] = value

    def hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        """Forward hook on a denoiser: record its inputs and FP output, one row per sample."""
        call = self.call_in_step
        self.call_in_step += 1
        if self.step % self.every_k:
            return
        inputs = bind_call(module, args, kwargs)
        x = inputs.pop(self.latent_key)
        n = x.shape[0]
        t = torch.as_tensor(inputs.pop(self.time_key))
        text = inputs.pop(self.text_key)
        if text.shape[0] != n and text.shape[0] % n == 0:  # text repeated per frame
            k = text.shape[0] // n
            if not torch.equal(text[::k].repeat_interleave(k, 0), text):
                raise RuntimeError(f"capture: {self.text_key!r} has {k} rows per sample")
            self.text_repeat, text = k, text[::k]
        out = output[0] if isinstance(output, tuple) else output.sample
        per_row: dict[str, torch.Tensor] = {}
        if t.numel() == 1:
            t = t.reshape(1).expand(n)
        elif t.dim() > 1:  # per-token timesteps (Wan 2.2 TI2V): keep them, row value = max
            per_row[KW + self.time_key] = t
            t = t.reshape(n, -1).amax(1)
        for key, value in inputs.items():
            if key in SKIPPED or key in self.derived:
                continue
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                value = value.reshape(1)
            if isinstance(value, torch.Tensor) and value.shape[0] in (1, n):
                per_row[KW + key] = value.expand(n, *value.shape[1:])
            else:
                self._constant(key, value)
        uncond, local = self.row_kinds(call, n, self.cfg)
        for r in range(n):
            row = {
                "latents": x[r].detach().float().cpu(),
                "timesteps": t[r].detach().cpu(),
                "text": text[r].detach().float().cpu(),
                "outputs": out[r].detach().float().cpu(),
                "step_index": self.step,
                "prompt_index": self.sample_ids[local[r]],
                "is_uncond": uncond[r],
            }
            row.update({k: v[r].detach().cpu() for k, v in per_row.items()})
            self.rows.append(row)

    def calibration_set(self, meta: dict[str, Any]) -> CalibrationSet:
        """The recorded rows, sorted by (prompt, step, cond first); text zero-padded."""
        rows = sorted(self.rows, key=lambda r: (r["prompt_index"], r["step_index"], r["is_uncond"]))
        max_len = max(r["text"].shape[0] for r in rows)
        text = torch.zeros(len(rows), max_len, rows[0]["text"].shape[-1])
        for i, r in enumerate(rows):
            text[i, : r["text"].shape[0]] = r["text"]
        extra = {"text_len": torch.tensor([r["text"].shape[0] for r in rows])}
        for key in sorted(k for k in rows[0] if k.startswith(KW)):
            shapes = {tuple(r[key].shape) for r in rows}
            if len(shapes) > 1:
                raise RuntimeError(f"capture: denoiser input {key[len(KW) :]!r} varies in shape")
            extra[key] = torch.stack([r[key] for r in rows])
        return CalibrationSet(
            latents=torch.stack([r["latents"] for r in rows]),
            timesteps=torch.stack([r["timesteps"] for r in rows]),
            text=text,
            outputs=torch.stack([r["outputs"] for r in rows]),
            step_index=torch.tensor([r["step_index"] for r in rows]),
            prompt_index=torch.tensor([r["prompt_index"] for r in rows]),
            is_uncond=torch.tensor([r["is_uncond"] for r in rows]),
            extra=extra,
            meta={**meta, "call_kwargs": dict(self.constants), "text_repeat": self.text_repeat},
        )
