"""`qwen3-scope eval`: benchmark every SAE of a suite (a release + id pattern, or a suite directory)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.evaluation.config import ORGANISM_PATTERN, ORGANISM_RELEASE, SuiteEvalConfig


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="benchmark every SAE (and transcoder) of a suite with SAELens' run_evals: one table, plots, HTML report",
        description="Evaluate every SAE of a release (ids matching a pattern) or of a suite directory on the same held-out "
        "tokens; writes suite_eval.csv/.parquet, PNG plots and report.html. Transcoders are evaluated as replacement "
        "MLPs, one by one and each set all at once (replacement_model.csv). Default: the bundled organism suite.",
    )
    parser.add_argument(
        "--release", default=ORGANISM_RELEASE, help=f"SAELens release name (default {ORGANISM_RELEASE})"
    )
    parser.add_argument(
        "--ids",
        default=None,
        help=f"regex an SAE id must fully match (default {ORGANISM_PATTERN!r} for the default release, '.*' otherwise)",
    )
    parser.add_argument(
        "--suite",
        default=None,
        help="a suite directory (SAE folders with cfg.json + sae_weights.safetensors); overrides --release",
    )
    parser.add_argument(
        "--model", default=None, help="model to evaluate on (default: the one the SAEs were trained on)"
    )
    parser.add_argument(
        "--texts",
        default=None,
        help="held-out text: .jsonl/.json/.parquet (messages/prompt/text rows) or .txt "
        "(one per line); default: the organism's held-out evaluation splits, or "
        "the held-out documents the training suite wrote",
    )
    parser.add_argument("--tokens", type=int, default=None, help="held-out tokens per SAE (sets the number of batches)")
    parser.add_argument("--out", default="runs/eval", help="output directory")
    parser.add_argument(
        "--write-back",
        default=None,
        metavar="YAML",
        help="record measured l0 / variance_explained in this release yaml",
    )
    parser.add_argument(
        "--plain", action="store_true", help="no shared forward pass: plain run_evals per SAE (the baseline)"
    )
    add_config_arguments(parser, SuiteEvalConfig)  # batches, placement, precision, memory: one option per field
    parser.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> None:
    from qwen3_scope.evaluation.held_out import read_documents  # lazy: keeps the CLI from importing torch
    from qwen3_scope.evaluation.report import (  # lazy: keeps the CLI from importing pandas
        bench_summary,
        markdown_summary,
        replacement_lines,
        write_outputs,
    )
    from qwen3_scope.evaluation.suite_eval import (  # lazy: keeps the CLI from importing torch
        evaluate_suite,
        write_back_release_yaml,
    )

    config = config_from_args(SuiteEvalConfig, args)  # device/dtype checked here, before anything loads
    per_batch = config.batch_size_prompts * config.context_size
    if args.tokens is not None and args.tokens < per_batch:
        raise ConfigError(
            f"--tokens {args.tokens} is less than one batch ({config.batch_size_prompts} x {config.context_size} = "
            f"{per_batch}); raise --tokens or lower --batch-size / --context-size."
        )
    changes = {}
    if args.tokens is not None:
        changes["n_batches"] = args.tokens // per_batch
    if args.plain:
        changes["share_forward"] = False
    if changes:
        config = replace(config, **changes)
    documents = read_documents(args.texts) if args.texts else None
    if args.suite:
        source = dict(suite_dir=args.suite, pattern=args.ids or ".*")
    else:
        source = dict(
            release=args.release, pattern=args.ids or (ORGANISM_PATTERN if args.release == ORGANISM_RELEASE else ".*")
        )
    result = evaluate_suite(**source, model=args.model, documents=documents, config=config)
    meta = {
        "source": args.suite or f"{args.release} ids {source['pattern']}",
        "SAEs": len(result.table),
        "held-out text": result.held_out,
        "held-out tokens per SAE": f"{config.n_tokens} ({result.table['density_tokens'].iloc[0]} after excluding special tokens)",
        "dense threshold": config.dense_threshold,
        "seconds": round(result.seconds, 1),
        "shared forward": config.share_forward,
    }
    if result.bench is not None:
        meta["SAEBench run"] = f"{result.bench.directory} ({len(result.bench.table)} rows, baselines included)"
    paths = write_outputs(result.table, Path(args.out), meta=meta, replacement=result.replacement, bench=result.bench)
    if args.write_back:
        updated = write_back_release_yaml(result.table, args.write_back, release=None if args.suite else args.release)
        print(f"wrote l0 / variance_explained of {len(updated)} SAEs into {args.write_back}")
    print(markdown_summary(result.table))
    for line in replacement_lines(result.replacement):
        print(line)
    if result.bench is not None:
        print(bench_summary(result.bench))
    print(f"\n{len(result.table)} SAEs in {result.seconds:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))
