"""``MiniOutlierAdapter``: the mini generator, exactly reparametrised to carry channel outliers.

Real video DiTs have a few input channels of their linears whose magnitude is 10-100x the
typical channel's, varying with the timestep; the mini generator (trained briefly, small)
has none (per-channel max/median about 3). This adapter loads the shipped mini weights and
applies a function-preserving per-channel rescaling in float32, so FP outputs equal mini's
within float rounding while the quantized linears see realistic outlier channels:

- adaLN-single modulation: the modulated norm ``m = norm(x) * (1 + scale) + shift`` read by
  ``attn1.to_q/to_k/to_v`` (``s_msa``) and ``ff.net.0.proj`` (``s_mlp``) becomes ``s * m``:
  ``s`` folds into the shift/scale rows of the shared timestep linear
  ``adaln_single.linear`` and each block's ``scale_shift_table``
  (``table_shift -> s * table_shift``, ``table_scale -> s * (1 + table_scale) - 1``), and
  ``1 / s`` into the input columns of the linears that read ``m``. The timestep linear is
  shared by all blocks, so ``s_msa`` and ``s_mlp`` are the same in every block (like the
  persistent outlier channels of real transformers). The modulation varies with ``t``, so
  the outliers' magnitude does too, as the model's own modulation makes it.
- value/out pairs (``attn1`` and ``attn2`` of every block, own scales per attention): the
  output rows of ``to_v`` scale by ``s`` and the input columns of ``to_out.0`` by ``1 / s``;
  exact because attention mixes value rows with weights shared by every channel of a head.
- ``attn2.to_q`` reads the unnormalised residual stream (ada_norm_single applies no norm
  before cross-attention) and ``proj_out`` reads a modulation without a linear, so neither
  is folded.

The profile (which channels, how large) is :class:`OutlierProfile`; the model id is
``mini-outlier`` and the revision a digest of mini's revision and the profile, so caches and
reports never mix it with ``mini``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from vqbench.adapters.base import DTYPE_MAP
from vqbench.adapters.mini import MiniAdapter


@dataclass(frozen=True)
class OutlierProfile:
    """Per fold: ``channels`` random channels get scales log-uniform in ``[low, high]``.

    The defaults are this repository's choice (not a paper's numbers), set so that the
    folded linears' per-channel max/median of ``|x|`` lands in the 10-100x range reported
    for real transformers' outlier channels (see ``vqbench/mini/README.md``).
    """

    seed: int = 0
    channels: int = 4
    low: float = 8.0
    high: float = 32.0
    version: int = 1

    def scales(self, dim: int, stream: int) -> torch.Tensor:
        """Deterministic float32 scales ``[dim]`` of fold number ``stream`` (1 elsewhere)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + stream)
        idx = torch.randperm(dim, generator=g)[: self.channels]
        u = torch.rand(self.channels, generator=g, dtype=torch.float64)
        mag = torch.exp(
            torch.log(torch.tensor(self.low, dtype=torch.float64))
            + u * torch.log(torch.tensor(self.high / self.low, dtype=torch.float64))
        )
        s = torch.ones(dim, dtype=torch.float64)
        s[idx] = mag
        return s.float()


def _scale_cols(lin: nn.Linear, inv: torch.Tensor) -> None:
    lin.weight.mul_(inv.to(lin.weight)[None, :])


def _scale_rows(lin: nn.Linear, s: torch.Tensor, rows: slice | None = None) -> None:
    rows = rows or slice(None)
    lin.weight[rows].mul_(s.to(lin.weight)[:, None])
    if lin.bias is not None:
        lin.bias[rows].mul_(s.to(lin.bias))


@torch.no_grad()
def fold_modulation(transformer: nn.Module, s_msa: torch.Tensor, s_mlp: torch.Tensor) -> None:
    """Scale the modulated inputs of ``attn1`` q/k/v by ``s_msa`` and of ``ff`` by ``s_mlp``."""
    dim = s_msa.numel()
    lin = transformer.adaln_single.linear
    blocks = list(transformer.transformer_blocks) + list(transformer.temporal_transformer_blocks)
    # modulation slots: 0 shift_msa, 1 scale_msa, 2 gate_msa, 3 shift_mlp, 4 scale_mlp, 5 gate
    for shift, scale, s in ((0, 1, s_msa), (3, 4, s_mlp)):
        for k in (shift, scale):
            _scale_rows(lin, s, slice(k * dim, (k + 1) * dim))
        for b in blocks:
            table = b.scale_shift_table
            table[shift].mul_(s.to(table))
            table[scale].copy_(s.to(table) * (1 + table[scale]) - 1)
    for b in blocks:
        for name in ("to_q", "to_k", "to_v"):
            _scale_cols(getattr(b.attn1, name), 1 / s_msa)
        _scale_cols(b.ff.net[0].proj, 1 / s_mlp)


@torch.no_grad()
def fold_values(attn: nn.Module, s: torch.Tensor) -> None:
    """Scale the value channels of ``attn`` by ``s`` and undo it in ``to_out.0``."""
    _scale_rows(attn.to_v, s)
    _scale_cols(attn.to_out[0], 1 / s)


def folded_linears(transformer: nn.Module) -> list[str]:
    """Names of the linears whose inputs carry the outlier channels."""
    out = []
    for prefix, blocks in (
        ("transformer_blocks", transformer.transformer_blocks),
        ("temporal_transformer_blocks", transformer.temporal_transformer_blocks),
    ):
        for i, b in enumerate(blocks):
            p = f"{prefix}.{i}"
            out += [f"{p}.attn1.{n}" for n in ("to_q", "to_k", "to_v", "to_out.0")]
            out.append(f"{p}.ff.net.0.proj")
            if getattr(b, "attn2", None) is not None:
                out.append(f"{p}.attn2.to_out.0")
    return out


def reparametrise(transformer: nn.Module, profile: OutlierProfile) -> None:
    """Apply the profile's exact rescaling to a float32 Latte transformer, in place."""
    if next(transformer.parameters()).dtype != torch.float32:
        raise ValueError("reparametrise: fold in float32 (load the transformer as float32)")
    dim = transformer.adaln_single.linear.out_features // 6
    fold_modulation(transformer, profile.scales(dim, 0), profile.scales(dim, 1))
    stream = 2
    blocks = list(transformer.transformer_blocks) + list(transformer.temporal_transformer_blocks)
    for b in blocks:
        for attn in (b.attn1, getattr(b, "attn2", None)):
            if attn is not None:
                fold_values(attn, profile.scales(attn.to_v.out_features, stream))
                stream += 1


class MiniOutlierAdapter(MiniAdapter):
    """The mini generator with realistic channel outliers (same FP function, see module doc)."""

    name = "mini-outlier"
    profile = OutlierProfile()

    def load(self, device: str = "cpu", dtype: str = "float32") -> None:
        """Load mini's weights in float32, reparametrise, then move to ``dtype``."""
        super().load(device, "float32")
        reparametrise(self.transformer, self.profile)
        self.dtype = DTYPE_MAP[dtype]
        if self.dtype != torch.float32:
            self.transformer.to(self.dtype)

    def model_info(self) -> dict[str, Any]:
        """Id ``mini-outlier`` (or ``<base id>-outlier``); revision from base and profile."""
        info = super().model_info()
        base = {"id": info["id"], "revision": info["revision"]}
        profile = asdict(self.profile)
        blob = json.dumps({"base": base, "profile": profile}, sort_keys=True)
        info.update(
            id=f"{base['id']}-outlier",
            revision=hashlib.sha256(blob.encode()).hexdigest(),
            base_model=base,
            reparametrisation={"kind": "channel-outlier fold", **profile},
        )
        return info
