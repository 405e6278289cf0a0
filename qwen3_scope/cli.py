"""`qwen3-scope`: a thin command line over the library (each subcommand is a few calls into it)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

import pandas as pd

from qwen3_scope.core.errors import Qwen3ScopeError


def _family_table() -> pd.DataFrame:
    """The family, one row per model, in generation then kind order (dense, MoE, hybrid)."""
    from qwen3_scope.model.family import KINDS, QWEN3_FAMILY

    rows = []
    for spec in QWEN3_FAMILY.values():
        counts = spec.parameter_counts()
        rows.append(
            dict(
                generation=spec.generation,
                kind=spec.kind,
                name=spec.name,
                n_layers=spec.n_layers,
                d_model=spec.d_model,
                d_mlp=spec.d_expert if spec.is_moe else spec.d_mlp,
                heads=f"{spec.n_heads}/{spec.n_kv_heads}",
                head_dim=spec.head_dim,
                experts=f"{spec.n_experts_active}/{spec.n_experts}" if spec.is_moe else "-",
                params_b=f"{counts['active'] / 1e9:.1f}/{counts['total'] / 1e9:.1f}"
                if spec.is_moe
                else f"{counts['total'] / 1e9:.1f}",
                vocab_size=spec.vocab_size,
                tied=spec.tie_embeddings,
                thinking=spec.thinking,
            )
        )
    table = pd.DataFrame(rows)
    generations = list(dict.fromkeys(table["generation"]))
    table["_g"] = table["generation"].map(generations.index)
    table["_k"] = table["kind"].map(KINDS.index)
    return table.sort_values(["_g", "_k"], kind="stable").drop(columns=["_g", "_k"]).reset_index(drop=True)


def hook_table(model: str) -> pd.DataFrame:
    """One row per (layer, site): d_in and the hook name in every backend ('-' where it has none)."""
    from qwen3_scope.model.family import resolve_model
    from qwen3_scope.model.sites import ALL_SITES, BACKENDS, SiteUnavailableError, hook_name, site_d_in

    spec = resolve_model(model)
    rows = []
    for layer in range(spec.n_layers):
        for site in ALL_SITES:
            row = {"layer": layer, "site": site}
            for backend in BACKENDS:
                try:
                    row[backend] = hook_name(site, layer, backend, spec)
                except SiteUnavailableError:
                    row[backend] = "-"
            if all(row[b] == "-" for b in BACKENDS):
                continue  # the model has no such site at this layer (router on dense, attention on linear layers)
            row["d_in"] = site_d_in(spec, site)
            rows.append(row)
    return pd.DataFrame(rows)[["layer", "site", "d_in", *BACKENDS]]


def cmd_info(args: argparse.Namespace) -> None:
    from qwen3_scope.model.family import resolve_model
    from qwen3_scope.model.sites import SITE_DESCRIPTIONS, model_backends

    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_columns", None):
        if not args.model:
            table = _family_table()
            print(
                "The Qwen3 generation (`organism` is the bundled model organism; d_mlp of MoE models is the expert "
                "width, params_b active/total):"
            )
            for (generation, kind), group in table.groupby(["generation", "kind"], sort=False):
                print(f"\n{generation} {kind}:")
                print(group.drop(columns=["generation", "kind"]).to_string(index=False))
            print("\nSites:")
            for site, text in SITE_DESCRIPTIONS.items():
                print(f"  {site:<15} {text}")
            return
        spec = resolve_model(args.model)
        shape = (
            f"{spec.n_heads} heads ({spec.n_kv_heads} kv) x {spec.head_dim}, vocab {spec.vocab_size}, "
            f"{'tied' if spec.tie_embeddings else 'untied'} embeddings"
        )
        if spec.is_moe:
            counts = spec.parameter_counts()
            shape += (
                f", {spec.n_experts} experts ({spec.n_experts_active} active) x {spec.d_expert}"
                f"{f' + shared expert {spec.d_shared_expert}' if spec.d_shared_expert else ''}, "
                f"{counts['active'] / 1e9:.1f}B active / {counts['total'] / 1e9:.1f}B parameters"
            )
        else:
            shape = f"d_mlp {spec.d_mlp}, " + shape
        if spec.is_hybrid:
            full = spec.full_attention_layers()
            shape += f"; full attention at layers {', '.join(map(str, full))}, Gated DeltaNet elsewhere"
        print(
            f"{spec.name} ({spec.generation} {spec.kind}): {spec.n_layers} layers, d_model {spec.d_model}, {shape}; "
            f"chat thinking mode: {spec.thinking}; backends: {', '.join(model_backends(spec))}"
        )
        print(hook_table(args.model).to_string(index=False))
        if args.verify:
            from qwen3_scope.model.loading import verify_sites_on_meta

            for row in verify_sites_on_meta(args.model):
                print(
                    f"verified on the meta device, {row['backend']}: {row['site_hooks']} site hooks, "
                    f"{'all widths match' if not row['mismatches'] else 'MISMATCH at ' + ', '.join(row['mismatches'])}"
                )


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
    from qwen3_scope.demo.run import run_demo

    run_demo(Path(args.out), model=args.model, stages=args.stages)


# Modules that contribute subcommands: each has `add_cli(subparsers)` adding its parser(s) with `func` set.
COMMAND_MODULES: list[str] = [
    "qwen3_scope.training.cli",
    "qwen3_scope.evaluation.cli",
    "qwen3_scope.steering.cli",
    "qwen3_scope.apps.cli",
    "qwen3_scope.export.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen3-scope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="models, sites and hook names in every backend")
    info.add_argument("--model", help="family name (Qwen/Qwen3-4B), `organism`, or a local checkpoint directory")
    info.add_argument(
        "--verify",
        action="store_true",
        help="instantiate the model on the meta device in every backend and check each site's width",
    )
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


# User errors: printed as one `qwen3-scope: error: ...` line (exit 2), never as a traceback. Qwen3ScopeError is
# ours; the builtins are what SAELens/TransformerLens/huggingface_hub raise for bad names, paths and values.
USER_ERRORS = (
    Qwen3ScopeError,
    ValueError,
    IndexError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    KeyError,
    ImportError,
)


def error_message(err: BaseException) -> str:
    """The one-line text for a user error (KeyError's str() is a quoted repr; disk-full gets the fix)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return (
            f"no space left{where} ({os.strerror(err.errno)}); nothing half-written was kept. Free disk space "
            "(or choose another --out) and run the command again (training resumes with --resume)."
        )
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES):
        return f"cannot write {err.filename or 'the output'} ({os.strerror(err.errno)}); choose a writable directory."
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # `qwen3-scope info ... | head` closed the pipe early: not an error
        sys.stdout = open(os.devnull, "w")
    except KeyboardInterrupt:
        print(
            "qwen3-scope: interrupted; finished work and the last checkpoint are kept. Run the same command "
            "with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    except USER_ERRORS as err:
        print(f"qwen3-scope: error: {error_message(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a full disk surfaces as OSError or as a writer's own error type (safetensors)
        from qwen3_scope.core.io import is_no_space_error

        if not is_no_space_error(err) and not (isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES)):
            raise
        if not isinstance(err, OSError):
            err = OSError(errno.ENOSPC, str(err))
        print(f"qwen3-scope: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
