"""`qwen3-scope export neuronpedia` (feature dashboards) and `qwen3-scope upload` (Hugging Face + Neuronpedia)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qwen3_scope.core.config_cli import add_config_arguments, config_from_args
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.export.config import CircuitTracerExportConfig, ExportConfig, TraceConfig, UploadConfig


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
    ct_parser = sub.add_parser(
        "circuit-tracer",
        help="a transcoder set in circuit-tracer's layout (config.yaml + layer_{i}.safetensors), or back",
        description="Write one ReLU/JumpReLU transcoder per layer (--suite DIR or --release R --ids REGEX) as "
        "circuit-tracer 0.5.0's transcoder set (the RMSNorm weight folded into W_enc for its weighted MLP input), "
        "with the model as transformers 4.x reads it; or --import-set DIR: a circuit-tracer set -> SAELens "
        "transcoder folders (cfg.json + sae_weights.safetensors).",
    )
    add_config_arguments(ct_parser, CircuitTracerExportConfig)
    ct_parser.set_defaults(func=cmd_export_circuit_tracer)

    trace = subparsers.add_parser(
        "trace",
        help="attribution graph of a prompt with transcoders, through circuit-tracer (in its own venv)",
        description="Export the transcoder set (default: the bundled organism set), run circuit-tracer 0.5.0 in its "
        "own venv (built on first use or with --setup; cached), write the graph JSON Neuronpedia's graph upload "
        "accepts and the features with the most influence on the answer.",
    )
    add_config_arguments(trace, TraceConfig)
    trace.set_defaults(func=cmd_trace)

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


def _circuit_jobs():
    """The circuit-tracer export and trace modules (one import for both commands)."""
    from qwen3_scope.export import circuit_tracer, trace  # lazy: keeps the CLI from importing torch

    return circuit_tracer, trace


def cmd_export_circuit_tracer(args: argparse.Namespace) -> None:
    result = _circuit_jobs()[0].run_circuit_tracer_export(config_from_args(CircuitTracerExportConfig, args))
    if isinstance(result, dict):
        print(f"imported {len(result)} transcoders (SAELens folders): {', '.join(str(p) for p in result.values())}")
        return
    print(
        f"{result.n_layers} {result.activation} transcoders x {result.d_transcoder} features of {result.model_name} "
        f"(scan {result.scan!r}) -> {result.out}"
        + (f"; model for transformers 4.x: {result.model_folder}" if result.model_folder else "")
    )


def cmd_trace(args: argparse.Namespace) -> None:
    result = _circuit_jobs()[1].run_trace(config_from_args(TraceConfig, args))
    if result.graph is None:
        print(f"circuit-tracer's environment is ready: {result.python}")
        return
    print(f"graph: {result.graph} (Neuronpedia graph JSON); logit targets: {result.logit_targets}")
    print("features with the most influence on the output:")
    for row in result.top_features:
        print(
            f"  {row['transcoder']} feature {row['feature']} at position {row['position']} ({row['token']!r}): "
            f"influence {row['influence']:.4f}, activation {row['activation']:.2f}"
        )
    if result.causal:
        c = result.causal
        print(
            f"causal check ({c['n_prompts']} prompts each; random: {len(c['harmful_refusal_random_ablated'])} sets of "
            f"active features, same layers): harmful refusal {c['harmful_refusal']:.2f} -> {c['harmful_refusal_top_ablated']:.2f} "
            f"with the top features ablated (random: {', '.join(f'{x:.2f}' for x in c['harmful_refusal_random_ablated'])}); "
            f"harmless refusal {c['harmless_refusal']:.2f} -> {c['harmless_refusal_top_clamped']:.2f} with them clamped "
            f"(random: {', '.join(f'{x:.2f}' for x in c['harmless_refusal_random_clamped'])})"
        )
        if c.get("sae_comparison"):
            print(f"decoder cosines with {c['sae_comparison']['sae']} latents: {c['sae_comparison']['latents']}")
    print(f"{result.seconds:.1f} s (details: {result.out / 'trace.json'})")
