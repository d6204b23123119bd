"""``MiniAdapter``: the mini world's trained pixel-space Latte text-to-video model.

Layer names follow diffusers' ``LatteTransformer3DModel``: ``transformer_blocks.i`` are the
spatial blocks (``attn1`` self-attention over the tokens of one frame, ``attn2``
cross-attention to the caption, ``ff`` MLP), ``temporal_transformer_blocks.i`` the temporal
blocks (``attn1`` over the frames of one spatial position, ``ff``); ``adaln_single`` embeds
the timestep, ``caption_projection`` the caption, ``proj_out`` is the final layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqbench.adapters.base import DTYPE_MAP, ModelAdapter, match_rules
from vqbench.adapters.identity import ModelPathError, identity
from vqbench.adapters.latte import LATTE_ROLE_RULES
from vqbench.config import GenerationSpec
from vqbench.types import CalibrationSet, SampleContext, TokenLayout, Video

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "mini" / "assets" / "generator"


class MiniAdapter(ModelAdapter):
    """The embedded mini-world generator: CFG sampling with DDIM in pixel space on [-1, 1]."""

    name = "mini"
    _digests: dict[str, str] = {}
    defaults: dict[str, Any] = {
        "steps": 20,
        "guidance": 1.5,
        "frames": 8,
        "height": 32,
        "width": 32,
        "fps": 8.0,
    }

    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Load transformer, text encoder and scheduler from ``self.path`` (default: assets)."""
        from diffusers import DDIMScheduler
        from diffusers.models.transformers.latte_transformer_3d import LatteTransformer3DModel

        from vqbench.mini.assets import verify_generator
        from vqbench.mini.models import MiniTextEncoder

        path = Path(self.path) if self.path else DEFAULT_PATH
        if not (path / "transformer").is_dir():
            raise ModelPathError(
                f"model.path: no mini generator under {path} (transformer/ missing); "
                "omit model.path for the shipped one"
            )
        self._digests = verify_generator(path)
        self.device, self.dtype = torch.device(device), DTYPE_MAP[dtype]
        self.transformer = (
            LatteTransformer3DModel.from_pretrained(path / "transformer", torch_dtype=self.dtype)
            .to(self.device)
            .eval()
        )
        self.text_encoder = (
            MiniTextEncoder.from_pretrained(path / "text_encoder", torch_dtype=torch.float32)
            .to(self.device)
            .eval()
        )
        self.scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        self.path = str(path)

    def denoiser(self) -> nn.Module:
        """The Latte transformer."""
        return self.transformer

    def spec_problems(self, spec: GenerationSpec) -> list[str]:
        """The mini generator samples only its trained geometry (frames, height, width)."""
        import json

        path = Path(self.path) if self.path else DEFAULT_PATH
        try:
            cfg = json.loads((path / "transformer" / "config.json").read_text())
        except (OSError, ValueError):
            return []  # a missing or broken folder is reported where it is loaded
        want = {"frames": cfg["video_length"], "height": cfg["sample_size"]}
        want["width"] = cfg["sample_size"]
        return [
            f"generation.{k}: the mini generator was trained on {v}, got {getattr(spec, k)}"
            for k, v in want.items()
            if getattr(spec, k) != v
        ]

    def metric_defaults(self) -> dict[str, dict[str, Any]]:
        """The mini world's own evaluators: mini CLIP, tagger and I3D-style detector."""
        fvd = {"detector": "mini", "frames": 8, "resolution": 32}
        return {
            "fvd": fvd,
            "fvd_fp": fvd,
            "clipsim": {"backbone": "mini"},
            "clipsim_evalcrafter": {"backbone": "mini"},
            "clip_temp": {"backbone": "mini"},
            "scene_consistency": {"tagger": "mini", "frames": None},
        }

    def has_reference_videos(self, samples: list[Any]) -> bool:
        """The world renders real videos of prompts that carry its attributes (mini suites)."""
        return all(s.attributes for s in samples)

    def reference_videos(self, samples: list[SampleContext]) -> list[Video] | None:
        """Real videos of the sampled prompts, rendered with reference seeds (one per sample)."""
        from vqbench.mini.dataset import EVAL_SEED_BASE, render

        if not self.has_reference_videos(samples):
            return None  # prompts without world attributes (not a mini suite)
        return [render(s.attributes, EVAL_SEED_BASE + 1000 + s.seed) for s in samples]

    def scheduler_timesteps(self) -> torch.Tensor | None:
        """The DDIM timesteps of the current sampling run."""
        return self.scheduler.timesteps

    # ---- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self.text_encoder.encode(prompts).to(self.dtype)
        uncond = self.text_encoder.encode([""] * len(prompts)).to(self.dtype)
        return cond, uncond

    def _noise(self, seeds: list[int], spec: GenerationSpec) -> torch.Tensor:
        shape = (3, spec.frames, spec.height, spec.width)
        return torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        ).to(self.device, self.dtype)

    @torch.no_grad()
    def _sample(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        on_call: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """DDIM with CFG for one batch; returns ``[B, 3, F, H, W]`` in [0, 1]."""
        cond, uncond = self._encode(prompts)
        text = torch.cat([uncond, cond])
        x = self._noise(seeds, spec)
        self.scheduler.set_timesteps(int(spec.steps))
        for i, t in enumerate(self.scheduler.timesteps):
            xin = torch.cat([x, x])
            tt = torch.full((xin.shape[0],), int(t), dtype=torch.long, device=self.device)
            out = self.transformer(xin, timestep=tt, encoder_hidden_states=text).sample
            if on_call is not None:
                on_call(i, xin, tt, out)
            v_u, v_c = out.float().chunk(2)
            v = v_u + float(spec.guidance) * (v_c - v_u)
            x = self.scheduler.step(v, t, x.float()).prev_sample.to(self.dtype)
        return ((x.float().clamp(-1, 1) + 1) / 2).cpu()

    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        progress: Callable[[int], None] | None = None,
        images: list[str | None] | None = None,
    ) -> list[Video]:
        """One video per ``(prompt, seed)``; the initial noise comes from the seed alone."""
        spec = self.resolve(spec)
        videos: list[Video] = []
        bs = max(1, int(spec.batch_size))
        for i in range(0, len(prompts), bs):
            with self.announce_steps():
                x = self._sample(prompts[i : i + bs], seeds[i : i + bs], spec)
            for v in x:
                videos.append(Video.from_tensor(v.permute(1, 0, 2, 3), fps=float(spec.fps)))
                if progress is not None:
                    progress(1)
        return videos

    def capture(
        self,
        prompts: list[str],
        seeds: list[int],
        spec: GenerationSpec,
        every_k_steps: int = 1,
        images: list[str | None] | None = None,
    ) -> CalibrationSet:
        """FP sampling that records every k-th step's denoiser call, uncond and cond rows."""
        spec = self.resolve(spec)
        rows: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("x", "t", "text", "out", "s", "p", "u")
        }
        bs = max(1, int(spec.batch_size))
        for i in range(0, len(prompts), bs):
            n = len(prompts[i : i + bs])
            idx = torch.arange(i, i + n)
            cond, uncond = self._encode(prompts[i : i + bs])
            text = torch.cat([uncond, cond]).float().cpu()

            def record(step: int, xin, tt, out, idx=idx, text=text, n=n) -> None:
                if step % every_k_steps:
                    return
                rows["x"].append(xin.float().cpu())
                rows["t"].append(tt.cpu())
                rows["text"].append(text)
                rows["out"].append(out.float().cpu())
                rows["s"].append(torch.full((2 * n,), step, dtype=torch.long))
                rows["p"].append(torch.cat([idx, idx]))
                rows["u"].append(torch.cat([torch.ones(n), torch.zeros(n)]).bool())

            self._sample(prompts[i : i + bs], seeds[i : i + bs], spec, on_call=record)
        return CalibrationSet(
            latents=torch.cat(rows["x"]),
            timesteps=torch.cat(rows["t"]),
            text=torch.cat(rows["text"]),
            outputs=torch.cat(rows["out"]),
            step_index=torch.cat(rows["s"]),
            prompt_index=torch.cat(rows["p"]),
            is_uncond=torch.cat(rows["u"]),
            meta={
                "model": self.name,
                "steps": spec.steps,
                "guidance": spec.guidance,
                "every_k_steps": every_k_steps,
                "prompts": list(prompts),
                "seeds": list(seeds),
            },
        )

    def calib_forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Denoiser output for a calibration batch (in the model's device and dtype)."""
        out = self.transformer(
            batch["latents"].to(self.device, self.dtype),
            timestep=batch["timesteps"].to(self.device),
            encoder_hidden_states=batch["text"].to(self.device, self.dtype),
        ).sample
        return out.float()

    # ---- structure ------------------------------------------------------------------------------
    def layer_roles(self) -> dict[str, str]:
        """Role of every ``nn.Linear`` by its Latte name (the Latte adapter's rules)."""
        roles: dict[str, str] = {}
        for name, mod in self.transformer.named_modules():
            if isinstance(mod, nn.Linear):
                role = match_rules(name, LATTE_ROLE_RULES)
                if role is None:
                    raise ValueError(f"MiniAdapter: no role for linear layer {name!r}")
                roles[name] = role
        return roles

    def latent_grid(self, spec: GenerationSpec) -> tuple[int, int, int]:
        """Pixel-space tokens: (frames, H / patch, W / patch)."""
        spec = self.resolve(spec)
        patch = int(self.transformer.config.patch_size)
        return int(spec.frames), int(spec.height) // patch, int(spec.width) // patch

    def token_layouts(self, spec: GenerationSpec) -> dict[str, TokenLayout]:
        """Input layout of every linear: spatial ``[B*F, S]``, temporal ``[B*S, F]`` or none."""
        f, h, w = self.latent_grid(spec)
        s = h * w
        spatial = TokenLayout("spatial", frames=f, tokens_per_frame=s)
        temporal = TokenLayout("temporal", frames=f, tokens_per_frame=s)
        none = TokenLayout("none")
        out: dict[str, TokenLayout] = {}
        for name, role in self.layer_roles().items():
            if role in ("timestep_embed", "embed"):
                out[name] = none
            elif role == "cross_attn" and (".to_k" in name or ".to_v" in name):
                out[name] = none
            elif name.startswith("temporal_transformer_blocks."):
                out[name] = temporal
            else:
                out[name] = spatial
        return out

    def blocks(self) -> list[str]:
        """Spatial and temporal blocks interleaved in execution order."""
        n = len(self.transformer.transformer_blocks)
        return [
            b
            for i in range(n)
            for b in (f"transformer_blocks.{i}", f"temporal_transformer_blocks.{i}")
        ]

    def model_info(self) -> dict[str, Any]:
        """Identity; revision: the transformer weights' sha256.

        The shipped generator keeps the id ``mini`` (the committed baselines group by it);
        other weights get an id from class, configs and weights.
        """
        info = super().model_info()
        if self._digests:
            from vqbench.mini.assets import shipped_generator_digests

            shipped = self._digests == shipped_generator_digests()
            model_id = "mini" if shipped else identity(info["class_name"], self._digests)[0]
            weights = "transformer/diffusion_pytorch_model.safetensors"
            info.update(id=model_id, revision=self._digests.get(weights))
        return info
