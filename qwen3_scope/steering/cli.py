"""`qwen3-scope steer refusal|language`: the steering studies from the command line.

    qwen3-scope steer refusal --out runs/steer                       # organism + its bundled suite
    qwen3-scope steer refusal --suite suites/organism --alphas 0.5 1 2
    qwen3-scope steer refusal --model Qwen/Qwen3-4B --release qwen3-instruct-sae \\
        --sae-ids qwen3-4b/resid_post/layer_18 --harmful advbench.csv --harmless alpaca.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args, config_to_dict
from qwen3_scope.core.devices import PlacementOptions
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.naming import RELEASE
from qwen3_scope.steering.config import LanguageStudyConfig, RefusalStudyConfig


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="organism", help="Qwen3 name, `organism` (default) or a local checkpoint directory"
    )
    p.add_argument(
        "--backend", default="hooked", choices=["hooked", "bridge"], help="TransformerLens backend to steer in"
    )
    p.add_argument(
        "--suite", dest="suite_dir", help="suite directory (folders with cfg.json + sae_weights.safetensors)"
    )
    p.add_argument("--release", default=RELEASE, help="SAELens release when no --suite is given")
    p.add_argument(
        "--sae-ids", nargs="*", help="SAE ids of the release (default: every id of the model) or folders of the suite"
    )
    p.add_argument(
        "--alphas",
        nargs="+",
        type=float,
        default=[1.0, 2.0, 4.0, 8.0],
        help="steering strengths in units of the layer's mean residual-stream norm",
    )
    p.add_argument("--top-k", type=int, default=3, help="latents to sweep (plus the difference-in-means baseline)")
    p.add_argument(
        "--screen", type=int, default=32, help="best-ranked latents screened causally before choosing --top-k"
    )
    p.add_argument("--screen-alpha", type=float, default=4.0, help="alpha used for screening")
    p.add_argument("--n-prompts", type=int, default=32, help="prompts per set for discovery and again for evaluation")
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--positions",
        default="post_instruction",
        choices=["post_instruction", "last", "all"],
        help="prompt tokens the discovery averages over",
    )
    p.add_argument(
        "--steer-positions",
        default="post_instruction",
        choices=["post_instruction", "all", "prompt", "generated"],
        help="tokens the direction is added at (all = Arditi's every-position addition)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the difference-in-means baseline")
    p.add_argument("--out", default="runs/steer", help="output directory (CSV tables, PNG plot, Markdown section)")
    add_config_arguments(p, PlacementOptions, config_option=False)


def _shared_kwargs(args: argparse.Namespace) -> dict:
    placement = config_to_dict(config_from_args(PlacementOptions, args))  # checked before anything loads
    return dict(
        **placement,
        model=args.model,
        backend=args.backend,
        suite_dir=args.suite_dir,
        release=args.release,
        sae_ids=args.sae_ids,
        n_discover=args.n_prompts,
        n_eval=args.n_prompts,
        screen=args.screen,
        top_k=args.top_k,
        screen_alpha=args.screen_alpha,
        alphas=tuple(args.alphas),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        discovery_positions=args.positions,
        steer_positions=args.steer_positions,
        baseline=not args.no_baseline,
    )


def _report(result, paths: dict) -> None:
    import pandas as pd  # lazy: keeps the CLI from importing pandas

    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(result.summary.to_string(index=False))
    for key, path in paths.items():
        print(f"{key:>8}: {path}")


def cmd_steer(args: argparse.Namespace) -> None:
    if args.top_k < 1 or args.n_prompts < 1:
        raise ConfigError("--top-k and --n-prompts must be at least 1.")
    out = Path(args.out)
    if args.study == "refusal":
        from qwen3_scope.steering.refusal import (  # lazy: keeps the CLI from importing torch
            run_refusal_study,
            write_refusal_study,
        )

        cfg = RefusalStudyConfig(harmful_file=args.harmful, harmless_file=args.harmless, **_shared_kwargs(args))
        result = run_refusal_study(cfg)
        _report(result, write_refusal_study(result, out))
    else:
        from qwen3_scope.steering.language import (  # lazy: keeps the CLI from importing torch
            run_language_study,
            write_language_study,
        )

        lang_cfg = LanguageStudyConfig(french_file=args.french, english_file=args.english, **_shared_kwargs(args))
        result = run_language_study(lang_cfg)
        _report(result, write_language_study(result, out))


def add_cli(subparsers) -> None:
    steer = subparsers.add_parser("steer", help="feature steering studies: refusal (induce/bypass) and language")
    studies = steer.add_subparsers(dest="study", required=True)
    refusal = studies.add_parser(
        "refusal", help="discover refusal latents, sweep alpha, measure refusal rate and coherence"
    )
    _common(refusal)
    refusal.add_argument(
        "--harmful",
        help="harmful prompts: AdvBench csv/jsonl (`goal`) or jsonl with `prompt` (default: organism split)",
    )
    refusal.add_argument("--harmless", help="harmless prompts: Alpaca jsonl (`instruction`/`input`) or `prompt` rows")
    refusal.set_defaults(func=cmd_steer)
    language = studies.add_parser("language", help="discover the second-language latent and steer the answer language")
    _common(language)
    language.add_argument("--french", help="second-language prompts file (default: the organism's lang_fr split)")
    language.add_argument("--english", help="English prompts file (default: the organism's lang_en split)")
    language.set_defaults(func=cmd_steer)
