"""`qwen3-scope train`: plan and train a suite of SAEs (every chosen layer x site) from the command line.

qwen3-scope train                                         # the organism, paper recipe, offline, minutes
qwen3-scope train --model Qwen/Qwen3-8B --plan-only       # the paper's 8B suite: groups, memory, cost
qwen3-scope train --model Qwen/Qwen3-1.7B --recipe qwen-scope --k 100 --layers 0-13 --dataset chats.jsonl
qwen3-scope train --out runs/suites/x --resume            # continue an interrupted suite
qwen3-scope train --nproc 2 --out runs/suites/x           # two ranks (torchrun); see also python -m qwen3_scope.train
"""

from __future__ import annotations

import argparse

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.model.family import resolve_model
from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.parsing import parse_layers, parse_tokens  # noqa: F401  (re-exported for callers)


def cmd_train(args: argparse.Namespace) -> None:
    import pandas as pd  # lazy: keeps the CLI from importing pandas

    from qwen3_scope.training.recipes import (  # lazy: keeps the CLI from importing pandas
        SMALL_MODEL_D_MODEL,
        get_recipe,
    )
    from qwen3_scope.training.suite import train_suite  # lazy: keeps the CLI from importing torch

    config = config_from_args(SuiteTrainingConfig, args)  # bad values fail here, before any model loads
    if args.describe:
        recipe = get_recipe(config.recipe)
        small = resolve_model(config.model).d_model < SMALL_MODEL_D_MODEL
        with pd.option_context("display.max_colwidth", 120, "display.width", 250):
            print(
                f"recipe {recipe.name}: {recipe.summary} ({'small' if small else 'family'} scale for {config.model})\n"
            )
            print(recipe.hyperparameters(small=small, architecture=config.architecture).to_string(index=False))
        return
    planned = train_suite(config.replace(plan_only=True))  # bad input (incl. --nproc) fails here, before launching
    if config.nproc is not None and config.nproc > 1 and not config.plan_only:  # torchrun: rank 0 prints the plan
        from qwen3_scope.training.distributed import launch_config  # lazy: keeps the CLI from importing torch
        from qwen3_scope.training.suite import SuiteExistsError  # lazy: keeps the CLI from importing torch

        if planned.manifest and not config.resume:  # the ranks would all stop on it: say it before launching
            raise SuiteExistsError(
                f"{planned.suite_dir} already holds suite {planned.manifest.get('suite')!r} "
                f"({planned.manifest.get('status')}); pass --resume to continue it, or choose another --out."
            )
        raise SystemExit(launch_config(config))
    print(planned.plan.summary())
    if planned.parallel is not None and (config.nproc or 1) > 1:
        print(planned.parallel.summary())
    print(f"suite directory: {planned.suite_dir}")
    if config.plan_only:
        return
    result = train_suite(config, plan=planned.plan)
    print_result(result)


def print_result(result) -> None:
    import pandas as pd  # lazy: keeps the CLI from importing pandas

    with pd.option_context("display.max_rows", None, "display.width", 200):
        table = result.metrics
        print(table.to_string(index=False))
        if not table.empty:
            table["site"] = table["sae_id"].str.split("/").str[0]
            print("\nmean per site:")
            print(table.groupby("site")[["variance_explained", "l0", "dead_fraction"]].mean().round(4).to_string())
    print(
        f"\nsuite written to {result.suite_dir} ({len(result.manifest['saes'])} SAEs; load one with "
        f"sae_lens.SAE.load_from_disk('{result.suite_dir}/<site>/layer_<L>'))"
    )


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train every layer x site SAE of a Qwen3 model (default: the organism, offline, in minutes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, SuiteTrainingConfig)
    parser.add_argument(
        "--describe", action="store_true", help="print every hyperparameter of the recipe with its source and stop"
    )
    parser.set_defaults(func=cmd_train)
    return parser
