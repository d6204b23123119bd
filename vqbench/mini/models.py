"""Model definitions of the mini world's generator: word tokenizer, text encoder, Latte denoiser.

The text encoder is a word embedding plus a learned positional embedding and a one-layer
transformer (``MiniTextEncoder``), trained jointly with the denoiser. It is a diffusers
``ModelMixin``/``ConfigMixin`` so it round-trips with ``save_pretrained``/``from_pretrained``.
The unconditional input for classifier-free guidance is the empty caption ``""``.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.transformers.latte_transformer_3d import LatteTransformer3DModel
from torch import nn

from vqbench.mini.dataset import ATTRIBUTES

SPECIAL = ("<pad>", "<unk>")
WORDS = ("a", "moving", "in", "the", "and") + tuple(w for v in ATTRIBUTES.values() for w in v)
VOCAB: tuple[str, ...] = SPECIAL + WORDS
CONTEXT = 16


def tokenize(texts: list[str], context: int = CONTEXT) -> torch.Tensor:
    """Word-level token ids ``[B, context]`` (lower-cased, unknown words -> ``<unk>``)."""
    index = {w: i for i, w in enumerate(VOCAB)}
    out = torch.zeros(len(texts), context, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [index.get(w, 1) for w in text.lower().replace(",", " ").split()][:context]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class MiniTextEncoder(ModelMixin, ConfigMixin):
    """Word embedding + positional embedding + a small transformer encoder -> ``[B, L, dim]``."""

    @register_to_config
    def __init__(
        self,
        vocab_size: int = len(VOCAB),
        dim: int = 64,
        layers: int = 1,
        heads: int = 2,
        context: int = CONTEXT,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, context, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` -> hidden states ``[B, L, dim]``."""
        return self.norm(self.encoder(self.embed(ids) + self.pos[:, : ids.shape[1]]))

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Captions -> hidden states (tokenized with :func:`tokenize`)."""
        return self(tokenize(texts, self.config.context).to(self.pos.device))


def build_transformer(
    frames: int = 8,
    size: int = 32,
    patch: int = 4,
    heads: int = 4,
    head_dim: int = 48,
    layers: int = 4,
    text_dim: int = 64,
) -> LatteTransformer3DModel:
    """The pixel-space Latte denoiser (v-prediction; 3 channels in and out)."""
    return LatteTransformer3DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=3,
        out_channels=3,
        num_layers=layers,
        cross_attention_dim=heads * head_dim,
        sample_size=size,
        patch_size=patch,
        activation_fn="gelu-approximate",
        norm_type="ada_norm_single",
        caption_channels=text_dim,
        video_length=frames,
    )
