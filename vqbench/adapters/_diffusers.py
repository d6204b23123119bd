"""Shared machinery of the diffusers adapters (Latte, CogVideoX, Wan).

- offline text stack for tiny pipelines: a WordLevel tokenizer built with ``tokenizers`` and a
  random ``T5EncoderModel``, both identical in every process;
- :class:`DiffusersAdapter`: loading (local directory only), batched deterministic generation,
  trajectory capture through a forward hook on the transformer, the calibration forward, and
  rule-based layer roles and token layouts. Subclasses add the model's call signature,
  geometry and module-name rules; ``Tiny*`` subclasses only override :meth:`build_pipeline`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vqbench.adapters.base import DTYPE_MAP, ModelAdapter
from vqbench.config import GenerationSpec
from vqbench.types import ROLES, CalibrationSet, TokenLayout, Video

logger = logging.getLogger(__name__)

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


def default_model_dir(hub_id: str) -> Path:
    """Where a real pipeline is looked for when no path is given."""
    root = os.environ.get("VQBENCH_CACHE_DIR") or os.path.join("~", ".cache", "vqbench")
    return Path(root).expanduser() / "models" / hub_id.split("/")[-1]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] -> uint8 (clipped, rounded)."""
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def match_rules(name: str, rules: list[tuple[str, Any]]) -> Any:
    """Value of the first fnmatch rule matching ``name``; ``None`` if none does."""
    for pattern, value in rules:
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


class _Recorder:
    """Collects transformer calls during a pipeline run (see :meth:`DiffusersAdapter.capture`)."""

    def __init__(self, every_k: int) -> None:
        self.every_k = every_k
        self.step = 0
        self.call_in_step = 0
        self.sample_ids: list[int] = []
        self.rows: list[dict[str, Any]] = []

    def on_step_end(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.step = i + 1
        self.call_in_step = 0
        return {}


class DiffusersAdapter(ModelAdapter):
    """A diffusers text-to-video pipeline behind the :class:`ModelAdapter` contract."""

    hub_id: str = ""
    pipeline_cls: str = ""  # attribute name in ``diffusers``
    negative_prompt: str = ""
    max_sequence_length: int | None = None  # passed to pipelines that take it
    #: (fnmatch pattern, role) rules over qualified ``nn.Linear`` names, first match wins
    role_rules: list[tuple[str, str]] = []

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self.pipe: Any = None

    # ---- loading ---------------------------------------------------------------------------
    def build_pipeline(self, dtype: torch.dtype) -> Any:
        """Load the real pipeline from a local directory (never downloads)."""
        import diffusers

        path = Path(self.path) if self.path else default_model_dir(self.hub_id)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{self.name}: no diffusers pipeline at {str(path)!r} (model_index.json missing). "
                f"Download the Hugging Face repo {self.hub_id!r}, e.g. `huggingface-cli download "
                f"{self.hub_id} --local-dir {path}`, and pass it as model.path (default location: "
                f"{default_model_dir(self.hub_id)})."
            )
        self.path = str(path)
        cls = getattr(diffusers, self.pipeline_cls)
        return cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)

    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Build or load the pipeline onto ``device`` in ``dtype``."""
        if dtype not in DTYPE_MAP:
            raise ValueError(f"model.dtype: must be one of {sorted(DTYPE_MAP)}, got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = DTYPE_MAP[dtype]
        pipe = self.build_pipeline(self.dtype)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        for component in pipe.components.values():
            if isinstance(component, nn.Module):
                component.eval()
        self.pipe = pipe

    def _pipeline(self) -> Any:
        if self.pipe is None:
            raise RuntimeError(f"{self.name}: call load() first")
        return self.pipe

    def denoiser(self) -> nn.Module:
        return self._pipeline().transformer

    def scheduler_timesteps(self) -> torch.Tensor | None:
        """The pipeline scheduler's timesteps for the current sampling run."""
        return getattr(self._pipeline().scheduler, "timesteps", None)

    def model_info(self) -> dict[str, Any]:
        revision = None
        if self.path and Path(self.path).parent.name == "snapshots":  # an HF cache snapshot
            revision = Path(self.path).name
        return {
            "id": self.hub_id or self.name,
            "name": self.name,
            "path": self.path,
            "revision": revision,
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    # ---- model-specific hooks (subclasses) -------------------------------------------------
    def geometry_kwargs(self, spec: GenerationSpec) -> dict[str, Any]:
        """Pipeline kwargs for frames, height and width."""
        return {"num_frames": spec.frames, "height": spec.height, "width": spec.width}

    def text_seq_len(self) -> int | None:
        """Padded text length passed to the pipeline (``None``: the pipeline's own rule)."""
        return self.max_sequence_length

    def text_groups(self, prompts: list[str], cfg: bool) -> list[tuple[list[int], dict[str, Any]]]:
        """Split a batch into pipeline calls: (indices, text kwargs) per call."""
        kw: dict[str, Any] = {
            "prompt": prompts,
            "negative_prompt": [self.negative_prompt] * len(prompts),
        }
        if self.text_seq_len() is not None:
            kw["max_sequence_length"] = self.text_seq_len()
        return [(list(range(len(prompts))), kw)]

    def row_kinds(self, call_in_step: int, n: int, cfg: bool) -> tuple[list[bool], list[int]]:
        """(is_uncond, sample index in the call) for each batch row of a transformer call.

        Default: CFG batched as ``[uncond, cond]`` in one call (Latte, CogVideoX).
        """
        if not cfg:
            return [False] * n, list(range(n))
        half = n // 2
        return [True] * half + [False] * half, list(range(half)) * 2

    def denoise(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """One denoiser call with the model's signature; returns ``.sample``."""
        raise NotImplementedError

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        """Latent token grid (F, H tokens, W tokens) after VAE compression and patchify."""
        raise NotImplementedError

    def layout_rules(self, spec: GenerationSpec) -> list[tuple[str, TokenLayout]]:
        """(fnmatch pattern, input layout) rules; unmatched linears get ``none``."""
        raise NotImplementedError

    # ---- generation ------------------------------------------------------------------------
    def _run(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        output_type: str,
        on_call: Callable[[list[int]], None] | None = None,
        callback: Callable[..., dict[str, Any]] | None = None,
    ) -> Iterator[tuple[list[int], Any]]:
        """Run the pipeline over batches; yield (global indices, output) per pipeline call."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        pipe = self._pipeline()
        spec = self.resolve(spec)
        cfg = float(spec.guidance) > 1.0
        for start in range(0, len(prompts), spec.batch_size):
            batch = list(range(start, min(start + spec.batch_size, len(prompts))))
            for local, text_kw in self.text_groups([prompts[i] for i in batch], cfg):
                idx = [batch[j] for j in local]
                # CPU generators: the same initial noise on every device
                gens = [torch.Generator().manual_seed(int(seeds[i])) for i in idx]
                if on_call is not None:
                    on_call(idx)
                extra = {"callback_on_step_end": callback} if callback is not None else {}
                out = pipe(
                    **text_kw,
                    **self.geometry_kwargs(spec),
                    **extra,
                    num_inference_steps=int(spec.steps),
                    guidance_scale=float(spec.guidance),
                    generator=gens,
                    output_type=output_type,
                    return_dict=False,
                )[0]
                yield idx, out

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        progress: Callable[[int], None] | None = None,
    ) -> list[Video]:
        """One uint8 video per (prompt, seed); per-sample generators make it batch-independent."""
        fps = float(self.resolve(spec).fps)
        videos: list[Video | None] = [None] * len(prompts)
        with self.announce_steps():
            for idx, frames in self._run(prompts, seeds, spec, "np"):
                frames = np.asarray(frames, dtype=np.float32)  # [B, T, H, W, 3] in [0, 1]
                for j, i in enumerate(idx):
                    videos[i] = Video(to_uint8(frames[j]), fps=fps)
                if progress is not None:
                    progress(len(idx))
        return [v for v in videos if v is not None]

    # ---- calibration -----------------------------------------------------------------------
    def capture(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        every_k_steps: int = 1,
    ) -> CalibrationSet:
        """FP sampling with a forward hook on the transformer; cond and uncond rows per step."""
        if every_k_steps < 1 or not prompts:
            raise ValueError("capture needs at least one prompt and every_k_steps >= 1")
        spec = self.resolve(spec)
        cfg = float(spec.guidance) > 1.0
        rec = _Recorder(every_k_steps)

        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            call = rec.call_in_step
            rec.call_in_step += 1
            if rec.step % rec.every_k:
                return
            # all three pipelines call their transformer with these keyword arguments
            x, t = kwargs["hidden_states"], kwargs["timestep"]
            text = kwargs["encoder_hidden_states"]
            out = output[0] if isinstance(output, tuple) else output.sample
            n = x.shape[0]
            t = t.reshape(-1).expand(n) if t.numel() == 1 else t
            uncond, local = self.row_kinds(call, n, cfg)
            for r in range(n):
                rec.rows.append(
                    {
                        "latents": x[r].detach().float().cpu(),
                        "timesteps": t[r].detach().cpu(),
                        "text": text[r].detach().float().cpu(),
                        "outputs": out[r].detach().float().cpu(),
                        "step_index": rec.step,
                        "prompt_index": rec.sample_ids[local[r]],
                        "is_uncond": uncond[r],
                    }
                )

        def on_call(idx: list[int]) -> None:
            rec.sample_ids, rec.step, rec.call_in_step = idx, 0, 0

        handle = self.denoiser().register_forward_hook(hook, with_kwargs=True)
        try:
            for _ in self._run(prompts, seeds, spec, "latent", on_call, rec.on_step_end):
                pass
        finally:
            handle.remove()
        return self._to_calibration_set(rec.rows, spec, every_k_steps)

    def _to_calibration_set(
        self, rows: list[dict[str, Any]], spec: GenerationSpec, every_k: int
    ) -> CalibrationSet:
        rows = sorted(rows, key=lambda r: (r["prompt_index"], r["step_index"], r["is_uncond"]))
        max_len = max(r["text"].shape[0] for r in rows)
        text = torch.zeros(len(rows), max_len, rows[0]["text"].shape[-1])
        for i, r in enumerate(rows):
            text[i, : r["text"].shape[0]] = r["text"]
        return CalibrationSet(
            latents=torch.stack([r["latents"] for r in rows]),
            timesteps=torch.stack([r["timesteps"] for r in rows]),
            text=text,
            outputs=torch.stack([r["outputs"] for r in rows]),
            step_index=torch.tensor([r["step_index"] for r in rows]),
            prompt_index=torch.tensor([r["prompt_index"] for r in rows]),
            is_uncond=torch.tensor([r["is_uncond"] for r in rows]),
            extra={"text_len": torch.tensor([r["text"].shape[0] for r in rows])},
            meta={
                "model": self.name,
                "steps": int(spec.steps),
                "guidance": float(spec.guidance),
                "every_k_steps": every_k,
                "frames": int(spec.frames),
                "height": int(spec.height),
                "width": int(spec.width),
            },
        )

    def calib_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Denoiser output for a calibration batch, in float32, shaped like ``batch['outputs']``.

        Rows whose text was shorter than the padded width (``text_len``) run with their text
        truncated, exactly as during sampling. Gradients flow (for training-based methods).
        """
        x = batch["latents"].to(self.device, self.dtype)
        t = batch["timesteps"].to(self.device)
        text = batch["text"].to(self.device, self.dtype)
        lens = batch.get("text_len")
        if lens is None or bool((lens == text.shape[1]).all()):
            return self.denoise(x, t, text).float()
        out: torch.Tensor | None = None
        for length in lens.unique().tolist():
            sel = (lens == length).nonzero().flatten().to(self.device)
            y = self.denoise(x[sel], t[sel], text[sel, : int(length)]).float()
            if out is None:
                out = y.new_zeros((x.shape[0], *y.shape[1:]))
            out = out.index_copy(0, sel, y)
        assert out is not None
        return out

    # ---- structure -------------------------------------------------------------------------
    def layer_roles(self) -> dict[str, str]:
        roles: dict[str, str] = {}
        for name, mod in self.denoiser().named_modules():
            if not isinstance(mod, nn.Linear):
                continue
            role = match_rules(name, self.role_rules)
            if role not in ROLES:
                raise RuntimeError(f"{self.name}: no layer role for linear {name!r}")
            roles[name] = role
        return roles

    def token_layouts(self, spec: GenerationSpec) -> dict[str, TokenLayout]:
        rules = self.layout_rules(self.resolve(spec))
        none = TokenLayout("none")
        return {name: match_rules(name, rules) or none for name in self.layer_roles()}
