"""`qwen3-scope train`: plan and train a suite of SAEs (every chosen layer x site) from the command line.

    qwen3-scope train                                         # the organism, paper recipe, offline, minutes
    qwen3-scope train --model Qwen/Qwen3-8B --plan-only       # the paper's 8B suite: groups, memory, cost
    qwen3-scope train --model Qwen/Qwen3-1.7B --recipe qwen-scope --k 100 --layers 0-13 --dataset chats.jsonl
    qwen3-scope train --out runs/suites/x --resume            # continue an interrupted suite
"""

from __future__ import annotations

import argparse
import re

import pandas as pd

_SCALE = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def parse_tokens(text: str) -> int:
    """'200k', '4B', '1e6', '250000' -> int."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbg]?)\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token count; write e.g. 200000, 200k, 50M or 4B.")
    return int(float(match[1]) * _SCALE.get(match[2], 1))


def positive_int(text: str) -> int:
    """argparse type: an int > 0 (widths, k, group sizes, threads)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or str(value) != text.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number; write e.g. 16384.")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (target L0, memory budget)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number; write e.g. 24 or 160.")
    return value


def parse_layers(items: list[str] | None) -> list[int] | None:
    """['0-3', '8', '10,12'] -> [0, 1, 2, 3, 8, 10, 12]; None or ['all'] -> None (the recipe's default)."""
    if not items or items == ["all"]:
        return None
    layers: list[int] = []
    for part in ",".join(items).split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"bad layer {part!r}; use numbers and ranges such as 0-8 or 3,5,7 (or 'all').")
        start, end = int(match[1]), int(match[2] or match[1])
        if end < start:
            raise ValueError(f"layer range {part!r} runs backwards; write {end}-{start}.")
        layers.extend(range(start, end + 1))
    return layers


def cmd_train(args: argparse.Namespace) -> None:
    from qwen3_scope.models import resolve_model
    from qwen3_scope.training.recipes import SMALL_MODEL_D_MODEL, get_recipe
    from qwen3_scope.training.suite import train_suite

    if args.describe:
        recipe = get_recipe(args.recipe)
        small = resolve_model(args.model).d_model < SMALL_MODEL_D_MODEL
        with pd.option_context("display.max_colwidth", 120, "display.width", 250):
            print(f"recipe {recipe.name}: {recipe.summary} ({'small' if small else 'family'} scale for {args.model})\n")
            print(recipe.hyperparameters(small=small).to_string(index=False))
        return
    kwargs = dict(
        model=args.model, recipe=args.recipe, out=args.out, layers=parse_layers(args.layers), sites=args.sites,
        training_tokens=args.tokens, dataset=args.dataset, backend=args.backend, resume=args.resume,
        memory_budget_gb=args.memory_gb, max_saes_per_group=args.max_saes_per_group,
        checkpoint_every_tokens=args.checkpoint_every, k=args.k, target_l0=args.l0, width=args.width, fast=args.fast,
        seed=args.seed, threads=args.threads,
    )
    planned = train_suite(plan_only=True, **kwargs)
    print(planned.plan.summary())
    print(f"suite directory: {planned.suite_dir}")
    if args.plan_only:
        return
    result = train_suite(plan=planned.plan, **kwargs)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        table = result.metrics
        print(table.to_string(index=False))
        if not table.empty:
            table["site"] = table["sae_id"].str.split("/").str[0]
            print("\nmean per site:")
            print(table.groupby("site")[["variance_explained", "l0", "dead_fraction"]].mean().round(4).to_string())
    print(f"\nsuite written to {result.suite_dir} ({len(result.manifest['saes'])} SAEs; load one with "
          f"sae_lens.SAE.load_from_disk('{result.suite_dir}/<site>/layer_<L>'))")


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train every layer x site SAE of a Qwen3 model (default: the organism, offline, in minutes)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="organism", help="family name (Qwen/Qwen3-4B), `organism` (default), or a local checkpoint")
    parser.add_argument("--recipe", default="paper", help="paper (JumpReLU, Gemma Scope style; default) or qwen-scope (TopK)")
    parser.add_argument("--layers", nargs="*", help="layers, e.g. 0-8 or 3 5 7 (default: the recipe's layout, usually all)")
    parser.add_argument("--sites", nargs="*", help="sites, e.g. resid_post mlp_out attn_out (default: the recipe's)")
    parser.add_argument("--tokens", type=parse_tokens, help="training tokens per SAE, e.g. 200k or 4B (default: the recipe's)")
    parser.add_argument("--out", "--output", dest="out", help="suite directory (default: runs/suites/<suite name>)")
    parser.add_argument("--dataset", help="jsonl/parquet/txt file or dir, a saved HF dataset dir, or a hub name (default: the organism's corpus)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted suite in --out from its last checkpoint")
    parser.add_argument("--plan-only", action="store_true", help="print the plan (groups, memory, expected cost) and stop")
    parser.add_argument("--describe", action="store_true", help="print every hyperparameter of the recipe with its source and stop")
    parser.add_argument("--backend", default="hooked", choices=["hooked", "hf"], help="model backend (default hooked)")
    parser.add_argument("--memory-gb", type=positive_float, help="memory budget for SAEs + activations (default: 75%% of free memory minus the model)")
    parser.add_argument("--max-saes-per-group", type=positive_int, help="cap on SAEs sharing one forward pass")
    parser.add_argument("--checkpoint-every", type=parse_tokens, help="checkpoint interval in training tokens (default: ~1/8 of the run)")
    parser.add_argument("--k", type=positive_int, help="TopK k (qwen-scope: 50 or 100)")
    parser.add_argument("--l0", type=positive_float, help="JumpReLU target L0 (paper: 160; organism: 24)")
    parser.add_argument("--width", type=positive_int, help="SAE width d_sae (default 16 x d_in)")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                        help="qwen3-scope's fast training SAE classes (topk_fast / jumprelu_fast; saved as plain SAELens "
                             "SAEs). Default: on when they are installed; --no-fast trains SAELens' own classes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=positive_int, help="torch threads (1 is fastest on a busy 2-core machine)")
    parser.set_defaults(func=cmd_train)
    return parser
