"""QVD (reconstructed): HTDQ for timestep features + SCRI for channel ranges, on an RTN base.

Base (methods.md §4.5, cheapened): per-channel weights rounded by GPTQ (standing in for
AdaRound), MSE-clipped or min-max; static per-tensor (default) or dynamic per-token
activations. One calibration pass, split into two halves by prompt, collects per-channel
input ranges of every quantized linear (per time range and half) for SCRI and the static
ranges, a row sample for SCRI's alpha search (scored across halves), the GPTQ Hessians, and
one input row per distinct timestep of every timestep-embedding linear (role
``timestep_embed``) for HTDQ.

Adapters keep ``timestep_embed`` layers in FP by default (``target.skip``), and the
registry-wide contract respects that; ``quantize_timestep: true`` quantizes them with
HTDQ, as QVD does. ``htdq: finite_set`` instead keeps them FP with per-step cached outputs.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass

import torch
from torch import nn

from quantizers.core.base import BaseQuantizer, QuantConfig
from quantizers.core.calib import HessianSum, run_calibration
from quantizers.core.gptq import gptq_quantize
from quantizers.core.linear import LayerSpec, QuantLinear, QuantVariant, QWeight, quantize_weight
from quantizers.core.observers import MinMaxObserver, time_range_edges
from quantizers.core.policy import LayerPlan, resolve_plans
from quantizers.core.quantizer import mse_clip_search
from quantizers.gptq.gptq import stored_qweight
from quantizers.qvd.folds import merge_ranges, prompt_folds, spread, subsample_rows
from quantizers.qvd.htdq import FiniteSetLinear, htdq_search
from quantizers.qvd.scri import SCRILinear, fold, scri_params, search_alpha
from vqbench.types import CalibrationSet, QuantState, QuantTarget, match_any

logger = logging.getLogger(__name__)
TIMESTEP = "timestep_embed"
ACT_MODES = ("static", "dynamic")
HTDQ_MODES = ("search", "minmax", "finite_set")
WEIGHT_MODES = ("gptq", "mse", "minmax")


@dataclass(frozen=True)
class QVDConfig(QuantConfig):
    """QVD settings.

    ``act``: ``static`` per-tensor or ``dynamic`` per-token activations (base layers);
    ``weights``: per-channel weight rounding, ``gptq`` (Hessian error feedback on the
    SCRI-scaled weight), ``mse`` (per-row clip search) or ``minmax``; ``gptq_damp``: GPTQ
    dampening; ``htdq``: ``search`` (TDScore range search),
    ``minmax`` (ablation) or ``finite_set`` (FP outputs cached per step, upper bound);
    ``quantize_timestep``: quantize the timestep-embedding layers the adapter keeps in FP;
    ``htdq_grid``/``htdq_tol``/``htdq_max_rows``/``htdq_mse_weight``: quantile candidates
    per side, tie tolerance, timesteps scored, weight of the relative output MSE
    subtracted from TDScore (0 = pure TDScore with MSE tie-break); ``scri``: on/off;
    ``scri_alphas``: scale strengths searched per layer (one value = fixed, 0 = shift
    only); ``scri_time_ranges``: SCRI and static-range statistics per equal-width timestep
    range; ``scri_rows``: rows per layer for the alpha search.
    """

    act: str = "static"
    version: str = "2"  # 2: SCRI bias from the quantized weight, held-out alpha, GPTQ base
    weights: str = "gptq"
    gptq_damp: float = 0.01
    htdq: str = "search"
    quantize_timestep: bool = False
    htdq_grid: int = 8
    htdq_tol: float = 0.01
    htdq_max_rows: int = 64
    htdq_mse_weight: float = 1.0
    scri: bool = True
    scri_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    scri_time_ranges: int = 1
    scri_rows: int = 256

    def __post_init__(self) -> None:
        if self.act not in ACT_MODES:
            raise ValueError(f"act: must be one of {ACT_MODES}, got {self.act!r}")
        if self.weights not in WEIGHT_MODES:
            raise ValueError(f"weights: must be one of {WEIGHT_MODES}, got {self.weights!r}")
        if not 0 <= self.gptq_damp < 1:
            raise ValueError(f"gptq_damp: must be in [0, 1), got {self.gptq_damp}")
        if self.htdq not in HTDQ_MODES:
            raise ValueError(f"htdq: must be one of {HTDQ_MODES}, got {self.htdq!r}")
        if min(self.htdq_grid, self.htdq_max_rows, self.scri_time_ranges, self.scri_rows) < 1:
            raise ValueError("htdq_grid, htdq_max_rows, scri_time_ranges, scri_rows: must be >= 1")
        if self.htdq_tol < 0 or self.htdq_mse_weight < 0:
            raise ValueError("htdq_tol, htdq_mse_weight: must be >= 0")
        if not self.scri_alphas or not all(0 <= a <= 1 for a in self.scri_alphas):
            raise ValueError("scri_alphas: needs at least one value, each in [0, 1]")
        object.__setattr__(self, "a_granularity", "tensor" if self.act == "static" else "token")
        super().__post_init__()


class QVDQuantizer(BaseQuantizer):
    """QVD (reconstructed): see ``quantizers/qvd/README.md``."""

    name = "qvd"
    config_cls = QVDConfig

    # ---- which layers get what ---------------------------------------------------------------
    def plans(self, target: QuantTarget) -> dict[str, LayerPlan]:
        """Base plans; timestep-embedding layers: HTDQ (static per-tensor), or FP (finite set)."""
        cfg = self.config
        plans = resolve_plans(target, cfg)
        ts = [n for n, p in plans.items() if p.role == TIMESTEP and not match_any(n, cfg.skip)]
        free = resolve_plans(dataclasses.replace(target, skip=[]), cfg) if ts else {}
        for n in ts:
            p = plans[n]
            if cfg.htdq == "finite_set":
                plans[n] = dataclasses.replace(p, spec=None, early=None)
                continue
            if cfg.quantize_timestep:
                p = free[n]
            plans[n] = dataclasses.replace(p, spec=_static(p.spec), early=_static(p.early))
        return plans

    def finite_set_layers(self, target: QuantTarget) -> list[str]:
        """Timestep-embedding linears served from the per-step FP cache (``htdq: finite_set``)."""
        if self.config.htdq != "finite_set":
            return []
        linears = target.linears()
        return [
            n
            for n, r in target.roles.items()
            if r == TIMESTEP and n in linears and not match_any(n, self.config.skip)
        ]

    # ---- calibration -------------------------------------------------------------------------
    def _calibrate(
        self, target: QuantTarget, calib: CalibrationSet, plans: dict[str, LayerPlan]
    ) -> QuantState:
        cfg = self.config
        edges = time_range_edges(calib.timesteps, cfg.scri_time_ranges)
        base = [n for n, p in plans.items() if p.spec is not None and p.role != TIMESTEP]
        ts = [n for n, p in plans.items() if p.spec is not None and p.role == TIMESTEP]
        ts += self.finite_set_layers(target)
        sample = cfg.scri and len(cfg.scri_alphas) > 1
        folds = prompt_folds(calib)
        # per layer: one per-channel min-max observer per (prompt fold, time range)
        obs = {
            n: [[MinMaxObserver(per_channel=True) for _ in range(len(edges) + 1)] for _ in folds]
            for n in base
        }
        rows: dict[str, list[tuple[torch.Tensor, tuple[int, int]]]] = {n: [] for n in base}
        feats: dict[str, dict[float, torch.Tensor]] = {n: {} for n in ts}
        rng = random.Random(0)
        calls: dict[str, int] = {}
        batch_t: list[torch.Tensor] = []
        fold = [0]
        gptq = cfg.weights == "gptq"
        hess: dict[str, HessianSum] = {}

        def fn(name: str, x: torch.Tensor, b: int) -> None:
            if name in feats:
                t = batch_t[0]
                if x.shape[0] % t.numel() == 0:
                    t = t.repeat_interleave(x.shape[0] // t.numel())
                    for tv in t.unique().tolist():
                        if tv not in feats[name]:
                            feats[name][tv] = x[int((t == tv).nonzero()[0])].float().clone()
                return
            obs[name][fold[0]][b].update(x)
            if gptq:  # float32 products: a float64 GEMM costs ~20x here
                hess.setdefault(name, HessianSum(torch.float32)).update(x)
            if sample:  # reservoir of row chunks, uniform over calls, <= 2 * scri_rows rows
                m = max(1, cfg.scri_rows // 8)
                chunk = x[rng.sample(range(x.shape[0]), min(x.shape[0], m))].float().clone()
                calls[name] = calls.get(name, 0) + 1
                if len(rows[name]) < 16:
                    rows[name].append((chunk, (fold[0], b)))
                elif (j := rng.randrange(calls[name])) < 16:
                    rows[name][j] = (chunk, (fold[0], b))

        def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            batch_t[:] = [batch["timesteps"].detach().float().cpu()]
            return target.forward(batch)

        wrapped = dataclasses.replace(target, forward=forward)
        for fold[0], part in enumerate(folds):
            run_calibration(wrapped, part, base + ts, fn, edges, cfg.calib_batch_size)
        tensors: dict[str, torch.Tensor] = {}
        alphas: dict[str, float] = {}
        linears = target.linears()
        ranges = {n: merge_ranges(obs[n]) for n in base}
        unseen = [n for n in base if all(lo is None for lo, _ in ranges[n][-1])]
        unseen += [n for n in ts if not feats[n]]
        if unseen:
            logger.warning("qvd: %d linears never ran during calibration, kept FP", len(unseen))
        for n in (n for n in base if n not in unseen):
            for r, (lo, hi) in enumerate(ranges[n][-1]):
                tensors[f"{n}.ch_lo.{r}"], tensors[f"{n}.ch_hi.{r}"] = lo, hi
            if cfg.scri:
                held_out = [  # rows of fold f against the ranges of the other fold(s)
                    (x, ranges[n][1 - f if len(folds) == 2 else f][r])
                    for x, (f, r) in subsample_rows(rows[n], cfg.scri_rows, rng)
                ]
                w = linears[n].weight
                alphas[n] = search_alpha(
                    held_out, w, plans[n].spec, cfg.scri_alphas, cfg.act == "static"
                )
            if gptq:
                h = hess.pop(n).hessian()
                for i, (spec, r) in enumerate(_variant_specs(plans[n], len(edges) + 1)):
                    scale = None
                    if cfg.scri:
                        scale = scri_params(*ranges[n][-1][r], alphas[n])[1]
                    self._store_gptq(tensors, f"{n}.v{i}", linears[n].weight, spec, h, scale)
        htdq_meta = {}
        for n in (n for n in ts if n not in unseen):
            ts_vals = sorted(feats[n])
            keep = spread(len(ts_vals), cfg.htdq_max_rows)
            t = torch.tensor([ts_vals[i] for i in keep])
            x = torch.stack([feats[n][ts_vals[i]] for i in keep])
            if n in plans and plans[n].spec is not None:
                htdq_meta[n] = self._search(n, linears[n], plans[n], x, tensors, alphas)
            else:
                tensors[f"{n}.fs_t"], tensors[f"{n}.fs_x"] = t, x
        meta = {"t_edges": list(edges), "scri_alpha": alphas, "htdq": htdq_meta, "unseen": unseen}
        return QuantState(tensors=tensors, meta=meta)

    def _search(
        self,
        name: str,
        linear: nn.Linear,
        plan: LayerPlan,
        x: torch.Tensor,
        tensors: dict[str, torch.Tensor],
        alphas: dict[str, float],
    ) -> dict[str, dict[str, float]]:
        """SCRI (if on) and the HTDQ range per variant of one timestep-embedding layer."""
        cfg = self.config
        w, b = linear.weight.detach(), linear.bias
        shift = scale = None
        gptq = cfg.weights == "gptq"
        h = 2.0 * x.t() @ x / x.shape[0] if gptq else None  # the weight sees x / s: scri.fold
        if cfg.scri:
            lo, hi = x.amin(0), x.amax(0)
            tensors[f"{name}.ch_lo.0"], tensors[f"{name}.ch_hi.0"] = lo, hi
            alpha = search_alpha([(x, (lo, hi))], w, plan.spec, cfg.scri_alphas, True)
            alphas[name] = alpha
            shift, scale, _ = scri_params(lo, hi, alpha)
            x = (x - shift) / scale
        w_s, b_s = (w, b) if shift is None else fold(w, b, shift, scale)
        out = {}
        specs = [(k, s) for k, s in (("", plan.spec), (".early", plan.early)) if s is not None]
        for i, (key, spec) in enumerate(specs):
            qw = None
            if gptq:
                qw = self._store_gptq(tensors, f"{name}.v{i}", w, spec, h, scale)
            if spec.a_bits >= 16:
                continue
            qw = qw or self._qweight(w_s, spec)
            w_q = w_s if qw is None else qw.dequant()
            b_q = b_s if shift is None else fold(w, b, shift, scale, w_q)[1]
            grid = cfg.htdq_grid if cfg.htdq == "search" else 1
            res = htdq_search(
                x, w_s, w_q, b_s, spec.a_bits, spec.a_symmetric, grid, cfg.htdq_tol,
                cfg.htdq_mse_weight, b_q,
            )  # fmt: skip
            tensors[f"{name}.act_lo{key}"] = torch.tensor(res.lo)
            tensors[f"{name}.act_hi{key}"] = torch.tensor(res.hi)
            out[key or "late"] = dataclasses.asdict(res) | {"timesteps": x.shape[0]}
        return out

    # ---- building layers ---------------------------------------------------------------------
    def quantize(self, target: QuantTarget, state: QuantState) -> nn.Module:
        """Swap planned linears for quantized ones and finite-set layers for cached FP ones."""
        if state.meta.get("config_hash") != self.config.hash():
            raise ValueError(f"{self.name}: state was calibrated with a different config")
        unseen = set(state.meta.get("unseen", []))
        for name, plan in self.plans(target).items():
            linear = target.module.get_submodule(name)
            if plan.spec is None or not isinstance(linear, nn.Linear) or name in unseen:
                continue
            target.module.set_submodule(name, self._build_layer(name, linear, plan, state))
        for n in self.finite_set_layers(target):
            t, x = state.tensors.get(f"{n}.fs_t"), state.tensors.get(f"{n}.fs_x")
            if t is not None and x is not None:
                target.module.set_submodule(
                    n, FiniteSetLinear(target.module.get_submodule(n), t, x)
                )
        return target.module

    def _qweight(self, w: torch.Tensor, spec: LayerSpec) -> QWeight | None:
        """Min-max or MSE-clipped RTN weight (``weights: gptq`` layers use their stored one)."""
        if spec.w_bits >= 16:
            return None
        ratio = 1.0
        if self.config.weights == "mse":
            ratio = mse_clip_search(w, spec.w_bits, spec.w_granularity, spec.group_size,
                                    spec.w_symmetric)  # fmt: skip
        return quantize_weight(w, spec, ratio)

    def _store_gptq(
        self,
        tensors: dict[str, torch.Tensor],
        key: str,
        weight: torch.Tensor,
        spec: LayerSpec,
        hessian: torch.Tensor,
        scale: torch.Tensor | None,
    ) -> QWeight | None:
        """GPTQ of ``W diag(s)`` against the Hessian of ``x / s``, stored under ``key``."""
        if spec.w_bits >= 16:
            return None
        w = weight.detach().float()
        if scale is not None:
            w, hessian = w * scale, hessian / torch.outer(scale, scale)
        qw = gptq_quantize(w, hessian, spec, self.config.gptq_damp)
        tensors[f"{key}.codes"], tensors[f"{key}.scale"], tensors[f"{key}.zero"] = (
            qw.codes, qw.scale, qw.zero,
        )  # fmt: skip
        return qw

    def _variant(
        self,
        spec: LayerSpec,
        w: torch.Tensor,
        qweight: QWeight | None,
        smooth: torch.Tensor | None = None,
        act: tuple | None = None,
    ) -> QuantVariant:
        mode = self.config.kernel
        act = act if spec.a_bits < 16 and spec.a_granularity == "tensor" else None
        qweight = qweight or self._qweight(w, spec)
        return QuantVariant(spec, mode, w, qweight, smooth=smooth, act_range=act)

    def _build_layer(
        self, name: str, linear: nn.Linear, plan: LayerPlan, state: QuantState
    ) -> QuantLinear:
        early = self.config.early_steps
        edges = () if plan.role == TIMESTEP else tuple(state.meta["t_edges"])
        specs = _variant_specs(plan, len(edges) + 1)
        dev = linear.weight.device
        stats = [
            tuple(_to(state.tensors.get(f"{name}.ch_{k}.{r}"), dev) for k in ("lo", "hi"))
            for _, r in specs
        ]
        acts: list = [None] * len(specs)
        if plan.role == TIMESTEP:  # HTDQ's activation range per variant
            acts = [_range(state, name, k) for k in ("", ".early")][: len(specs)]
        qws = [stored_qweight(name, i, state) for i in range(len(specs))]
        if not self.config.scri:
            variants = [
                self._variant(s, linear.weight, qw, act=a or (lo.min(), hi.max()))
                for (s, _), qw, a, (lo, hi) in zip(specs, qws, acts, stats, strict=True)
            ]
            return QuantLinear(linear, variants, early_steps=early, t_edges=edges)
        alpha = float(state.meta["scri_alpha"][name])
        variants, shifts, biases = [], [], []
        for (spec, _), qw, a, (lo, hi) in zip(specs, qws, acts, stats, strict=True):
            shift, scale, act = scri_params(lo, hi, alpha)
            w, _ = fold(linear.weight, linear.bias, shift, scale)
            v = self._variant(spec, w, qw, smooth=scale, act=a or act)
            variants.append(v)
            shifts.append(shift)
            biases.append(fold(linear.weight, linear.bias, shift, scale, v.float_weight())[1])
        return SCRILinear(
            linear, variants, torch.stack(shifts), torch.stack(biases), early, t_edges=edges
        )


def _variant_specs(plan: LayerPlan, n_ranges: int) -> list[tuple[LayerSpec, int]]:
    """``(spec, statistics range)`` per variant: one per time range, then the early steps'
    variant, which uses the noisiest (highest-t, last) range."""
    specs = [(plan.spec, r) for r in range(n_ranges)]
    return specs + ([(plan.early, n_ranges - 1)] if plan.early is not None else [])


def _static(spec: LayerSpec | None) -> LayerSpec | None:
    """HTDQ layers always use a static per-tensor activation range."""
    return None if spec is None else dataclasses.replace(spec, a_granularity="tensor")


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def _range(state: QuantState, name: str, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    lo, hi = state.tensors.get(f"{name}.act_lo{key}"), state.tensors.get(f"{name}.act_hi{key}")
    return None if lo is None or hi is None else (lo, hi)
