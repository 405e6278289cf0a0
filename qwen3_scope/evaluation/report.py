"""Per-site summaries and a self-contained HTML report (plots embedded as base64) of a suite evaluation.

Why one file: a report that is a single HTML page can be mailed, attached to a CI run or opened offline,
with nothing to keep next to it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from qwen3_scope.core.io import atomic_write_text
from qwen3_scope.evaluation.bench_table import BASELINE, BenchRun, bench_columns, bench_markdown, column_note
from qwen3_scope.evaluation.plots import plot_bench, write_plots
from qwen3_scope.evaluation.suite_eval import write_table
from qwen3_scope.model.sites import SITES

SUMMARY_METRICS = {
    "fvu": "FVU",
    "l0": "L0",
    "dead_fraction": "dead fraction",
    "dense_fraction": "dense fraction",
    "ce_loss_without_sae": "clean CE",
    "ce_loss_score": "CE recovered",
    "ce_loss_score_mean_ablation": "CE recovered (mean abl.)",
    "kl_div_score": "KL score",
    "delta_lm_loss": "delta LM loss",
    "explained_variance": "EV",
}
TABLE_COLUMNS = [
    "sae_id",
    "site",
    "layer",
    "d_sae",
    "architecture",
    "l0",
    "fvu",
    "explained_variance",
    "mse",
    "cossim",
    "ce_loss_without_sae",
    "ce_loss_score",
    "ce_loss_score_mean_ablation",
    "delta_lm_loss",
    "kl_div_score",
    "ce_positions",
    "dead_fraction",
    "dense_fraction",
    "l2_ratio",
]


def site_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of the headline metrics per site (over layers and widths), with the number of SAEs."""
    metrics = [m for m in SUMMARY_METRICS if m in table.columns]
    summary = table.groupby("site", sort=False)[metrics].mean()
    summary.insert(0, "n_saes", table.groupby("site", sort=False).size())
    order = sorted(summary.index, key=lambda site: SITES.index(site) if site in SITES else len(SITES))
    return summary.loc[order].rename(columns=SUMMARY_METRICS).reset_index()


def _positions(table: pd.DataFrame) -> str:
    """Which positions the model-level metrics were averaged over, and how many."""
    if "ce_positions" not in table.columns or table["ce_positions"].isna().all():
        return "every non-special held-out token"
    scope = table["ce_scope"].iloc[0] if "ce_scope" in table.columns else ""
    where = (
        (
            "the positions whose next token the model predicts in deployment (assistant turns and plain text; "
            "never user-prompt or control tokens)"
        )
        if scope == "predicted tokens"
        else "every non-special token"
    )
    return f"{int(table['ce_positions'].max()):,} positions: {where}"


REPLACEMENT_COLUMNS = [
    "set",
    "n_transcoders",
    "layers",
    "model_layers",
    "ce_loss_without_replacement",
    "ce_loss_with_replacement",
    "delta_lm_loss",
    "kl_div_with_replacement",
    "ce_loss_with_ablation",
    "ce_loss_score",
    "ce_positions",
]


def replacement_lines(replacement: pd.DataFrame | None) -> list[str]:
    """One sentence per transcoder set: its whole replacement model's CE against the clean model's."""
    if replacement is None or replacement.empty:
        return []
    lines = []
    for row in replacement.itertuples():
        covered = f"all {row.model_layers} layers" if row.all_layers else f"layers {row.layers} of {row.model_layers}"
        lines.append(
            f"Replacement model {row.set} ({row.n_transcoders} transcoders, {covered} of MLPs replaced at once): CE "
            f"{row.ce_loss_with_replacement:.4f} against the clean model's {row.ce_loss_without_replacement:.4f} "
            f"(delta {row.delta_lm_loss:+.4f} nats/token, KL {row.kl_div_with_replacement:.4g}; CE recovered "
            f"{row.ce_loss_score:.3f} against those MLPs zero-ablated, CE {row.ce_loss_with_ablation:.4f}) on "
            f"{int(row.ce_positions):,} {row.ce_scope} positions."
        )
    return lines


def _image(path: Path, title: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(title)}</figcaption></figure>'


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}
figcaption{font-size:12px;color:#555}.meta{font-size:13px;color:#444}"""


def write_html_report(
    table: pd.DataFrame,
    plots: dict[str, Path],
    path: str | Path,
    title: str = "SAE suite evaluation",
    meta: dict[str, Any] | None = None,
    replacement: pd.DataFrame | None = None,
    bench: BenchRun | None = None,
) -> Path:
    """One HTML file: run facts, per-site means, the replacement models of transcoder sets, SAEBench's table (with
    `bench`: SAEs and baselines, its plot), the trade-off and per-layer plots, and the full table."""
    meta_rows = "".join(
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in (meta or {}).items()
    )
    columns = [c for c in TABLE_COLUMNS if c in table.columns] + bench_columns(table)
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False, "border": 0}
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<ul class="meta">{meta_rows}</ul>' if meta_rows else "",
        "<h2>Per-site means</h2>",
        site_summary(table).to_html(**fmt),
        "<p class='meta'>CE recovered = SAELens' ce_loss_score, (CE with zero-ablation - CE with SAE) / (CE with "
        "zero-ablation - clean CE); FVU = 1 - explained variance; delta LM loss = CE with SAE - clean CE (nats/token); "
        "dead = latents that never fired on the held-out tokens; dense = latents firing on more than the dense threshold "
        "of them. Clean CE is the model's own next-token loss; CE, KL and delta LM loss are averaged over "
        f"{_positions(table)}.</p>",
        *_replacement_section(replacement, fmt),
        *_bench_section(bench, plots, fmt),
        "<h2>Sparsity-fidelity trade-off</h2>",
        *(_image(p, name.replace("_", " ")) for name, p in plots.items() if name.startswith("l0_vs")),
        "<h2>Metrics across layers</h2>",
        *(_image(p, name.replace("_", " ")) for name, p in plots.items() if name == "metrics_by_layer"),
        "<h2>Every SAE</h2>",
        table[columns].to_html(**fmt),
    ]
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    return atomic_write_text(path, page)


def _replacement_section(replacement: pd.DataFrame | None, fmt: dict[str, Any]) -> list[str]:
    lines = replacement_lines(replacement)
    if not lines or replacement is None:
        return []
    columns = [c for c in REPLACEMENT_COLUMNS if c in replacement.columns]
    return [
        "<h2>Replacement model</h2>",
        *(f"<p>{html.escape(line)}</p>" for line in lines),
        replacement[columns].to_html(**fmt),
        "<p class='meta'>Every transcoder of a set replaces the MLP output of its layer at once, each reading the "
        "MLP input of the patched model (the replacement model of attribution graphs, without error terms); a "
        "transcoder's own row (site transcoder) splices it in alone. CE recovered (mean abl.) compares a transcoder "
        "with the MLP output replaced by its held-out mean.</p>",
    ]


def _bench_section(bench: BenchRun | None, plots: dict[str, Path], fmt: dict[str, Any]) -> list[str]:
    if bench is None:
        return []
    notes = "".join(f"<li><b>{html.escape(c)}</b>: {html.escape(column_note(c))}</li>" for c in bench.metrics)
    notes += "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in bench.notes.items())
    n_base = int((bench.table["source"] == BASELINE).sum())
    return [
        "<h2>SAEBench</h2>",
        f"<p>SAEBench 0.6's own evals (<code>qwen3-scope bench</code>, run {html.escape(bench.directory)}; data of the "
        f"supervised evals: {html.escape(bench.data or 'not recorded')}): {len(bench.table) - n_base} SAEs"
        + (f" and {n_base} baselines (identity, PCA, random SAE per site)" if n_base else "")
        + ". Its per-SAE numbers are also the <code>saebench_*</code> columns of the table below.</p>",
        bench.table.to_html(**fmt),
        f"<ul class='meta'>{notes}</ul>",
        *(_image(p, "SAEBench headline metrics") for name, p in plots.items() if name == "saebench"),
    ]


def bench_summary(bench: BenchRun) -> str:
    """SAEBench's table of a bench run (SAEs and baselines) with its notes, for the CLI's stdout."""
    return f"\nSAEBench (qwen3-scope bench run {bench.directory}):\n{bench_markdown(bench)}"


def markdown_summary(table: pd.DataFrame) -> str:
    """Per-site means as a markdown table (for report.md of the demo and the CLI's stdout)."""
    return site_summary(table).to_markdown(index=False, floatfmt=".4g")


def write_outputs(
    table: pd.DataFrame,
    out_dir: str | Path,
    title: str = "SAE suite evaluation",
    meta: dict[str, Any] | None = None,
    replacement: pd.DataFrame | None = None,
    bench: BenchRun | None = None,
) -> dict[str, Path]:
    """Table (CSV + Parquet), plots (PNG) and the HTML report under `out_dir`, with transcoder sets their
    replacement models (`replacement_model.csv/.parquet`, `SuiteEvaluation.replacement`), with a bench run
    SAEBench's table beside the SAEs' (`saebench.csv`, `saebench.png`, `SuiteEvaluation.bench`); returns every path."""
    out_dir = Path(out_dir)
    csv, parquet = write_table(table, out_dir)
    paths = {"csv": csv, "parquet": parquet}
    if replacement is not None and not replacement.empty:
        paths["replacement_csv"], paths["replacement_parquet"] = write_table(replacement, out_dir, "replacement_model")
    plots = write_plots(table, out_dir)
    if bench is not None:
        paths["saebench_csv"], paths["saebench_parquet"] = write_table(bench.table, out_dir, "saebench")
        plot = plot_bench(bench.table, out_dir / "saebench.png")
        if plot is not None:
            plots["saebench"] = plot
    report = write_html_report(
        table, plots, out_dir / "report.html", title=title, meta=meta, replacement=replacement, bench=bench
    )
    return {**paths, **plots, "report": report}
