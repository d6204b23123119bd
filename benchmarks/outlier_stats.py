"""Channel outliers at the linear inputs: per-channel max|x| over max/median, per linear.

For every ``nn.Linear`` of the denoiser, FP sampling of a few prompts records each input
channel's max ``|x|`` over all tokens and steps; the linear's outlier ratio is the largest
channel max over the median channel max. The table gives the median, 90th percentile and
max of that ratio over the linears (all, and the ones ``mini-outlier`` folds), and the same
median computed on the first and on the second half of the sampling steps (high noise,
low noise) to show how the outliers move with the timestep::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/outlier_stats.py --models mini mini-outlier
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from vqbench.adapters import adapter_class
from vqbench.adapters.mini_outlier import folded_linears
from vqbench.config import GenerationSpec
from vqbench.prompts import load_prompts


def channel_maxima(
    model: str, texts: list[str], steps: int
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Linear name -> ``[steps, in_features]`` per-channel max|x| of FP sampling, and the
    names of the linears that ``mini-outlier`` folds."""
    adapter = adapter_class(model)()
    adapter.load("cpu", "float32")
    den = adapter.denoiser()
    step = {"i": -1}
    stats: dict[str, torch.Tensor] = {}

    def count(*_: object) -> None:
        step["i"] += 1

    def record(name: str):
        def hook(mod: nn.Module, args: tuple) -> None:
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
            row = stats.setdefault(name, torch.zeros(steps, x.numel()))
            row[step["i"] % steps] = torch.maximum(row[step["i"] % steps], x)

        return hook

    handles = [den.register_forward_pre_hook(count)]
    handles += [
        m.register_forward_pre_hook(record(n))
        for n, m in den.named_modules()
        if isinstance(m, nn.Linear)
    ]
    adapter.generate(texts, [0] * len(texts), GenerationSpec(steps=steps, batch_size=len(texts)))
    for h in handles:
        h.remove()
    return stats, folded_linears(den)


def ratio(m: torch.Tensor) -> float:
    """Largest channel max over the median channel max of one linear."""
    return float(m.max() / m.median().clamp_min(1e-12))


def summary(stats: dict[str, torch.Tensor], names: list[str]) -> dict[str, float]:
    """Median / p90 / max of the ratio over ``names``; medians on each half of the steps."""
    whole = np.array([ratio(stats[n].amax(0)) for n in names])
    h = next(iter(stats.values())).shape[0] // 2
    early = np.median([ratio(stats[n][:h].amax(0)) for n in names])
    late = np.median([ratio(stats[n][h:].amax(0)) for n in names])
    return {
        "n": len(names),
        "median": float(np.median(whole)),
        "p90": float(np.percentile(whole, 90)),
        "max": float(whole.max()),
        "median_high_noise": float(early),
        "median_low_noise": float(late),
    }


def main() -> None:
    """Print the outlier-ratio table for each model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mini", "mini-outlier"])
    ap.add_argument("--prompts", default="mini_quick")
    ap.add_argument("--n", type=int, default=4, help="first n prompts of the suite")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    texts = [p.text for p in load_prompts(args.prompts)[: args.n]]
    cols = ["n", "median", "p90", "max", "median_high_noise", "median_low_noise"]
    print(f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}")
    print("| model | linears | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for model in args.models:
        stats, folded = channel_maxima(model, texts, args.steps)
        groups = {"all": list(stats), "folded": folded}
        groups["other"] = [n for n in stats if n not in set(folded)]
        for group, names in groups.items():
            s = summary(stats, names)
            cells = [f"{s['n']}"] + [f"{s[c]:.1f}" for c in cols[1:]]
            print(f"| {model} | {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
