"""A tiny 2-block video transformer as a ``QuantTarget``, plus a small ``CalibrationSet``.

Each block has spatial self-attention (frames folded into the batch), temporal
self-attention (spatial positions folded into the batch), cross-attention to text tokens and
an MLP, so every role and token layout of ``vqbench.types`` appears. Widths: hidden 32, MLP
96 and text 24 (not powers of 2, for the block Hadamard).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vqbench.types import CalibrationSet, QuantTarget, TokenLayout

B, FRAMES, TOKENS, C_IN, HIDDEN, TEXT_DIM, TEXT_LEN = 2, 4, 6, 8, 32, 24, 5


class Attention(nn.Module):
    def __init__(self, dim: int, ctx_dim: int | None = None, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(ctx_dim or dim, dim)
        self.v = nn.Linear(ctx_dim or dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        n, l, c = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        h = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(ctx)), split(self.v(ctx)))
        return self.o(h.transpose(1, 2).reshape(n, l, c))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(HIDDEN)
        self.spatial = Attention(HIDDEN)
        self.temporal = Attention(HIDDEN)
        self.cross = Attention(HIDDEN, TEXT_DIM)
        self.fc1 = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.fc2 = nn.Linear(3 * HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor, text: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        b, f, s, c = x.shape
        x = x + temb[:, None, None, :]
        x = x + self.spatial(self.norm(x).reshape(b * f, s, c)).reshape(b, f, s, c)
        xt = self.norm(x).transpose(1, 2).reshape(b * s, f, c)
        x = x + self.temporal(xt).reshape(b, s, f, c).transpose(1, 2)
        x = x + self.cross(self.norm(x).reshape(b, f * s, c), text).reshape(b, f, s, c)
        h = self.norm(x).reshape(b, f * s, c)
        return x + self.fc2(F.gelu(self.fc1(h))).reshape(b, f, s, c)


class TinyVideoDiT(nn.Module):
    """``forward(latents [B, F, S, C_IN], timesteps [B], text [B, L, D]) -> [B, F, S, C_IN]``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(C_IN, HIDDEN)
        self.t_embed = nn.Linear(16, HIDDEN)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.final = nn.Linear(HIDDEN, C_IN)

    def forward(self, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(1000.0) * torch.arange(8) / 8)
        ang = t.float()[:, None] * freqs[None]
        temb = self.t_embed(torch.cat([ang.sin(), ang.cos()], -1))
        x = self.embed(latents)
        for blk in self.blocks:
            x = blk(x, text, temb)
        return self.final(x)


def roles_and_layouts() -> tuple[dict[str, str], dict[str, TokenLayout]]:
    roles = {"embed": "embed", "t_embed": "timestep_embed", "final": "final"}
    layouts = {
        "embed": TokenLayout("none"),
        "t_embed": TokenLayout("none"),
        "final": TokenLayout("none"),
    }
    spatial = TokenLayout("spatial", FRAMES, TOKENS)
    temporal = TokenLayout("temporal", FRAMES, TOKENS)
    joint = TokenLayout("joint", FRAMES, TOKENS)
    for i in range(2):
        p = f"blocks.{i}"
        for attn, role, lay in (
            ("spatial", "spatial_attn", spatial),
            ("temporal", "temporal_attn", temporal),
            ("cross", "cross_attn", joint),
        ):
            for lin in "qkvo":
                roles[f"{p}.{attn}.{lin}"] = role
                text_side = attn == "cross" and lin in "kv"
                layouts[f"{p}.{attn}.{lin}"] = TokenLayout("none") if text_side else lay
        for lin in ("fc1", "fc2"):
            roles[f"{p}.{lin}"] = "mlp"
            layouts[f"{p}.{lin}"] = joint
    return roles, layouts


def build_target(seed: int = 0) -> QuantTarget:
    """A freshly initialised tiny model (same weights for the same seed)."""
    torch.manual_seed(seed)
    model = TinyVideoDiT().eval()
    with torch.no_grad():  # a few outlier input channels, as in real DiT activations
        model.embed.weight[:3] *= 8.0
    roles, layouts = roles_and_layouts()
    return QuantTarget(
        module=model,
        roles=roles,
        layouts=layouts,
        skip=["embed", "t_embed", "final"],
        forward=lambda batch: model(batch["latents"], batch["timesteps"], batch["text"]),
        blocks=["blocks.0", "blocks.1"],
        num_frames=FRAMES,
        name="tiny",
    )


def build_calib(
    num_prompts: int = 2, steps: tuple[int, ...] = (900, 600, 300, 100)
) -> CalibrationSet:
    """Cond and uncond rows for each prompt and step, with the FP model's outputs."""
    g = torch.Generator().manual_seed(1)
    rows = num_prompts * len(steps) * 2
    latents = torch.randn(rows, FRAMES, TOKENS, C_IN, generator=g)
    text = torch.randn(rows, TEXT_LEN, TEXT_DIM, generator=g)
    step_index = torch.arange(len(steps)).repeat_interleave(2).repeat(num_prompts)
    timesteps = torch.tensor(steps, dtype=torch.float32)[step_index]
    prompt_index = torch.arange(num_prompts).repeat_interleave(len(steps) * 2)
    is_uncond = torch.tensor([False, True]).repeat(num_prompts * len(steps))
    model = build_target().module
    with torch.no_grad():
        outputs = model(latents, timesteps, text)
    return CalibrationSet(latents, timesteps, text, outputs, step_index, prompt_index, is_uncond)


@pytest.fixture(scope="session")
def calib() -> CalibrationSet:
    return build_calib()


@pytest.fixture
def make_target() -> Callable[..., QuantTarget]:
    return build_target


@pytest.fixture(scope="session")
def eval_batch(calib: CalibrationSet) -> dict[str, torch.Tensor]:
    return next(calib.batches(4))
