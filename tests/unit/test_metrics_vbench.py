"""VBench dimensions and Tag2Text through vbench 0.1.5's own code, with random weights.

Needs the optional ``vbench`` extra (skipped otherwise; the CI venv installs only ``.[dev]``).
Checkpoints of the real architectures with random weights are written to a temporary
``VBENCH_CACHE_DIR``; nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("vbench", reason="the optional vbench extra is not installed")

from metrics import CATALOG  # noqa: E402
from metrics.backbones import manifest  # noqa: E402
from metrics.scene import SceneConsistency  # noqa: E402
from metrics.vbench_compat import (  # noqa: E402
    Tag2TextTagger,
    bert_tokenizer,
    build_tag2text,
    import_tag2text,
    patch_transformers,
)
from metrics.vbench_dims import REQUIRED, VBenchDimension, weight_files  # noqa: E402
from vqbench.registry import METRICS  # noqa: E402
from vqbench.types import SampleContext, Video  # noqa: E402

DIMS = sorted(REQUIRED)


def _ctx(n: int) -> list[SampleContext]:
    return [SampleContext(f"a red ball number {i}", f"p{i}", i, scene="beach") for i in range(n)]


def _static(t: int = 6, size: int = 128, value: int = 90) -> Video:
    return Video(np.full((t, size, size, 3), value, np.uint8), fps=8.0)


def _moving(t: int = 6, size: int = 128) -> Video:
    rng = np.random.default_rng(1)
    return Video(rng.integers(0, 256, (t, size, size, 3), dtype=np.uint8), fps=8.0)


def _save(obj: object, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def _tiny_clip(embed_dim: int, patch: int) -> dict[str, torch.Tensor]:
    import clip

    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim, 224, 1, 64, patch, 77, 49408, 64, 1, 1)
    return model.state_dict()


HUBCONF = '''
import timm
import torch

URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"


def dino_vitb16(pretrained=True, **kwargs):
    """Test stand-in for DINO's hubconf: a timm ViT, weights through torch.hub's cache."""
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, pretrained=False)
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url(URL, map_location="cpu"))
    return model
'''


@pytest.fixture(scope="module")
def vbench_cache(tmp_path_factory):
    """A VBENCH_CACHE_DIR with random-weight checkpoints for every dimension but ViCLIP."""
    import timm
    import vbench
    from easydict import EasyDict
    from omegaconf import OmegaConf
    from pyiqa.archs.musiq_arch import MUSIQ
    from vbench.third_party.amt.utils.build_utils import build_from_cfg
    from vbench.third_party.RAFT.core.raft import RAFT

    root = tmp_path_factory.mktemp("vbench_cache")
    torch.manual_seed(0)
    _save(_tiny_clip(32, 32), root / "clip_model/ViT-B-32.pt")
    _save(_tiny_clip(768, 14), root / "clip_model/ViT-L-14.pt")
    _save(torch.nn.Linear(768, 1).state_dict(), root / manifest_rel("laion_aesthetic_vit_l14"))
    _save(MUSIQ(pretrained=False).state_dict(), root / manifest_rel("musiq_spaq"))
    amt_cfg = OmegaConf.load(f"{vbench.__path__[0]}/third_party/amt/cfgs/AMT-S.yaml").network
    _save({"state_dict": build_from_cfg(amt_cfg).state_dict()}, root / manifest_rel("amt_s"))
    raft = RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False))
    _save(raft.state_dict(), root / manifest_rel("raft_things"))
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, pretrained=False)
    _save(vit.state_dict(), root / manifest_rel("dino_vitb16"))
    hubconf = root / manifest_rel("dino_hubconf")
    hubconf.parent.mkdir(parents=True, exist_ok=True)
    hubconf.write_text(HUBCONF)
    return root


def manifest_rel(name: str) -> str:
    return str(manifest.MANIFEST[name].vbench_relpath)


@pytest.fixture
def unpinned_clip(monkeypatch):
    """Random CLIP files cannot match OpenAI's published sha256; drop it for the test."""
    for name in ("clip_vit_b32", "clip_vit_l14"):
        b = dataclasses.replace(manifest.MANIFEST[name], sha256=None)
        monkeypatch.setitem(manifest.MANIFEST, name, b)


def test_catalog_registers_every_dimension_lazily():
    for dim in DIMS:
        cls = METRICS.get(f"vbench_{dim}")
        assert CATALOG[cls.name].startswith("metrics.vbench_dims:")
        assert issubclass(cls, VBenchDimension) and cls.dimension == dim
    assert METRICS.get("vbench_overall_consistency").requires == {"prompt"}


def test_missing_weights_name_files_urls_and_location(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        weight_files("aesthetic_quality", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "clip_model/ViT-L-14.pt") in msg and "openaipublic" in msg
    assert "sa_0_4_vit_l_14_linear.pth" in msg and "LAION-AI" in msg
    assert weight_files("temporal_flickering", tmp_path) == []
    m = METRICS.get("vbench_motion_smoothness")(cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="128 px"):
        m.update([_static(size=64)], _ctx(1))


def test_temporal_flickering_through_vbench(tmp_path):
    """No weights: a static video scores 100, a noise video much less."""
    m = METRICS.get("vbench_temporal_flickering")(cache_dir=str(tmp_path))
    m.update([_static(), _moving(), _static(value=30)], _ctx(3))
    r = m.compute()
    assert r.n == 3 and r.per_sample[0] == pytest.approx(100.0)
    assert r.per_sample[2] == pytest.approx(100.0) and r.per_sample[1] < 80.0
    assert r.value == pytest.approx(np.mean(r.per_sample))
    assert r.ci is not None and r.ci[0] <= r.value <= r.ci[1]
    assert r.params["dimension"] == "temporal_flickering" and r.params["mode"] == "custom_input"
    m.reset()
    assert m.files == [] and m._dir is None


@pytest.mark.slow
@pytest.mark.parametrize("dim", [d for d in DIMS if d != "overall_consistency"])
def test_dimension_runs_with_random_weights(dim, vbench_cache, unpinned_clip):
    m = METRICS.get(f"vbench_{dim}")(cache_dir=str(vbench_cache))
    m.update([_static(), _moving()], _ctx(2))
    r = m.compute()
    assert r.n == 2 and len(r.per_sample) == 2 and r.ci is not None
    assert all(math.isfinite(v) for v in r.per_sample) and math.isfinite(r.value)
    assert set(r.params["weights"]) == {manifest.MANIFEST[n].filename for n in REQUIRED[dim]}
    if dim in ("subject_consistency", "background_consistency"):
        assert r.per_sample[0] == pytest.approx(100.0, abs=1e-3)  # identical frames
    if dim == "dynamic_degree":
        assert set(r.per_sample) <= {0.0, 100.0}
    if dim in ("imaging_quality", "aesthetic_quality", "motion_smoothness", "dynamic_degree"):
        assert r.value == pytest.approx(np.mean(r.per_sample), rel=1e-6)


@pytest.mark.slow
def test_overall_consistency_runs_with_random_viclip(tmp_path, vbench_cache, monkeypatch):
    import vbench.utils
    from clip.simple_tokenizer import default_bpe

    bpe = tmp_path / manifest_rel("viclip_bpe")
    bpe.parent.mkdir()
    shutil.copy(default_bpe(), bpe)  # the same BPE file ships inside clip-anytorch
    monkeypatch.setattr(vbench.utils, "CACHE_DIR", str(tmp_path))  # no wget on first import
    from vbench.third_party.ViCLIP.simple_tokenizer import SimpleTokenizer
    from vbench.third_party.ViCLIP.viclip import ViCLIP

    monkeypatch.setattr(SimpleTokenizer.__init__, "__defaults__", (str(bpe),))
    torch.manual_seed(0)
    model = ViCLIP(tokenizer=SimpleTokenizer(str(bpe)), pretrain=None)
    with torch.no_grad():  # ViCLIP leaves these torch.empty (the checkpoint fills them)
        for n, p in model.named_parameters():
            if n.endswith(("positional_embedding", "text_projection", ".proj")):
                p.normal_(std=0.02)
    _save({"model": model.state_dict()}, tmp_path / manifest_rel("viclip_internvid_10m_flt"))
    del model
    # the metric must point ViCLIP's text tokenizer at its own cache dir
    monkeypatch.setattr(SimpleTokenizer.__init__, "__defaults__", ("/nonexistent/bpe.txt.gz",))
    m = METRICS.get("vbench_overall_consistency")(cache_dir=str(tmp_path))
    m.update([_moving(t=8), _static(t=8)], _ctx(2))
    r = m.compute()
    assert r.n == 2 and all(-100.0 <= v <= 100.0 for v in r.per_sample)
    assert r.value == pytest.approx(np.mean(r.per_sample), rel=1e-6)


def _test_vocab(path) -> str:
    """A 30522-entry WordPiece vocab with BERT's special-token ids (the real one is a download)."""
    vocab = [f"tok{i}" for i in range(30522)]
    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    for i, w in {**specials, 1037: "a", 3861: "picture", 1997: "of"}.items():
        vocab[i] = w
    path.write_text("\n".join(vocab) + "\n")
    return str(path)


def test_compat_layer_restores_transformers4_names(tmp_path):
    import transformers.modeling_utils as mu

    patch_transformers()
    for name in ("apply_chunking_to_forward", "prune_linear_layer"):
        assert callable(getattr(mu, name))
    heads, index = mu.find_pruneable_heads_and_indices([1], 3, 2, set())
    assert heads == {1} and index.tolist() == [0, 1, 4, 5]
    t2t = import_tag2text()
    assert hasattr(t2t.BertLMHeadModel, "generate")
    tok = bert_tokenizer(_test_vocab(tmp_path / "vocab.txt"))
    assert tok("a picture of ").input_ids == [101, 1037, 3861, 1997, 102]
    assert tok.convert_ids_to_tokens([tok.bos_token_id, tok.enc_token_id]) == ["[DEC]", "[ENC]"]
    assert len(tok) == 30524  # the size Tag2Text's med_config expects


def test_tag2text_tagger_missing_files_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("VQBENCH_CACHE_DIR", str(tmp_path / "vq"))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vb"))
    with pytest.raises(FileNotFoundError, match="tag2text_swin_14m.pth"):
        SceneConsistency(tagger="tag2text").tagger  # noqa: B018
    ckpt = tmp_path / "vb" / "caption_model" / "tag2text_swin_14m.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"vocab\.txt.*bert-base-uncased"):
        SceneConsistency(tagger="tag2text").tagger  # noqa: B018


@pytest.mark.slow
def test_tag2text_runs_with_random_weights_through_vbench(tmp_path):
    torch.manual_seed(0)
    model = build_tag2text(None, _test_vocab(tmp_path / "vocab.txt"))
    assert type(model).__module__ == "vbench.third_party.tag2Text.tag2text"
    assert model.visual_encoder.num_layers == 4  # Swin-B at 384
    tagger = Tag2TextTagger(model, batch_size=2)
    frames = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    captions = tagger.tag(frames)
    assert len(captions) == 3 and all(isinstance(c, str) and c.strip() for c in captions)
    assert tagger.tag(frames[:1]) == captions[:1]  # deterministic beam search
    m = SceneConsistency(tagger=tagger, frames=2)
    m.update([Video(frames)], _ctx(1))
    r = m.compute()
    assert r.n == 1 and 0.0 <= r.value <= 100.0 and r.params["tagger"] == "tag2text"
