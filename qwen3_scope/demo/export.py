"""Demo stage `export`: feature dashboards for the refusal and language latents the steering stage found.

Exports the SAEs those latents live in (the whole suite when the steering stage did not run) in
SAEDashboard's and Neuronpedia's formats, writes the offline viewer, and links each latent's dashboard
from the report (`export/viewer/index.html#sae=..&feature=..`).
"""

from __future__ import annotations

import re
from typing import Any

from qwen3_scope.demo.state import COMPUTED, DemoState, ExportSummary
from qwen3_scope.export.config import ExportConfig
from qwen3_scope.export.job import run_export
from qwen3_scope.export.viewer import viewer_link
from qwen3_scope.model.family import ORGANISM_NAME
from qwen3_scope.naming import RELEASE, sae_id


def steering_latents(state: DemoState) -> list[tuple[str, str, int, int]]:
    """(study, site, layer, feature) of every SAE latent the steering stage evaluated."""
    if state.steer is None:
        return []
    picks = []
    for study, summary in (("refusal", state.steer.refusal), ("language", state.steer.language)):
        for row in summary[summary["method"] == "sae_feature"].itertuples():
            picks.append((study, row.site, int(row.layer), int(row.feature)))
    return picks


def export_stage(state: DemoState) -> None:
    suite_dir = state.suite_dir
    model_key = None if suite_dir else ORGANISM_NAME  # ids inside a suite, or the organism's release ids
    picks = steering_latents(state)
    ids = sorted({sae_id(site, layer, model_key) for _, site, layer, _ in picks})
    pattern = "|".join(re.escape(i) for i in ids) if ids else ".*"
    source: dict[str, Any] = (
        {"suite": suite_dir, "ids": pattern}
        if suite_dir
        else {"release": RELEASE, "ids": pattern if ids else f"{ORGANISM_NAME}/.*"}
    )
    out = state.out_dir / "export"
    n_prompts = state.config.export_prompts
    result = run_export(ExportConfig(out=out, n_prompts=n_prompts, html=True, overwrite=True, **source))
    state.export = ExportSummary(out=out, neuronpedia_ids=result.neuronpedia_ids, seconds=result.seconds)
    rows = ["| study | SAE | feature | Neuronpedia id | dashboard |", "|---|---|---|---|---|"]
    for study, site, layer, feature in picks:
        sae = sae_id(site, layer, model_key)
        link = "export/" + viewer_link(out, sae, feature)
        rows.append(f"| {study} | `{sae}` | {feature} | `{result.neuronpedia_ids[sae]}/{feature}` | [open]({link}) |")
    body = (
        f"{len(result.sources)} SAEs exported from one pass of the model over {result.tokens} tokens of "
        f"{result.dataset} in {result.seconds:.1f} s: SAEDashboard's Neuronpedia batch files (`export/saedashboard/`), "
        "Neuronpedia's bulk-import layout (`export/neuronpedia/`) and the offline viewer "
        "[export/viewer/index.html](export/viewer/index.html) (opens from disk, no server).\n\n"
        + ("\n".join(rows) if picks else "The steering stage did not run: every SAE of the suite was exported.")
    )
    state.section(
        "Feature dashboards of the steering latents (Neuronpedia formats, offline viewer)",
        body,
        numbers=f"{COMPUTED}, from {n_prompts} prompts of 128 tokens, with the SAEs of {state.suite_source()}",
    )
