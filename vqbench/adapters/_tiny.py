"""Offline text stack and seeding for the tiny random pipelines.

A WordLevel tokenizer built with ``tokenizers`` and a random ``T5EncoderModel``, both identical
in every process (no hub download), and :func:`seeded` weight initialisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

TINY_SEED = 0
TEXT_DIM = 32

_WORDS = """
a an the and or with of in on at to from into over under near by through across around
along behind above below between while is are its their his her very slowly quickly fast
slow small large big tiny huge bright dark light red green blue yellow orange purple pink
white black gray grey brown gold silver colorful circle square triangle star ball cube box
shape shapes line dot ring moves moving move rotates rotating spins spinning bounces
bouncing falls falling rises rising flies flying runs running walks walking swims swimming
jumps jumping drifts drifting grows shrinks left right up down top bottom center background
foreground scene sky sea ocean water river lake beach sand mountain mountains forest tree
trees grass flower flowers field city street road car cars train boat bird birds fish cat
dog horse person man woman child people crowd house building room window door table night
day sunset sunrise sun moon cloud clouds rain snow fire smoke wind camera view close wide
shot video frame style realistic cinematic cartoon painting high quality detailed beautiful
""".split()


def word_vocab() -> dict[str, int]:
    """The tiny tokenizer's vocabulary: T5 specials first (pad=0, eos=1, unk=2), then words."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in _WORDS:
        vocab.setdefault(w, len(vocab))
    return vocab


def offline_tokenizer(model_max_length: int = 512) -> Any:
    """Word-level T5-style tokenizer: lowercase, whitespace/punctuation split, appends ``</s>``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = word_vocab()
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def tiny_t5(d_model: int = TEXT_DIM) -> Any:
    """A random one-layer ``T5EncoderModel`` matching :func:`offline_tokenizer` (seeded)."""
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=len(word_vocab()),
        d_model=d_model,
        d_ff=2 * d_model,
        d_kv=8,
        num_heads=d_model // 8,
        num_layers=1,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    with seeded(TINY_SEED):
        return T5EncoderModel(cfg).eval()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for random weight init without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_image_vae() -> Any:
    """A seeded random ``AutoencoderKL`` (4 latent channels, 8x spatial compression) for
    the tiny image-VAE pipelines (Latte, AnimateDiff)."""
    from diffusers import AutoencoderKL

    with seeded(0):
        return AutoencoderKL(
            block_out_channels=(8, 8, 16),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=32,
        )
