"""Demo stage `train`: the organism's every layer x {resid_post, mlp_out, attn_out} SAE suite, offline.

Why in the demo: later stages (registry, evaluation, steering, export) need a real suite trained by this
repo's own pipeline; this stage makes it with the same code path as `qwen3-scope train` and reports the
explained variance and L0 of every SAE on held-out organism text.
"""

from __future__ import annotations

from qwen3_scope.demo import DemoContext, stage
from qwen3_scope.sites import PAPER_SITES


@stage("train")
def train_stage(ctx: DemoContext) -> None:
    from qwen3_scope.training.suite import train_suite

    result = train_suite(
        model=ctx.model,
        recipe="paper",
        out=ctx.out_dir / "suite",
        sites=list(PAPER_SITES),
        fast=None,
        threads=1,
        resume=True,
    )
    # fast classes when installed; one thread (several times faster than two on a busy 2-core machine);
    # re-running the demo continues, or reuses, the suite
    ctx.results["suite_dir"] = result.suite_dir
    table = result.metrics[["sae_id", "layer", "site", "variance_explained", "l0", "dead_fraction"]]
    per_site = table.groupby("site", sort=False)[["variance_explained", "l0", "dead_fraction"]].mean().round(4)
    groups = result.manifest["groups"]
    seconds = sum(g.get("seconds", 0.0) for g in groups)
    suite = result.plan.suite
    ctx.results["train_variance_explained"] = per_site["variance_explained"].to_dict()
    ctx.section(
        "Training: an SAE at every layer and site",
        f"Suite `{suite.name}` ({len(table)} JumpReLU SAEs, width {suite.jobs[0].d_sae}, target L0 "
        f"{getattr(suite.jobs[0].sae_cfg, 'target_l0', '-')}) trained with `qwen3-scope train` through SAELens' "
        f"MultiSAETrainingRunner on {suite.training_tokens:,} chat-formatted tokens per SAE, in {len(groups)} "
        f"group(s) sharing forward passes ({seconds:.0f} s of training). Metrics on held-out organism text "
        f"(special tokens and position 0 excluded, as in training).\n\nMean per site:\n\n"
        f"{per_site.reset_index().to_markdown(index=False)}\n\nEvery SAE:\n\n{table.to_markdown(index=False)}\n\n"
        f"Suite directory: `{result.suite_dir}` (SAELens layout; `manifest.json` records model, recipe, hooks, tokens "
        "and versions).",
    )
