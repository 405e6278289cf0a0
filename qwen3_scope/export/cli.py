"""`qwen3-scope export neuronpedia` (feature dashboards) and `qwen3-scope upload` (Hugging Face + Neuronpedia)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.upload import UploadConfig

_SKIP = {"progress"}


def _add_fields(
    parser: argparse.ArgumentParser, cls: Any, skip: set[str], positional: dict[str, str] | None = None
) -> None:
    """One option per config field (help from the field's metadata): the CLI is derived from the dataclass."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f.metadata.get("help", "")
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif f.name in (
            "window_before",
            "window_after",
            "n_prompts",
            "context",
            "batch_prompts",
            "n_top",
            "n_intervals",
            "n_per_interval",
            "n_bins",
            "n_logits",
            "n_rows",
            "features_per_batch",
            "seed",
            "eval_batches",
        ):
            parser.add_argument(flag, type=int, default=default, help=f"{help_text} (default {default})")
        else:
            parser.add_argument(
                flag, default=default, help=help_text + (f" (default {default})" if default is not None else "")
            )


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
    _add_fields(np_parser, ExportConfig, _SKIP)
    np_parser.set_defaults(func=cmd_export)

    up = subparsers.add_parser(
        "upload",
        help="push a suite to the Hugging Face Hub in SAELens' layout (model card, release entry)",
        description="Upload a suite (SUITE_DIR, or --release R --ids REGEX) to a Hub model repo in one commit: SAELens' "
        "layout, a model card with the evaluation, a pretrained_saes.yaml entry. --dry-run DIR writes the tree.",
    )
    up.add_argument("suite_dir", nargs="?", default=None, help="suite directory (or use --release)")
    _add_fields(up, UploadConfig, {"suite"})
    up.set_defaults(func=cmd_upload)


def cmd_export(args: argparse.Namespace) -> None:
    from qwen3_scope.export.job import run_export

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExportConfig) if f.name not in _SKIP}
    result = run_export(ExportConfig(**values))
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
    from qwen3_scope.export.upload import upload

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(UploadConfig) if f.name != "suite"}
    result = upload(UploadConfig(suite=args.suite_dir, **values))
    where = f"pushed to {result.commit_url}" if result.commit_url else f"dry run: wrote the tree to {result.tree}"
    print(f"{len(result.release_entry['saes'])} SAEs, {len(result.files)} files; {where}")
    if result.payloads:
        print(
            f"Neuronpedia feature/upload-batch requests: {result.payloads}"
            + (" sent" if result.commit_url else " written")
        )
