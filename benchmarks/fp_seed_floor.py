"""How far the FP model is from itself under another seed: a noise scale for FVD against FP.

FVD against FP of the FP model is 0 by construction, so "within noise of FP" needs a yardstick.
This script generates the sweep's prompts with the FP mini model at two seeds and scores the
second seed's videos against the first seed's, with the same fidelity metrics a quantized
setting gets (``fvd_fp``, ``psnr_fp``): how much sampling noise alone moves them::

    .venv/bin/python benchmarks/fp_seed_floor.py --prompts mini_quick --seeds 0 1
"""

from __future__ import annotations

import argparse
import json

from vqbench.adapters.mini import MiniAdapter
from vqbench.config import GenerationSpec
from vqbench.prompts import load_prompts
from vqbench.registry import METRICS
from vqbench.types import SampleContext


def main() -> None:
    """Print ``fvd_fp`` and ``psnr_fp`` of seed ``b``'s FP videos against seed ``a``'s."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", default="mini_quick")
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 1])
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    adapter = MiniAdapter()
    adapter.load("cpu", "float32")
    prompts = load_prompts(args.prompts)
    spec = GenerationSpec(batch_size=args.batch_size)
    texts = [p.text for p in prompts]
    ref, other = (adapter.generate(texts, [s] * len(texts), spec) for s in args.seeds)
    ctx = [
        SampleContext(p.text, p.id, args.seeds[1], scene=p.scene, fp_video=v)
        for p, v in zip(prompts, ref, strict=True)
    ]
    defaults = adapter.metric_defaults()
    out = {"prompts": args.prompts, "n": len(prompts), "seeds": args.seeds}
    for name in ("fvd_fp", "psnr_fp"):
        metric = METRICS.get(name)(**defaults.get(name, {}))
        metric.update(other, ctx)
        res = metric.compute()
        out[name] = {"value": res.value, "ci": res.ci}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
