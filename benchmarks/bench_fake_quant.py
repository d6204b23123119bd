"""Training-time fake quantization: the fused autograd node against the op-by-op chain.

Times forward plus backward of ``fake_quant(..., ste=True)`` (one node, closed-form
gradients; ``quantizers/core/quantizer.py``) against the same formula written as separate
autograd ops (``round_ste``, clamp, shift, scale: what the training loops ran before), on
the mini model's activation shapes (1024 tokens x 192 and x 768) and a weight, with the
step size fixed (activations) or learned (LSQ weights, S2Q-VDiT's clips), and the TQE
branch's broadcast add against its rank-1 GEMM. Prints one JSON line per case with the ISA::

    .venv/bin/python benchmarks/bench_fake_quant.py [--iters 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from isa import isa_line

from quantizers.core.quantizer import fake_quant, qparams_from_range, round_ste, token_range


def chain(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """The op-by-op reference: ``(clamp(round_ste(x / s) + z) - z) * s``."""
    return (torch.clamp(round_ste(x / s) + z, qmin, qmax) - z) * s


def per_call_ms(fn: Callable[[], None], iters: int) -> float:
    """Mean milliseconds of ``fn`` after three warm-up calls."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters * 1e3


def compare(name: str, fused: Callable[[], None], chained: Callable[[], None], iters: int) -> dict:
    """One result line: each side's best of two alternating timings, and their ratio."""
    t_c, t_f = float("inf"), float("inf")
    for _ in range(2):
        t_c = min(t_c, per_call_ms(chained, iters))
        t_f = min(t_f, per_call_ms(fused, iters))
    ms = {"chain_ms": round(t_c, 3), "fused_ms": round(t_f, 3)}
    return {"case": name, **ms, "speedup": round(t_c / t_f, 2)}


def fq_case(shape: tuple[int, int], bits: int, learn_scale: bool, iters: int) -> dict:
    """Fused against chained fake quantization (forward + backward) of one tensor."""
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3).requires_grad_()
    lo, hi = token_range(x.detach())
    s, z = qparams_from_range(lo, hi, bits, False)
    s = s.requires_grad_(learn_scale)
    g = torch.randn(shape)
    qmax = 2**bits - 1

    def fused() -> None:
        fake_quant(x, s, z, bits, False, ste=True).backward(g)

    def chained() -> None:
        chain(x, s, z, 0, qmax).backward(g)

    name = f"fake_quant {shape[0]}x{shape[1]} {bits}-bit" + (", learned s" if learn_scale else "")
    return compare(name, fused, chained, iters)


def tqe_case(tokens: int, width: int, iters: int) -> dict:
    """The TQE branch added to a layer output: broadcast product and sum against addmm."""
    torch.manual_seed(0)
    y = torch.randn(tokens, width, requires_grad=True)
    d = torch.randn(tokens, 1, requires_grad=True)
    beta = torch.randn(width, requires_grad=True)
    g = torch.randn(tokens, width)

    def fused() -> None:
        torch.addmm(y, d, beta.unsqueeze(0)).backward(g)

    def chained() -> None:
        (y + d * beta).backward(g)

    return compare(f"tqe add {tokens}x{width}", fused, chained, iters)


def main() -> None:
    """Print the ISA line, then one line per case."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(isa_line()), flush=True)
    cases = [
        lambda: fq_case((1024, 192), 8, False, args.iters),
        lambda: fq_case((1024, 768), 8, False, args.iters),
        lambda: fq_case((768, 192), 4, True, args.iters),
        lambda: fq_case((1024, 768), 6, True, args.iters),
        lambda: tqe_case(1024, 768, args.iters),
    ]
    for case in cases:
        print(json.dumps(case()), flush=True)


if __name__ == "__main__":
    main()
