"""Demo stage `export`: feature dashboards for the refusal and language latents the steering stage found.

Exports the SAEs those latents live in (the whole suite when the steering stage did not run) in
SAEDashboard's and Neuronpedia's formats, writes the offline viewer, and links each latent's dashboard
from the report (`export/viewer/index.html#sae=..&feature=..`).
"""

from __future__ import annotations

import re

from qwen3_scope.demo.run import DemoContext, stage

DEMO_PROMPTS = 128  # prompts of 128 tokens: enough for 20 top contexts + 25 interval samples per latent


def steering_latents(ctx: DemoContext) -> list[tuple[str, str, int, int]]:
    """(study, site, layer, feature) of every SAE latent the steering stage evaluated."""
    picks = []
    for study in ("refusal", "language"):
        summary = ctx.results.get("steer", {}).get(study)
        if summary is None:
            continue
        for row in summary[summary["method"] == "sae_feature"].itertuples():
            picks.append((study, row.site, int(row.layer), int(row.feature)))
    return picks


@stage("export")
def export_stage(ctx: DemoContext) -> None:
    from qwen3_scope.evaluation.suite_eval import ORGANISM_RELEASE
    from qwen3_scope.export import ExportConfig, run_export
    from qwen3_scope.export.viewer import viewer_link

    suite_dir = ctx.results.get("suite_dir")
    prefix = "" if suite_dir else "organism/"
    picks = steering_latents(ctx)
    ids = sorted({f"{prefix}{site}/layer_{layer}" for _, site, layer, _ in picks})
    pattern = "|".join(re.escape(i) for i in ids) if ids else ".*"
    source = (
        {"suite": suite_dir} if suite_dir else {"release": ORGANISM_RELEASE, "ids": pattern if ids else "organism/.*"}
    )
    if suite_dir:
        source["ids"] = pattern
    out = ctx.out_dir / "export"
    result = run_export(ExportConfig(out=out, n_prompts=DEMO_PROMPTS, html=True, overwrite=True, **source))
    ctx.results["export"] = {"out": out, "neuronpedia_ids": result.neuronpedia_ids, "seconds": result.seconds}
    rows = ["| study | SAE | feature | Neuronpedia id | dashboard |", "|---|---|---|---|---|"]
    for study, site, layer, feature in picks:
        sae_id = f"{prefix}{site}/layer_{layer}"
        link = "export/" + viewer_link(out, sae_id, feature)
        rows.append(
            f"| {study} | `{sae_id}` | {feature} | `{result.neuronpedia_ids[sae_id]}/{feature}` | [open]({link}) |"
        )
    body = (
        f"{len(result.sources)} SAEs exported from one pass of the model over {result.tokens} tokens of {result.dataset} "
        f"in {result.seconds:.1f} s: SAEDashboard's Neuronpedia batch files (`export/saedashboard/`), Neuronpedia's "
        f"bulk-import layout (`export/neuronpedia/`) and the offline viewer [export/viewer/index.html](export/viewer/index.html) "
        "(opens from disk, no server).\n\n"
        + ("\n".join(rows) if picks else "The steering stage did not run: every SAE of the suite was exported.")
    )
    ctx.section("Feature dashboards of the steering latents (Neuronpedia formats, offline viewer)", body)
