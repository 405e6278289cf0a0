"""`qwen3-scope bench`: SAEBench 0.6's own evals on a suite (needs the `bench` extra)."""

from __future__ import annotations

import argparse

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.evaluation.bench_config import BENCH_EVALS, BenchConfig
from qwen3_scope.evaluation.config import ORGANISM_PATTERN, ORGANISM_RELEASE


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run SAEBench's own evals (core, sparse probing, SCR, TPP, absorption, meta-structure) on a suite",
        description="Benchmark every SAE of a suite directory or release with SAEBench 0.6's own evaluation code "
        f"({', '.join(BENCH_EVALS)}); writes SAEBench's result JSON per eval under --out plus bench.md/.csv. "
        "Needs the extra: pip install 'qwen3-scope[bench]'. Default: the bundled organism suite, offline.",
    )
    parser.add_argument("--release", default=ORGANISM_RELEASE, help=f"SAELens release (default {ORGANISM_RELEASE})")
    parser.add_argument(
        "--ids",
        default=None,
        help=f"regex an SAE id must fully match (default {ORGANISM_PATTERN!r} for the default release)",
    )
    parser.add_argument("--suite", default=None, help="a suite directory; overrides --release")
    parser.add_argument("--model", default=None, help="model (default: the one the SAEs name)")
    parser.add_argument("--out", default="runs/bench", help="output directory")
    add_config_arguments(parser, BenchConfig)
    parser.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> None:
    config = config_from_args(BenchConfig, args)  # eval names and sizes checked before anything loads
    from qwen3_scope.evaluation.saebench import run_bench  # lazy: keeps the CLI torch-free (and needs the extra)

    ids = args.ids or (ORGANISM_PATTERN if not args.suite and args.release == ORGANISM_RELEASE else ".*")
    result = run_bench(
        config, args.out, suite=args.suite, release=None if args.suite else args.release, ids=ids, model_name=args.model
    )
    print((result.out_dir / "bench.md").read_text())
    print(f"wrote SAEBench results under {result.out_dir}")
