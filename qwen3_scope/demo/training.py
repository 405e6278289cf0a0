"""Demo stage `train`: an SAE suite of the organism trained offline by `qwen3-scope train`'s code path.

Quick demo: a few SAEs (one layer x resid_post/mlp_out/attn_out) on a short token budget, to show training;
the later stages keep using the bundled suite. Full demo (`--full`): the same suite as the bundled one (every
layer x the three sites, widths, tokens, the layer-3 sparsity sweep), which every later stage then uses.
Either way the section reports the explained variance and L0 of every SAE on held-out organism text.
"""

from __future__ import annotations

from typing import Any

from qwen3_scope.demo.state import COMPUTED, DemoState
from qwen3_scope.model.sites import PAPER_SITES
from qwen3_scope.training.config import SuiteTrainingConfig, organism_suite_config
from qwen3_scope.training.suite import train_suite


def suite_config(state: DemoState) -> SuiteTrainingConfig:
    """The organism: the bundled suite's recipe at the demo's sizes; another model: the paper recipe's defaults.
    One thread (several times faster than two on a busy 2-core machine); re-running the demo continues, or
    reuses, the suite (the quick one in its own folder, so switching presets never mixes them)."""
    cfg = state.config
    folder = "suite" if cfg.full else "suite-quick"
    run: dict[str, Any] = dict(out=str(state.out_dir / folder), threads=1, resume=True)
    if state.model != "organism":
        return SuiteTrainingConfig(model=state.model, recipe="paper", sites=list(PAPER_SITES), fast=None, **run)
    sizes: dict[str, Any] = dict(layers=cfg.train_layers, sites=list(cfg.train_sites), training_tokens=cfg.train_tokens)
    if not cfg.train_sweep:
        sizes.update(sparsities=None, sweep_layers=None)
    return organism_suite_config(**run, **sizes)


def train_stage(state: DemoState) -> None:
    result = train_suite(suite_config(state))
    state.trained_suite_dir = result.suite_dir
    if state.config.use_trained_suite:
        state.suite_dir = result.suite_dir
    table = result.metrics[["sae_id", "layer", "site", "variance_explained", "l0", "dead_fraction"]]
    per_site = table.groupby("site", sort=False)[["variance_explained", "l0", "dead_fraction"]].mean().round(4)
    groups = result.manifest["groups"]
    seconds = sum(g.get("seconds", 0.0) for g in groups)
    suite = result.plan.suite
    state.train_variance_explained = per_site["variance_explained"].to_dict()
    widths = {j.site: j.d_sae for j in suite.jobs}
    l0s = sorted({f"{j.sae_cfg.target_l0:g}" for j in suite.jobs}, key=float)
    used = (
        "The later stages use this suite."
        if state.suite_dir is not None
        else "A small suite that shows training; the later stages use the bundled suite (`--full` trains the whole "
        "bundled recipe and uses it)."
    )
    state.section(
        "Training: an SAE at every layer and site",
        f"Suite `{suite.name}` ({len(table)} JumpReLU SAEs; widths "
        f"{', '.join(f'{site} {width:,}' for site, width in widths.items())}; target L0 {', '.join(l0s)}) trained "
        f"with `qwen3-scope train` through SAELens' MultiSAETrainingRunner on {suite.training_tokens:,} "
        f"chat-formatted tokens per SAE, in {len(groups)} group(s) sharing forward passes ({seconds:.0f} s of "
        f"training). {used} Metrics on held-out organism text (special tokens and position 0 excluded, as in "
        f"training).\n\nMean per site:\n\n{per_site.reset_index().to_markdown(index=False)}\n\nEvery SAE:\n\n"
        f"{table.to_markdown(index=False)}\n\nSuite directory: `{result.suite_dir}` (SAELens layout; "
        "`manifest.json` records model, recipe, hooks, tokens and versions).",
        numbers=f"{COMPUTED}: SAEs trained in this run on the shipped organism",
    )
