"""Demo stage `train`: the organism's every layer x {resid_post, mlp_out, attn_out} SAE suite, offline.

Why in the demo: later stages (registry, evaluation, steering, export) need a real suite trained by this
repo's own pipeline; this stage makes it with the same code path as `qwen3-scope train` and reports the
explained variance and L0 of every SAE on held-out organism text.
"""

from __future__ import annotations

from typing import Any

from qwen3_scope.demo.run import DemoContext, stage
from qwen3_scope.model.sites import PAPER_SITES


@stage("train")
def train_stage(ctx: DemoContext) -> None:
    from qwen3_scope.training.config import SuiteTrainingConfig, organism_suite_config
    from qwen3_scope.training.suite import train_suite

    # the organism: the same suite as the bundled one (widths, tokens, the layer-3 sparsity sweep); another model:
    # the paper recipe's defaults. One thread (several times faster than two on a busy 2-core machine); re-running
    # the demo continues, or reuses, the suite.
    run: dict[str, Any] = dict(out=str(ctx.out_dir / "suite"), threads=1, resume=True)
    config = (
        organism_suite_config(**run)
        if ctx.model == "organism"
        else SuiteTrainingConfig(model=ctx.model, recipe="paper", sites=list(PAPER_SITES), fast=None, **run)
    )
    result = train_suite(config)
    ctx.results["suite_dir"] = result.suite_dir
    table = result.metrics[["sae_id", "layer", "site", "variance_explained", "l0", "dead_fraction"]]
    per_site = table.groupby("site", sort=False)[["variance_explained", "l0", "dead_fraction"]].mean().round(4)
    groups = result.manifest["groups"]
    seconds = sum(g.get("seconds", 0.0) for g in groups)
    suite = result.plan.suite
    ctx.results["train_variance_explained"] = per_site["variance_explained"].to_dict()
    ctx.section(
        "Training: an SAE at every layer and site",
        f"Suite `{suite.name}` ({len(table)} JumpReLU SAEs; widths "
        f"{', '.join(f'{site} {width:,}' for site, width in {j.site: j.d_sae for j in suite.jobs}.items())}; target L0 "
        f"{', '.join(sorted({f'{j.sae_cfg.target_l0:g}' for j in suite.jobs}, key=float))}) trained with `qwen3-scope train` through SAELens' "
        f"MultiSAETrainingRunner on {suite.training_tokens:,} chat-formatted tokens per SAE, in {len(groups)} "
        f"group(s) sharing forward passes ({seconds:.0f} s of training). Metrics on held-out organism text "
        f"(special tokens and position 0 excluded, as in training).\n\nMean per site:\n\n"
        f"{per_site.reset_index().to_markdown(index=False)}\n\nEvery SAE:\n\n{table.to_markdown(index=False)}\n\n"
        f"Suite directory: `{result.suite_dir}` (SAELens layout; `manifest.json` records model, recipe, hooks, tokens "
        "and versions).",
    )
