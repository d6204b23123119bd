"""The ``vqbench`` command line: ``run``, ``sweep``, ``validate``, ``report``, ``check``, ``ls``
and ``mini``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import NoReturn

from vqbench.config import RunConfig, load_config, to_dict
from vqbench.registry import UnknownNameError
from vqbench.types import NonFiniteError


def _add_overrides(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config field, e.g. --set {example} (repeatable)",
    )


#: shorthand flags over config keys (the lm-eval / diffusers habit)
SHORTHANDS = {
    "device": "model.device",
    "dtype": "model.dtype",
    "limit": "generation.num_prompts",
    "batch_size": "generation.batch_size",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML run config (defaults are used without one)")
    _add_overrides(p, "quantizers.0.w_bits=4")
    p.add_argument("--device", help="model.device, e.g. cpu or cuda:0")
    p.add_argument("--dtype", help="model.dtype: float32 or bfloat16 (float16 on GPUs only)")
    p.add_argument("--limit", type=int, help="generation.num_prompts: the first N prompts")
    p.add_argument("--batch-size", type=int, help="generation.batch_size")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _shorthands(args: argparse.Namespace) -> list[str]:
    """``--set`` assignments of the shorthand flags given."""
    return [
        f"{k}={getattr(args, f)}" for f, k in SHORTHANDS.items() if getattr(args, f) is not None
    ]


def _load(args: argparse.Namespace) -> RunConfig:
    """The run config of ``-c``, ``--set`` and the shorthand flags (which win)."""
    return load_config(args.config, [*args.overrides, *_shorthands(args)])


def cmd_run(args: argparse.Namespace) -> int:
    """Generate FP and quantized videos, compute metrics, write run records."""
    from vqbench.runner import run

    cfg = _load(args)
    cfg.quiet = cfg.quiet or args.quiet
    records = run(cfg)
    if not records:  # a torchrun rank other than 0: rank 0 reports
        return 0
    for r in records:
        metrics = ", ".join(f"{k}={v['value']:.4g}" for k, v in r.metrics.items())
        print(
            f"{r.run_id}: {metrics or 'no metrics'}" if r.status == "ok" else f"{r.run_id}: FAILED"
        )
    print(f"records written under {cfg.output_dir}/{records[0].run_id.split('/')[0]}")
    failed = [r for r in records if r.status == "failed"]
    for r in failed:
        print(f"vqbench: error: {r.label} failed: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Resolve the config, run every pre-run check and print the plan (no model is loaded);
    exit 2 listing every problem when there are any. ``--config-only`` skips the checks of
    this machine (device, paths, weights, extras): for a config meant for another machine."""
    from vqbench.preflight import config_problems, run_problems
    from vqbench.prompts import load_prompts

    cfg = load_config(args.config, [*args.overrides, *_shorthands(args)], check=False)
    problems = config_problems(cfg) if args.config_only else run_problems(cfg)
    if problems:
        for p in problems:
            print(f"vqbench: error: {p}", file=sys.stderr)
        return 2
    gen = load_prompts(cfg.generation.prompts, cfg.generation.num_prompts)
    plan = {
        "config": to_dict(cfg),
        "plan": {
            "model": cfg.model.name,
            "videos_per_setting": len(gen) * len(cfg.generation.seeds),
            "settings": ["fp"] + [q.label for q in cfg.quantizers],
            "metrics": cfg.metrics,
        },
    }
    print(json.dumps(plan, indent=1))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Leaderboard of a results dir: markdown to stdout, or md/CSV/HTML and plots with --out;
    --format latex|csv|md prints paper tables (leaderboard, or --paired comparisons)."""
    from vqbench.report import load_records, markdown_table, paired_table, select, write_report

    records = None
    if args.out is None or args.paired or args.format:
        records = select([r for r, _ in load_records(args.results)], args.settings)
    if args.format:
        from vqbench.report.export import export

        if not records:
            where = ", ".join(args.results)
            raise ValueError(f"{where}: no run records (matching --settings) to export")
        print(export(records, args.format, args.paired, args.allow_different_n))
    elif args.out is None:
        print(markdown_table(records, args.allow_different_n))
    if args.out is not None:
        files = write_report(
            args.results,
            args.out,
            strips=args.strips,
            quiet=args.quiet,
            settings=args.settings,
            allow_different_n=args.allow_different_n,
        )
        for kind, path in files.items():
            print(f"{kind}: {path}")
    if args.paired and not args.format:
        print("\n" + paired_table(records, args.paired))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Quality gate: compare results with a baseline; exit 1 on regression."""
    from vqbench.check import run_check

    passed, text = run_check(
        args.baseline,
        args.gates,
        args.results,
        verbose=args.verbose_table,
        allow_different_n=args.allow_different_n,
    )
    print(text)
    return 0 if passed else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid of models x quantizers x bit settings, resumable, locally or on Slurm."""
    from vqbench.sweep import load_sweep, print_plan, run_sweep

    sweep = load_sweep(args.config, args.overrides)
    if args.executor:
        sweep.executor = args.executor
    sweep.base.quiet = sweep.base.quiet or args.quiet
    if args.dry_run:
        print_plan(sweep, args.only)
        return 0
    try:
        done = run_sweep(sweep, args.only)
    except RuntimeError as e:  # failed cells; the others are finished and kept
        print(f"vqbench: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(done)} cells finished; records under {sweep.output_dir}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List registered models, quantizers, metrics and prompt suites."""
    from vqbench.prompts import available_suites
    from vqbench.registry import METRICS, MODELS, QUANTIZERS

    groups = {
        "models": MODELS.names(),
        "quantizers": QUANTIZERS.names(),
        "metrics": METRICS.names(),
        "prompts": available_suites(),
    }
    for name, items in groups.items():
        if args.what in (None, name):
            print(f"{name}: {', '.join(items)}")
    return 0


def cmd_mini(args: argparse.Namespace) -> int:
    """Train the mini world's models (arguments pass through to the trainer)."""
    if args.model == "generator":
        from vqbench.mini.train_generator import main as train
    else:
        from vqbench.mini.train_evaluators import main as train
    train(args.rest)
    return 0


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


class _Parser(argparse.ArgumentParser):
    """Argument errors on one line, like every other error (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vqbench: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vqbench``."""
    parser = _Parser(prog="vqbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help=cmd_run.__doc__)
    _add_config_args(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help=cmd_validate.__doc__)
    _add_config_args(p)
    p.add_argument(
        "--config-only",
        action="store_true",
        help="check the config alone, not this machine (device, paths, weights, extras)",
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("sweep", help=cmd_sweep.__doc__)
    p.add_argument("-c", "--config", required=True, help="YAML sweep config")
    _add_overrides(p, "base.generation.num_prompts=4")
    p.add_argument("--executor", choices=["local", "submitit"], help="override the executor")
    p.add_argument("--dry-run", action="store_true", help="print the cells and cache status")
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only the cells whose setting (or model/setting) matches this fnmatch "
        "pattern, e.g. 'q_vdit-*' (repeatable; two processes can share a sweep this way)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("report", help=cmd_report.__doc__)
    p.add_argument(
        "results",
        nargs="*",
        default=["runs"],
        help="results dirs, one leaderboard over all (default: runs)",
    )
    p.add_argument("--out", help="write leaderboard.{md,csv}, index.html and plots/ here")
    p.add_argument("--strips", type=_count, default=4, help="frame strips per group (0: none)")
    p.add_argument("--settings", nargs="+", metavar="PATTERN", help="only these setting labels")
    p.add_argument("--paired", metavar="SETTING", help="also print paired deltas against it")
    p.add_argument(
        "--format", choices=["latex", "csv", "md"], help="print paper tables in this format"
    )
    p.add_argument(
        "--allow-different-n", action="store_true", help="compare FVDs computed at different N"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("check", help=cmd_check.__doc__)
    p.add_argument("results", nargs="?", default="runs", help="results dir (default: runs)")
    p.add_argument("--baseline", required=True, help="run.json, leaderboard.csv or a dir")
    p.add_argument("--gates", required=True, help="YAML gates file")
    p.add_argument("--all", dest="verbose_table", action="store_true", help="show passing rows")
    p.add_argument(
        "--allow-different-n", action="store_true", help="compare FVDs computed at different N"
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("ls", help=cmd_ls.__doc__)
    p.add_argument("what", nargs="?", choices=["models", "quantizers", "metrics", "prompts"])
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("mini", help="the mini world: `vqbench mini train generator|evaluators`")
    mini = p.add_subparsers(dest="mini_command", required=True)
    t = mini.add_parser("train", help=cmd_mini.__doc__)
    t.add_argument("model", choices=["generator", "evaluators"])
    t.add_argument("rest", nargs=argparse.REMAINDER, help="trainer arguments (see its --help)")
    t.set_defaults(func=cmd_mini)
    return parser


#: errors caused by user input or files: one line and exit 2 (ConfigError, RecordError and
#: UnsafePathError are ValueErrors; a full disk or a read-only directory is an OSError)
USER_ERRORS = (ValueError, OSError, UnknownNameError)


def one_line(e: BaseException) -> str:
    """The exception's message on one line (whitespace collapsed, at most 600 characters)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv: list[str] | None = None) -> int:
    """Entry point. Errors print one line ``vqbench: error: ...``: exit 2 for bad input or
    files, 1 for a run that failed; ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("vqbench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        if isinstance(e, USER_ERRORS):
            print(f"vqbench: error: {one_line(e)}", file=sys.stderr)
            return 2
        hint = "" if isinstance(e, NonFiniteError) else " (rerun with --debug for the traceback)"
        print(f"vqbench: error: {type(e).__name__}: {one_line(e)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
