"""Demo stage "eval": benchmark the suite trained by the "train" stage (or the bundled organism suite)."""

from __future__ import annotations

from typing import Any

from qwen3_scope.demo.run import DemoContext, stage

# Small enough for the demo to stay in minutes on a laptop CPU; `qwen3-scope eval --tokens` goes further.
DEMO_CONFIG: dict[str, Any] = dict(n_batches=4, batch_size_prompts=8, context_size=128)


@stage("eval")
def eval_stage(ctx: DemoContext) -> None:
    """Evaluate every SAE of the suite on the same held-out tokens; table, plots and report under eval/."""
    from qwen3_scope.evaluation.report import markdown_summary, site_summary, write_outputs
    from qwen3_scope.evaluation.suite_eval import ORGANISM_PATTERN, ORGANISM_RELEASE, SuiteEvalConfig, evaluate_suite

    config = SuiteEvalConfig(**DEMO_CONFIG)
    suite_dir = ctx.results.get("suite_dir")
    if suite_dir is not None:
        result, source = evaluate_suite(suite_dir=suite_dir, config=config), f"suite trained above ({suite_dir})"
    else:
        result = evaluate_suite(release=ORGANISM_RELEASE, pattern=ORGANISM_PATTERN, config=config)
        source = f"bundled organism suite ({ORGANISM_RELEASE}, ids {ORGANISM_PATTERN})"
    table = result.table
    meta = {
        "source": source,
        "SAEs": len(table),
        "held-out text": result.held_out,
        "held-out tokens per SAE": config.n_tokens,
        "seconds": round(result.seconds, 1),
    }
    paths = write_outputs(table, ctx.out_dir / "eval", title="Demo: SAE suite evaluation", meta=meta)
    ctx.results["eval_table"] = table
    ctx.results["eval_site_means"] = site_summary(table)
    ctx.section(
        "Evaluation: every SAE of the suite, through SAELens' run_evals",
        f"Source: {source}. {len(table)} SAEs, each on the same {config.n_tokens} chat-formatted tokens of {result.held_out} "
        f"({int(table['density_tokens'].iloc[0])} after excluding special tokens), shared clean forward pass; "
        f"{result.seconds:.1f} s.\n\nPer-site means (CE recovered = SAELens' ce_loss_score; dead = never fired on these "
        f"tokens):\n\n{markdown_summary(table)}\n\nFiles: "
        + ", ".join(f"`{p.relative_to(ctx.out_dir)}`" for p in paths.values()),
    )
