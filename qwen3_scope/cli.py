"""`qwen3-scope`: a thin command line over the library (each subcommand is a few calls into it)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from itertools import groupby
from typing import Any

import qwen3_scope
from qwen3_scope.apps import cli as apps_cli
from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.core.errors import ConfigError, Qwen3ScopeError
from qwen3_scope.core.io import is_no_space_error
from qwen3_scope.core.threads import configure_threads
from qwen3_scope.demo.config import DemoConfig
from qwen3_scope.evaluation import bench_cli
from qwen3_scope.evaluation import cli as evaluation_cli
from qwen3_scope.export import cli as export_cli
from qwen3_scope.model.family import KINDS, QWEN3_FAMILY, resolve_model
from qwen3_scope.model.sites import (
    ALL_SITES,
    BACKENDS,
    SITE_DESCRIPTIONS,
    SiteUnavailableError,
    hook_name,
    model_backends,
    site_d_in,
)
from qwen3_scope.steering import cli as steering_cli
from qwen3_scope.training import cli as training_cli


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """`rows` as right-aligned columns under their names, one line a row (plain text: no pandas for `info`)."""
    lines = [columns, *([str(row[c]) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def family_rows() -> list[dict[str, Any]]:
    """The family, one row per model, in generation then kind order (dense, MoE, hybrid)."""
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
    generations = list(dict.fromkeys(row["generation"] for row in rows))
    return sorted(rows, key=lambda row: (generations.index(row["generation"]), KINDS.index(row["kind"])))


HOOK_COLUMNS = ["layer", "site", "d_in", *BACKENDS]


def hook_rows(model: str) -> list[dict[str, Any]]:
    """One row per (layer, site): d_in and the hook name in every backend ('-' where it has none)."""
    spec = resolve_model(model)
    rows = []
    for layer in range(spec.n_layers):
        for site in ALL_SITES:
            row: dict[str, Any] = {"layer": layer, "site": site}
            for backend in BACKENDS:
                try:
                    row[backend] = hook_name(site, layer, backend, spec)
                except SiteUnavailableError:
                    row[backend] = "-"
            if all(row[b] == "-" for b in BACKENDS):
                continue  # the model has no such site at this layer (router on dense, attention on linear layers)
            row["d_in"] = site_d_in(spec, site)
            rows.append(row)
    return rows


def cmd_info(args: argparse.Namespace) -> None:
    if not args.model:
        print(
            "The Qwen3 generation (`organism` is the bundled model organism; d_mlp of MoE models is the expert "
            "width, params_b active/total):"
        )
        columns = ["name", "n_layers", "d_model", "d_mlp", "heads", "head_dim", "experts", "params_b"]
        columns += ["vocab_size", "tied", "thinking"]
        for (generation, kind), group in groupby(family_rows(), key=lambda row: (row["generation"], row["kind"])):
            print(f"\n{generation} {kind}:")
            print(format_table(list(group), columns))
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
    print(format_table(hook_rows(args.model), HOOK_COLUMNS))
    if args.verify:
        from qwen3_scope.model.loading import verify_sites_on_meta  # lazy: keeps the CLI from importing torch

        for row in verify_sites_on_meta(args.model):
            print(
                f"verified on the meta device, {row['backend']}: {row['site_hooks']} site hooks, "
                f"{'all widths match' if not row['mismatches'] else 'MISMATCH at ' + ', '.join(row['mismatches'])}"
            )


def cmd_releases(args: argparse.Namespace) -> None:
    from qwen3_scope import releases  # lazy: keeps the CLI from importing torch

    if args.action == "add":
        if not args.suite_dir:
            raise ConfigError(
                "`qwen3-scope releases add` needs the suite directory: qwen3-scope releases add SUITE_DIR"
            )
        name = releases.register_suite(args.suite_dir, release=args.release)
        print(f"registered {args.suite_dir} as release {name!r} in {releases.user_release_file()}")
        print(f'load with: SAE.from_pretrained("{name}", "<id>") after `import qwen3_scope`; ids:')
        args.pattern = ".*"
        table = releases.list_release_saes().query("release == @name")
    else:
        table = releases.list_release_saes(args.pattern)
    import pandas as pd  # lazy: keeps the CLI from importing pandas

    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.to_string(index=False) if len(table) else f"no qwen3-scope SAE ids match {args.pattern!r}")


def cmd_demo(args: argparse.Namespace) -> None:
    from qwen3_scope.demo.run import run_demo  # lazy: keeps the CLI from importing torch

    run_demo(config_from_args(DemoConfig, args))


# Modules that contribute subcommands: each has `add_cli(subparsers)` adding its parser(s) with `func` set, and
# imports only light modules at its top (config dataclasses, argparse helpers), so building the parser is fast.
COMMAND_MODULES = (training_cli, evaluation_cli, bench_cli, steering_cli, apps_cli, export_cli)


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

    demo = sub.add_parser(
        "demo",
        help="the main job: every stage of the pipeline on the model organism, offline (quick; --full: README tables)",
    )
    add_config_arguments(demo, DemoConfig)
    demo.set_defaults(func=cmd_demo)

    for module in COMMAND_MODULES:
        module.add_cli(sub)
    return parser


def needs_sae_lens(args: argparse.Namespace) -> bool:
    """Whether the command needs the complete `import qwen3_scope` (SAELens version check and registration): every
    command but `info` without --verify, which reads only the model family's specs."""
    return not (args.func is cmd_info and not args.verify)


def error_message(err: BaseException) -> str:
    """The one-line text for a user error (disk-full and unwritable outputs get the fix)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return (
            f"no space left{where} ({os.strerror(err.errno)}); nothing half-written was kept. Free disk space "
            "(or choose another --out) and run the command again (training resumes with --resume)."
        )
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {err.filename or 'the output'} ({os.strerror(err.errno)}); choose a writable directory."
    return str(err) or type(err).__name__


def write_failure(err: Exception) -> OSError | None:
    """`err` as an OSError when it is a full disk (whatever the writer raised: safetensors has its own type) or
    a read-only / permission-denied output; None for anything else (a bug: it must surface as a traceback)."""
    if is_no_space_error(err):
        return err if isinstance(err, OSError) else OSError(errno.ENOSPC, str(err))
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return err
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argument errors exit here (2), before anything heavy is imported
    try:
        if needs_sae_lens(args):
            # torch's threads for this job: --threads, OMP_NUM_THREADS or the cores this process may use, fewer on a
            # busy machine (core/threads.py); before torch loads, so that OpenMP's passive wait policy applies too
            configure_threads(getattr(args, "threads", None))
            qwen3_scope.register()  # completes `import qwen3_scope` when the console script deferred it
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
    except Qwen3ScopeError as err:  # a user error: one line, never a traceback
        print(f"qwen3-scope: error: {error_message(err)}", file=sys.stderr)
        return 2
    except Exception as err:
        failure = write_failure(err)
        if failure is None:
            raise
        print(f"qwen3-scope: error: {error_message(failure)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
