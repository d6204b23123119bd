"""Denoiser-step-like latency of fp32 ``nn.Linear`` vs real W8A8 / W4A8 ``QuantLinear`` on CPU.

The stack is one Latte-size transformer block's linears (q, k, v, o at ``width``, then an MLP
``width -> 4*width -> width``) over ``tokens`` tokens. All ratios come from one run (medians
of ``--iters`` timed calls after a warm-up). Also printed: the bare GEMM (``torch._int_mm``
vs fp32 matmul) and packed weight bytes vs fp16.

    .venv/bin/python benchmarks/bench_kernels.py --tokens 4096 --width 1152
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from isa import isa_line  # sibling script (run as benchmarks/bench_kernels.py)
from torch import nn

from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant
from vqbench.cpu_alloc import keep_heap_memory


def timed(fn: Callable[[], object], iters: int) -> float:
    """Median seconds of ``iters`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_stack(width: int) -> list[nn.Linear]:
    torch.manual_seed(0)
    dims = [(width, width)] * 4 + [(width, 4 * width), (4 * width, width)]
    return [nn.Linear(i, o) for i, o in dims]


def run_stack(layers: list[nn.Module], x: torch.Tensor, width: int) -> None:
    for layer in layers:  # each layer sees an input of its width (no data dependence needed)
        layer(x if layer.in_features == width else x.repeat(1, 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--width", type=int, default=1152)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heap = keep_heap_memory()  # as `vqbench run` does on CPU (VQBENCH_CPU_MALLOC=system: off)
    m, k = args.tokens, args.width
    fp = build_stack(k)
    stacks: dict[str, list[nn.Module]] = {"fp32": fp}
    for w in (8, 4):
        spec = LayerSpec(w, 8, w_symmetric=True)
        stacks[f"W{w}A8 real"] = [
            QuantLinear(li, [QuantVariant(spec, "real", li.weight)]) for li in fp
        ]
    x = torch.randn(m, k)
    backend = stacks["W8A8 real"][0].variants[0].backend
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, tokens {m}, width {k}, "
          f"heap malloc {heap}, kernel backend {backend}, {isa_line()}")  # fmt: skip
    results = {}
    with torch.no_grad():
        for name, layers in stacks.items():
            results[name] = timed(lambda layers=layers: run_stack(layers, x, k), args.iters)
        a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        w8 = torch.randint(-127, 128, (k, k), dtype=torch.int8)
        wf = torch.randn(k, k)
        gemm_fp = timed(lambda: x @ wf, args.iters)
        gemm_int = timed(lambda: torch._int_mm(a8, w8), args.iters)
    base = results["fp32"]
    print(f"{'stack (one block: qkvo + mlp)':32s} {'ms':>9s} {'speed-up vs fp32':>18s}")
    for name, sec in results.items():
        print(f"{name:32s} {sec * 1e3:9.1f} {base / sec:17.2f}x")
    print(
        f"GEMM {m}x{k}x{k}: fp32 {gemm_fp * 1e3:.1f} ms, int8 _int_mm {gemm_int * 1e3:.1f} ms, "
        f"ratio {gemm_fp / gemm_int:.2f}x"
    )
    fp16 = sum(2 * li.in_features * li.out_features for li in fp)
    for w in (8, 4):
        packed = sum(q.memory_bytes() for q in stacks[f"W{w}A8 real"]) - sum(
            li.bias.numel() * 4 for li in fp
        )
        print(f"W{w} packed weight bytes {packed:,} vs fp16 {fp16:,}: {fp16 / packed:.2f}x smaller")


if __name__ == "__main__":
    main()
