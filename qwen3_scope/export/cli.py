"""`qwen3-scope export neuronpedia` (feature dashboards) and `qwen3-scope upload` (Hugging Face + Neuronpedia)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.export.config import ExportConfig, UploadConfig


def add_cli(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help="export feature dashboards of a suite (Neuronpedia formats, offline viewer)"
    )
    sub = export.add_subparsers(dest="format", required=True)
    np_parser = sub.add_parser(
        "neuronpedia",
        help="feature dashboards: SAEDashboard batch files, Neuronpedia bulk import, --html viewer",
        description="Feature dashboards for every SAE of a suite from one pass of the model over the token dataset; "
        "writes SAEDashboard's Neuronpedia batch format, Neuronpedia's bulk-import layout and (--html) an "
        "offline viewer. An interrupted export resumes where it stopped.",
    )
    add_config_arguments(np_parser, ExportConfig)
    np_parser.set_defaults(func=cmd_export)

    up = subparsers.add_parser(
        "upload",
        help="push a suite to the Hugging Face Hub in SAELens' layout (model card, release entry)",
        description="Upload a suite (SUITE_DIR, or --release R --ids REGEX) to a Hub model repo in one commit: SAELens' "
        "layout, a model card with the evaluation, a pretrained_saes.yaml entry. --dry-run DIR writes the tree.",
    )
    up.add_argument("suite_dir", nargs="?", default=None, help="suite directory (or use --release)")
    add_config_arguments(up, UploadConfig)
    up.set_defaults(func=cmd_upload)


def cmd_export(args: argparse.Namespace) -> None:
    from qwen3_scope.export.job import run_export  # lazy: keeps the CLI from importing torch

    result = run_export(config_from_args(ExportConfig, args))
    print(
        f"{len(result.sources)} SAEs, {result.tokens} tokens ({result.dataset}): {result.features_computed} features computed, "
        f"{result.batches_written} batches written, {result.batches_skipped} kept from an earlier run, {result.seconds:.1f} s"
    )
    print(
        f"SAEDashboard batches: {Path(result.out) / 'saedashboard'}; Neuronpedia bulk import: {Path(result.out) / 'neuronpedia'}"
    )
    for sae_id, np_id in result.neuronpedia_ids.items():
        print(f"  {sae_id}: {np_id}")
    if result.viewer:
        print(f"viewer: {result.viewer} (open it in a browser; no server needed)")


def cmd_upload(args: argparse.Namespace) -> None:
    from qwen3_scope.export.upload import upload  # lazy: keeps the CLI from importing torch

    if not getattr(args, "repo", None) and not getattr(args, "config", None):
        raise ConfigError(
            "upload needs the Hub repo to push to: --repo USER/NAME (with --dry-run DIR nothing is pushed)."
        )
    result = upload(config_from_args(UploadConfig, args, **({"suite": args.suite_dir} if args.suite_dir else {})))
    where = f"pushed to {result.commit_url}" if result.commit_url else f"dry run: wrote the tree to {result.tree}"
    print(f"{len(result.release_entry['saes'])} SAEs, {len(result.files)} files; {where}")
    if result.payloads:
        print(
            f"Neuronpedia feature/upload-batch requests: {result.payloads}"
            + (" sent" if result.commit_url else " written")
        )
