"""Peer benchmark on CPU: fp32 against every int8 path, same model and input, one process.

Peers, each on a fresh copy of the model (same seed), quantizing the same linears (the
adapter's planned layers; embedders, timestep and output layers stay fp32):

- ``fp32``;
- ``vqbench W8A8 real`` (RTN, dynamic per-token activations; the backend chosen for this CPU,
  named in the output) and ``vqbench W4A8 real``; ``--backends`` adds forced backends and
  ``--op-by-op`` both without the fused element-wise loops (``VQBENCH_FUSED=off``);
- ``torchao int8 dynamic``: ``Int8DynamicActivationInt8WeightConfig`` (if torchao imports);
- ``torch.ao quantize_dynamic``: fbgemm's dynamic int8 linear (per-tensor activations with
  ``reduce_range``, i.e. 7-bit, so its numerics differ from W8A8 per token).

Cases: ``mlp`` (Latte-width MLP, 8192 tokens 1152 -> 4608 -> 1152), ``mini`` (the shipped
mini model, one CFG step) and ``latte`` (Latte-width transformer, 2 block pairs, 8192
tokens; see ``bench_step.py``). Each line has the seconds per call (the fastest of
``--iters`` calls, taken round-robin over the peers after a warm-up, so that load on a
shared machine hits every peer alike; a peer whose warm-up exceeds ``--budget`` seconds is
reported from that one call), the speed-up over fp32 and the relative error of the output
against fp32::

    .venv/bin/python benchmarks/bench_peers.py --iters 3
    .venv/bin/python benchmarks/bench_peers.py --iters 3 --emulate avx2   # see isa.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from bench_step import latte_width_case, mini_case, one_row  # sibling scripts
from isa import emulate, isa_line
from torch import nn

from quantizers.core import fused
from quantizers.core.backends import ENV
from vqbench.cpu_alloc import keep_heap_memory
from vqbench.registry import QUANTIZERS
from vqbench.types import QuantTarget

Case = Callable[[], tuple[QuantTarget, dict[str, torch.Tensor]]]


def mlp_case() -> tuple[QuantTarget, dict[str, torch.Tensor]]:
    """A Latte-width MLP (``fc1 -> gelu(tanh) -> fc2``) on 8192 tokens."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1152, 4608), nn.GELU("tanh"), nn.Linear(4608, 1152)).eval()
    target = QuantTarget(
        module=model,
        roles={"0": "mlp", "2": "mlp"},
        layouts={},
        skip=[],
        forward=lambda b: model(b["latents"]),
    )
    g = torch.Generator().manual_seed(0)
    return target, {"latents": torch.randn(8192, 1152, generator=g)}


def adapter_case(build: Callable) -> Case:
    """A bench_step case (mini or Latte width) as ``(target, batch)``."""

    def make() -> tuple[QuantTarget, dict[str, torch.Tensor]]:
        a, spec, batch = build()
        return a.quant_target(spec), batch

    return make


def planned(target: QuantTarget) -> set[str]:
    """The linears vqbench's RTN quantizes in ``target`` (the peers quantize the same)."""
    plans = QUANTIZERS.get("rtn").from_spec(8, 8).plans(target)
    return {n for n, p in plans.items() if p.spec is not None}


@contextlib.contextmanager
def env(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` inside (nothing when ``value`` is None)."""
    if value is None:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def vqbench_peer(
    w_bits: int, backend: str | None, op_by_op: bool = False
) -> Callable[[QuantTarget, dict], str]:
    """vqbench RTN W{w_bits}A8 real; ``op_by_op``: built and run with ``VQBENCH_FUSED=off``."""
    off = "off" if op_by_op else None

    def apply(target: QuantTarget, batch: dict) -> str:
        with env(ENV, backend), env(fused.ENV, off):
            q = QUANTIZERS.get("rtn").from_spec(w_bits, 8, kernel="real")
            q.quantize(target, q.calibrate(target, one_row_of(batch)))
        if op_by_op:
            forward = target.forward

            def unfused(b: dict) -> torch.Tensor:
                with env(fused.ENV, off):
                    return forward(b)

            target.forward = unfused
        return q.describe()["kernel_backend"]

    return apply


def one_row_of(batch: dict) -> object:
    """RTN needs only the shapes; the MLP case has no adapter batch layout."""
    if "timesteps" in batch:
        return one_row(batch)
    return None


def torchao_peer(target: QuantTarget, batch: dict) -> str:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    names = planned(target)
    quantize_(target.module, Int8DynamicActivationInt8WeightConfig(), lambda m, n: n in names)
    return "torchao (_int_mm)"


def torch_ao_peer(target: QuantTarget, batch: dict) -> str:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(target.module, planned(target), dtype=torch.qint8, inplace=True)
    return f"fbgemm ({torch.backends.quantized.engine} engine, reduce_range)"


def run_case(make: Case, peers: dict[str, Callable | None], iters: int, budget: float) -> list:
    """One row per peer: seconds, calls timed, speed-up over fp32, error vs fp32, backend,
    and the seconds quantizing took (``build_s``: vqbench's first real peer of a process
    includes compiling the fused loops).

    Every peer is built and warmed up first; then the timed calls go round-robin over the
    peers, so a load change on a shared machine hits all of them alike, and each peer's
    fastest call is kept. A peer whose warm-up took over ``budget`` seconds is reported
    from its warm-up alone.
    """
    built, rows, builds = {}, [], {}
    for name, apply in peers.items():
        target, batch = make()
        t0 = time.perf_counter()
        backend = "fp32" if apply is None else apply(target, batch)
        builds[name] = time.perf_counter() - t0
        with torch.no_grad():
            t0 = time.perf_counter()
            out = target.forward(batch).float()
            first = time.perf_counter() - t0
        built[name] = (target, batch, backend, out, [first] if first > budget else [])
    with torch.no_grad():
        for _ in range(iters):
            for target, batch, _b, _o, times in built.values():
                if len(times) == 1 and times[0] > budget:
                    continue
                t0 = time.perf_counter()
                target.forward(batch)
                times.append(time.perf_counter() - t0)
    ref = built["fp32"][3]
    base = min(built["fp32"][4])
    for name, (_t, _b, backend, out, times) in built.items():
        err = float((out - ref).norm() / ref.norm())
        sec = min(times)
        rows.append(dict(peer=name, s=round(sec, 4), calls=len(times),
                         speedup=round(base / sec, 2), rel_err_vs_fp32=round(err, 4),
                         backend=backend, build_s=round(builds[name], 2)))  # fmt: skip
        print("  " + json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    """Print the ISA line, then one JSON line per (case, peer), then a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=["mlp", "mini", "latte"])
    ap.add_argument("--backends", nargs="*", default=[], help="forced vqbench backends to add")
    ap.add_argument("--skip", nargs="*", default=[], help="peers to leave out, e.g. torchao")
    ap.add_argument(
        "--op-by-op", action="store_true", help="add vqbench W8A8/W4A8 with VQBENCH_FUSED=off"
    )
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--emulate", choices=["avx2"], default=None)
    args = ap.parse_args()
    emulate(args.emulate)
    if args.threads:
        torch.set_num_threads(args.threads)
    heap = keep_heap_memory()
    peers: dict[str, Callable | None] = {"fp32": None}
    peers["vqbench W8A8 real"] = vqbench_peer(8, None)
    peers["vqbench W4A8 real"] = vqbench_peer(4, None)
    for b in args.backends:
        peers[f"vqbench W8A8 real [{b}]"] = vqbench_peer(8, b)
    if args.op_by_op:
        for bits in (8, 4):
            peers[f"vqbench W{bits}A8 real [op by op]"] = vqbench_peer(bits, None, True)
    try:
        import torchao  # noqa: F401

        peers["torchao int8 dynamic"] = torchao_peer
    except ImportError:
        print("torchao not installed: its peer is left out")
    peers["torch.ao quantize_dynamic"] = torch_ao_peer
    peers = {k: v for k, v in peers.items() if not any(s in k for s in args.skip)}
    cases: dict[str, Case] = {
        "mlp": mlp_case,
        "mini": adapter_case(mini_case),
        "latte": adapter_case(lambda: latte_width_case(2)),
    }
    head = {**isa_line(), "torch": torch.__version__, "iters": args.iters, "heap_malloc": heap}
    print(json.dumps(head), flush=True)
    summary = {}
    for name in args.cases:
        print(f"{name}:", flush=True)
        rows = run_case(cases[name], peers, args.iters, args.budget)
        summary[name] = {r["peer"]: r["speedup"] for r in rows}
    print(json.dumps({"speedup_vs_fp32": summary, **head}))


if __name__ == "__main__":
    main()
