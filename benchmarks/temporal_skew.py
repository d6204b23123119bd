"""How skewed are the mini model's temporal features? (QVD's premise for HTDQ.)

QVD motivates HTDQ with temporal features that "exhibit pronounced skewness"
(methods.md §4). Before reading anything into HTDQ on the mini world, this measures the
inputs of every timestep-embedding linear (role ``timestep_embed``) over the default
calibration set (8 ``mini_calib`` prompts, all 20 steps, cond and uncond), for ``mini``
and ``mini-outlier``:

- ``skew_all``: the sample skewness (``scipy.stats.skew``) of all input values;
- ``skew_channel_median`` / ``skew_channel_max``: of the per-channel skewness over the rows
  (absolute values);
- ``kurtosis_all``: excess kurtosis of all values (0 for a Gaussian);
- ``distinct_timesteps_w8`` / ``_w4``: how many of the captured timesteps stay distinct
  after a static per-tensor min-max quantizer of the layer input at 8 and 4 bits (a
  collapsed pair of timesteps is what HTDQ's TDScore guards against).

One JSON line per (model, layer)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/temporal_skew.py
"""

from __future__ import annotations

import json

import numpy as np
import torch
from isa import isa_line
from scipy import stats

from vqbench.config import CalibrationSpec, GenerationSpec
from vqbench.prompts import load_prompts
from vqbench.registry import MODELS


def layer_inputs(model: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Inputs ``[rows, in]`` of each timestep-embedding linear, and each row's timestep."""
    a = MODELS.get(model)()
    a.load("cpu", "float32")
    spec = a.resolve(GenerationSpec())
    cs = CalibrationSpec()
    prompts = [p.text for p in load_prompts(cs.prompts, cs.num_prompts, "calibration.prompts")]
    calib = a.capture(prompts, [cs.seed + i for i in range(len(prompts))], spec, cs.every_k_steps)
    target = a.quant_target(spec)
    names = [n for n, r in target.roles.items() if r == "timestep_embed"]
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def keep(name: str):  # a forward hook storing the layer's input rows
        return lambda _m, args, _o: seen[name].append(args[0].detach().flatten(0, -2))

    hooks = [target.module.get_submodule(n).register_forward_hook(keep(n)) for n in names]
    steps = []
    with torch.no_grad():
        for batch in calib.batches(8):
            target.forward(batch)
            steps.append(batch["timesteps"])
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}, torch.cat(steps)


def distinct_after_quant(x: torch.Tensor, t: torch.Tensor, bits: int) -> tuple[int | None, int]:
    """``(distinct timesteps after min-max quantization, distinct timesteps)``; None for the
    first when the layer does not see one row per sample (no per-timestep row to compare)."""
    if len(x) != len(t):
        return None, int(t.unique().numel())
    lo, hi = float(x.min()), float(x.max())
    scale = max(hi - lo, 1e-12) / (2**bits - 1)
    codes = torch.round((x - lo) / scale)
    per_t = {}
    for row, ts in zip(codes, t.tolist(), strict=True):
        per_t.setdefault(ts, row)
    distinct = {tuple(v.tolist()) for v in per_t.values()}
    return len(distinct), len(per_t)


def main() -> None:
    """Print the ISA line, then one JSON line per model and timestep-embedding layer."""
    print(json.dumps(isa_line()), flush=True)
    for model in ("mini", "mini-outlier"):
        inputs, t = layer_inputs(model)
        for name, x in inputs.items():
            v = x.double().numpy()
            per_channel = np.abs(stats.skew(v, axis=0, nan_policy="omit"))
            per_channel = per_channel[np.isfinite(per_channel)]
            d8, total = distinct_after_quant(x, t, 8)
            d4, _ = distinct_after_quant(x, t, 4)
            line = {
                "model": model,
                "layer": name,
                "rows": int(v.shape[0]),
                "in_features": int(v.shape[1]),
                "skew_all": round(float(stats.skew(v.ravel())), 3),
                "kurtosis_all": round(float(stats.kurtosis(v.ravel())), 3),
                "skew_channel_median": round(float(np.median(per_channel)), 3),
                "skew_channel_max": round(float(per_channel.max()), 3),
                "timesteps": total,
                "distinct_timesteps_w8": d8,
                "distinct_timesteps_w4": d4,
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
