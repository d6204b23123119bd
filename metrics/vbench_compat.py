"""Runs vbench 0.1.5's code beside transformers 5, offline (the ``vbench`` optional extra).

vbench pins ``transformers==4.33.2``; its Tag2Text captioner (the ``scene`` dimension) imports
names that transformers 5 moved or removed and fetches ``bert-base-uncased`` from the hub.
This module bridges both without touching vbench's files:

- :func:`patch_transformers` puts ``apply_chunking_to_forward``, ``prune_linear_layer`` and
  ``find_pruneable_heads_and_indices`` back into ``transformers.modeling_utils``;
- :func:`import_tag2text` imports vbench's Tag2Text and makes its BERT decoder generate-capable
  (transformers 5 models need ``GenerationMixin`` explicitly);
- :func:`build_tag2text` builds ``tag2text_caption`` with a ``BertTokenizer`` read from a local
  ``vocab.txt`` and the q2l BERT built from its config, not downloaded (the checkpoint holds
  its weights), so nothing touches the network;
- :class:`Tag2TextTagger` captions frames the way ``vbench.scene`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
import torch

from metrics.backbones.manifest import file_sha256, resolve

INSTALL_HINT = (
    "install the optional extra: pip install -c constraints.txt '.[vbench]' && "
    "pip install -c constraints.txt --no-deps vbench==0.1.5 pyiqa==0.1.16"
)


def require_vbench() -> ModuleType:
    """Import ``vbench`` or raise ``ImportError`` saying how to install it."""
    try:
        import vbench
    except ImportError as e:
        raise ImportError(f"vbench is not importable ({e}); {INSTALL_HINT}") from e
    return vbench


def _find_pruneable_heads_and_indices(
    heads: list[int], n_heads: int, head_size: int, already_pruned_heads: set[int]
) -> tuple[set[int], torch.LongTensor]:
    """transformers 4.x ``find_pruneable_heads_and_indices`` (removed in 5)."""
    mask = torch.ones(n_heads, head_size)
    heads = set(heads) - already_pruned_heads
    for head in heads:
        head -= sum(1 if h < head else 0 for h in already_pruned_heads)
        mask[head] = 0
    mask = mask.view(-1).contiguous().eq(1)
    index: torch.LongTensor = torch.arange(len(mask))[mask].long()
    return heads, index


def patch_transformers() -> None:
    """Restore the transformers 4.x names vbench's third-party code imports (idempotent)."""
    import transformers.modeling_utils as mu
    import transformers.pytorch_utils as pu

    for name in ("apply_chunking_to_forward", "prune_linear_layer"):
        if not hasattr(mu, name):
            setattr(mu, name, getattr(pu, name))
    if not hasattr(mu, "find_pruneable_heads_and_indices"):
        mu.find_pruneable_heads_and_indices = _find_pruneable_heads_and_indices


def import_tag2text() -> ModuleType:
    """``vbench.third_party.tag2Text.tag2text``, importable and able to generate."""
    require_vbench()
    patch_transformers()
    from transformers.generation import GenerationMixin
    from vbench.third_party.tag2Text import med, tag2text

    head = med.BertLMHeadModel
    if not issubclass(head, GenerationMixin):
        head.__bases__ = (*head.__bases__, GenerationMixin)
    base = med.BertPreTrainedModel
    base.init_weights = _init_weights_v4
    for name, fn in (("invert_attention_mask", _invert_mask), ("get_head_mask", _no_head_mask)):
        if not hasattr(base, name):
            setattr(base, name, fn)
    return tag2text


def _invert_mask(self: Any, mask: torch.Tensor) -> torch.Tensor:
    """transformers 4's ``invert_attention_mask``: 1 keeps, 0 masks (additive, in dtype)."""
    ext = mask[:, None, :, :] if mask.dim() == 3 else mask[:, None, None, :]
    ext = ext.to(dtype=self.dtype)
    return (1.0 - ext) * torch.finfo(self.dtype).min


def _no_head_mask(self: Any, head_mask: Any, num_hidden_layers: int) -> list[None]:
    """transformers 4's ``get_head_mask`` for ``head_mask=None``, the only case Tag2Text uses."""
    if head_mask is not None:
        raise NotImplementedError("head masks are not supported by the vbench compatibility layer")
    return [None] * num_hidden_layers


def _init_weights_v4(self: Any) -> None:
    """transformers 4's ``init_weights()`` at the end of ``__init__`` is 5's ``post_init()``."""
    from transformers import PreTrainedModel

    if getattr(self, "_post_init_done", False):  # post_init() calls init_weights() back
        PreTrainedModel.init_weights(self)
        return
    self._post_init_done = True
    self.post_init()


def bert_tokenizer(vocab_file: str | os.PathLike[str]) -> Any:
    """Tag2Text's ``init_tokenizer`` with the BERT vocab read from a local file."""
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    tok = BertTokenizer(vocab=load_vocab(str(vocab_file)), do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.convert_tokens_to_ids("[ENC]")
    return tok


def _config_only(cls: type, _name: str, *, config: Any, **kwargs: Any) -> Any:
    """Stands in for ``BertModel.from_pretrained('bert-base-uncased', config=...)``."""
    return cls(config=config, **kwargs)


def build_tag2text(
    checkpoint: str | os.PathLike[str] | None,
    vocab_file: str | os.PathLike[str],
    image_size: int = 384,
) -> torch.nn.Module:
    """vbench's ``tag2text_caption(pretrained, image_size, vit="swin_b")``, offline.

    ``checkpoint=None`` leaves the weights random (tests). The model is in eval mode.
    """
    t2t = import_tag2text()
    from_pretrained: Callable[..., Any] = classmethod(_config_only)  # type: ignore[assignment]
    with (
        mock.patch.object(t2t, "init_tokenizer", lambda: bert_tokenizer(vocab_file)),
        mock.patch.object(t2t.BertModel, "from_pretrained", from_pretrained),
    ):
        model = t2t.tag2text_caption(
            pretrained=str(checkpoint) if checkpoint else "", image_size=image_size, vit="swin_b"
        )
    return model.eval()


class Tag2TextTagger:
    """One Tag2Text caption per frame, as ``vbench.scene`` computes them.

    Frames go through vbench's ``tag2text_transform(384)`` and ``scene.get_caption`` (tags,
    then beam-search captions). vbench decodes its mp4 at 384x384 with decord before that
    transform; here the in-memory frames are resized by the transform itself.
    """

    name = "tag2text"

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        sha256: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.model, self.device = model.to(device), device
        self.sha256, self.batch_size = sha256, batch_size
        from vbench.utils import tag2text_transform

        self.transform = tag2text_transform(384)

    @classmethod
    def from_cache(cls, device: str = "cpu") -> Tag2TextTagger:
        """Real weights: ``tag2text_swin_14m`` and ``bert_base_uncased_vocab`` from the manifest."""
        ckpt, vocab = resolve("tag2text_swin_14m"), resolve("bert_base_uncased_vocab")
        return cls(build_tag2text(ckpt, vocab), device, sha256=file_sha256(ckpt))

    @torch.no_grad()
    def tag(self, frames: np.ndarray) -> list[str]:
        import_tag2text()
        from vbench.scene import get_caption

        captions: list[str] = []
        for i in range(0, len(frames), self.batch_size):
            x = torch.stack([self.transform(f) for f in frames[i : i + self.batch_size]])
            captions.extend(get_caption(self.model, x.to(self.device)))
        return captions
