"""`qwen3-scope`: a thin command line over the library (each subcommand is a few calls into it)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd


def _family_table() -> pd.DataFrame:
    from qwen3_scope.models import QWEN3_FAMILY

    rows = [spec.as_dict() for spec in QWEN3_FAMILY.values()]
    return pd.DataFrame(rows)[["name", "n_layers", "d_model", "d_mlp", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "tie_embeddings"]]


def hook_table(model: str) -> pd.DataFrame:
    """One row per (layer, site): d_in and the hook name in every backend ('-' where it has none)."""
    from qwen3_scope.models import resolve_model
    from qwen3_scope.sites import BACKENDS, SITES, SiteUnavailableError, hook_name, site_d_in

    spec = resolve_model(model)
    rows = []
    for layer in range(spec.n_layers):
        for site in SITES:
            row = {"layer": layer, "site": site, "d_in": site_d_in(spec, site)}
            for backend in BACKENDS:
                try:
                    row[backend] = hook_name(site, layer, backend, spec)
                except SiteUnavailableError:
                    row[backend] = "-"
            rows.append(row)
    return pd.DataFrame(rows)


def cmd_info(args: argparse.Namespace) -> None:
    from qwen3_scope.models import resolve_model
    from qwen3_scope.sites import SITE_DESCRIPTIONS

    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_columns", None):
        if not args.model:
            print("Qwen3 family (add -Base for base models; `organism` is the bundled model organism):")
            print(_family_table().to_string(index=False))
            print("\nSites:")
            for site, text in SITE_DESCRIPTIONS.items():
                print(f"  {site:<11} {text}")
            return
        spec = resolve_model(args.model)
        print(f"{spec.name}: {spec.n_layers} layers, d_model {spec.d_model}, d_mlp {spec.d_mlp}, "
              f"{spec.n_heads} heads ({spec.n_kv_heads} kv) x {spec.head_dim}, vocab {spec.vocab_size}, "
              f"{'tied' if spec.tie_embeddings else 'untied'} embeddings")
        print(hook_table(args.model).to_string(index=False))
        if args.verify:
            from qwen3_scope.loading import meta_model, site_shapes
            from qwen3_scope.sites import BACKENDS, available_sites, hook_name, site_d_in

            for backend in BACKENDS:
                pairs = [(hook_name(s, l, backend, spec), s) for l in range(spec.n_layers) for s in available_sites(backend)]
                shapes = site_shapes(meta_model(args.model, backend), backend, sorted({h for h, _ in pairs}))
                bad = [h for h, s in pairs if shapes[h][-1] * (shapes[h][-2] if len(shapes[h]) == 4 else 1) != site_d_in(spec, s)]
                print(f"verified on the meta device, {backend}: {len(pairs)} site hooks, "
                      f"{'all widths match' if not bad else 'MISMATCH at ' + ', '.join(bad)}")


def cmd_releases(args: argparse.Namespace) -> None:
    from qwen3_scope import releases

    if args.action == "add":
        if not args.suite_dir:
            raise ValueError("`qwen3-scope releases add` needs the suite directory: qwen3-scope releases add SUITE_DIR")
        name = releases.register_suite(args.suite_dir, release=args.release)
        print(f"registered {args.suite_dir} as release {name!r} in {releases.user_release_file()}")
        print(f'load with: SAE.from_pretrained("{name}", "<id>") after `import qwen3_scope`; ids:')
        args.pattern = ".*"
        table = releases.list_release_saes().query("release == @name")
    else:
        table = releases.list_release_saes(args.pattern)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False) if len(table) else f"no qwen3-scope SAE ids match {args.pattern!r}")


def cmd_demo(args: argparse.Namespace) -> None:
    from qwen3_scope.demo import run_demo

    run_demo(Path(args.out), model=args.model, stages=args.stages)


# Modules that contribute subcommands: each has `add_cli(subparsers)` adding its parser(s) with `func` set.
COMMAND_MODULES: list[str] = ["qwen3_scope.training.cli", "qwen3_scope.evaluation.cli", "qwen3_scope.steering.cli", "qwen3_scope.export.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen3-scope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="models, sites and hook names in every backend")
    info.add_argument("--model", help="family name (Qwen/Qwen3-4B), `organism`, or a local checkpoint directory")
    info.add_argument("--verify", action="store_true", help="instantiate the model on the meta device in every backend and check each site's width")
    info.set_defaults(func=cmd_info)

    rel = sub.add_parser("releases", help="list qwen3-scope SAE releases and ids, or register a local suite")
    rel.add_argument("action", nargs="?", choices=["list", "add"], default="list")
    rel.add_argument("suite_dir", nargs="?", help="with `add`: a suite directory written by `qwen3-scope train`")
    rel.add_argument("--pattern", default=".*", help="regex over SAE ids (e.g. 'organism/' or 'qwen3-4b/mlp_out')")
    rel.add_argument("--release", help="with `add`: release name (default qwen3-scope-local-<dir name>)")
    rel.set_defaults(func=cmd_releases)

    demo = sub.add_parser("demo", help="the main job: every stage of the pipeline on the model organism, offline")
    demo.add_argument("--out", default="runs/demo", help="output directory (report.md and artifacts)")
    demo.add_argument("--model", default="organism", help="model to run on (default: the bundled model organism)")
    demo.add_argument("--stages", nargs="*", default=None, help="run only these stages (default: all)")
    demo.set_defaults(func=cmd_demo)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, IndexError, FileNotFoundError, KeyError, ImportError) as err:
        print(f"qwen3-scope: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `qwen3-scope info ... | head` closed the pipe early: not an error
        sys.stdout = open(os.devnull, "w")
    return 0


if __name__ == "__main__":
    sys.exit(main())
