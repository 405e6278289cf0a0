"""Sparsity-fidelity pictures of a suite table: L0 vs FVU / delta LM loss, and every metric across layers.

Why these: the paper compares sites by where their SAEs sit on the sparsity-fidelity trade-off and by how
fidelity changes with depth; both read directly off the table `evaluate_suite` returns.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display (also on headless CI)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from qwen3_scope.core.errors import ConfigError  # noqa: E402
from qwen3_scope.core.io import atomic_path  # noqa: E402
from qwen3_scope.evaluation.bench_table import BASELINE  # noqa: E402
from qwen3_scope.model.sites import SITES  # noqa: E402

LAYER_METRICS = (
    "fvu",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "ce_loss_score",
    "kl_div_score",
    "delta_lm_loss",
    "cossim",
)
LABELS = {
    "fvu": "FVU (1 - explained variance)",
    "l0": "L0 (active latents / token)",
    "dead_fraction": "dead fraction",
    "dense_fraction": "dense fraction",
    "ce_loss_score": "CE loss recovered",
    "ce_loss_score_mean_ablation": "CE loss recovered vs mean ablation",
    "kl_div_score": "KL score",
    "delta_lm_loss": "delta LM loss (nats)",
    "cossim": "cosine similarity",
    "explained_variance": "explained variance",
}


def _site_order(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["site"]))
    return [s for s in SITES if s in present] + [s for s in present if s not in SITES]


def _colors(sites: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {
        site: cycle[SITES.index(site) % len(cycle) if site in SITES else i % len(cycle)] for i, site in enumerate(sites)
    }


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_tradeoff(table: pd.DataFrame, y: str, path: str | Path, x: str = "l0") -> Path:
    """Scatter of `x` (L0) against `y`, one colour per site, each point labelled with its layer."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    sites = _site_order(table)
    colors = _colors(sites)
    for site in sites:
        rows = table[table["site"] == site]
        ax.scatter(rows[x], rows[y], label=site, color=colors[site], s=28, alpha=0.85)
        for row in rows.itertuples():
            ax.annotate(
                str(row.layer),
                (getattr(row, x), getattr(row, y)),
                fontsize=6,
                xytext=(2, 2),
                textcoords="offset points",
            )
    positive = table[x][table[x] > 0]
    if len(positive) == len(table) and positive.max() / positive.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.set_title(f"{LABELS.get(x, x).split(' (')[0]} vs {LABELS.get(y, y).split(' (')[0]} (numbers: layer)")
    ax.grid(alpha=0.3)
    ax.legend(title="site")
    return _save(fig, Path(path))


def plot_across_layers(table: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = LAYER_METRICS) -> Path:
    """One panel per metric, x = layer, one line per site (and per width when a site has several)."""
    metrics = tuple(m for m in metrics if m in table.columns)
    cols = 2
    rows_n = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(11, 2.8 * rows_n), squeeze=False)
    sites = _site_order(table)
    colors = _colors(sites)
    several_widths = table.groupby("site")["d_sae"].nunique().max() > 1
    for ax, metric in zip(axes.flat, metrics):
        for site in sites:
            for width, rows in table[table["site"] == site].groupby("d_sae"):
                rows = rows.sort_values("layer")
                label = f"{site} ({width})" if several_widths else site
                ax.plot(
                    rows["layer"],
                    rows[metric],
                    marker="o",
                    ms=3,
                    color=colors[site],
                    label=label,
                    alpha=0.9 if width == table["d_sae"].max() else 0.5,
                )
        ax.set_title(LABELS.get(metric, metric), fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), title="site", bbox_to_anchor=(0.5, 1.0))
    return _save(fig, Path(path))


FRONTIER_METRICS = ("fvu", "ce_loss_score", "delta_lm_loss")


def plot_frontiers(table: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = FRONTIER_METRICS) -> Path:
    """Sparsity-fidelity frontiers in Gemma Scope's style: one row per site, one panel per metric (L0 against
    FVU, CE recovered, delta LM loss), one curve per layer through that layer's SAEs sorted by L0 (a sparsity
    sweep gives several points per layer; a single SAE is a point)."""
    metrics = tuple(m for m in metrics if m in table.columns)
    sites = _site_order(table)
    fig, axes = plt.subplots(len(sites), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(sites)), squeeze=False)
    layers = sorted(table["layer"].unique())
    cmap = plt.get_cmap("viridis")
    for r, site in enumerate(sites):
        rows = table[table["site"] == site]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            for layer, group in rows.groupby("layer"):
                group = group.sort_values("l0")
                color = cmap(layers.index(layer) / max(1, len(layers) - 1))
                ax.plot(group["l0"], group[metric], marker="o", ms=3, color=color, label=f"layer {layer}")
            ax.set_title(f"{site}: {LABELS.get(metric, metric).split(' (')[0]}", fontsize=9)
            ax.set_xlabel(LABELS["l0"], fontsize=8)
            ax.grid(alpha=0.3)
            if (rows["l0"] > 0).all() and rows["l0"].max() / max(rows["l0"].min(), 1e-9) > 20:
                ax.set_xscale("log")
        axes[r][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, Path(path))


def write_plots(table: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """The standard figures of a suite evaluation, as PNG files in `out_dir`."""
    if table.empty:
        raise ConfigError("the suite table is empty; there is nothing to plot.")
    out_dir = Path(out_dir)
    return {
        "l0_vs_fvu": plot_tradeoff(table, "fvu", out_dir / "l0_vs_fvu.png"),
        "l0_vs_delta_lm_loss": plot_tradeoff(table, "delta_lm_loss", out_dir / "l0_vs_delta_lm_loss.png"),
        "l0_vs_fidelity_frontiers": plot_frontiers(table, out_dir / "l0_vs_fidelity_frontiers.png"),
        "metrics_by_layer": plot_across_layers(table, out_dir / "metrics_by_layer.png"),
    }


def plot_bench(table: pd.DataFrame, path: str | Path) -> Path | None:
    """SAEBench's headline metrics of a `qwen3-scope bench` table: one panel per numeric metric, one bar per SAE,
    baselines (identity, PCA, random) hatched beside them; None when the table has no numeric metric."""
    metrics = [
        c
        for c in table.columns
        if c not in ("sae_id", "source") and pd.api.types.is_numeric_dtype(table[c]) and table[c].notna().any()
    ]
    if not metrics:
        return None
    baseline = (table["source"] == BASELINE).tolist()
    labels = [f"{s} (baseline)" if b else str(s) for s, b in zip(table["sae_id"], baseline)]
    cols = min(4, len(metrics))
    rows_n = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows_n, cols, figsize=(3.4 * cols, rows_n * (0.22 * len(table) + 1.2)), squeeze=False, sharey=True
    )
    colors = ["#bbbbbb" if b else "#1f77b4" for b in baseline]
    for ax, metric in zip(axes.flat, metrics):
        ax.barh(labels, table[metric].astype(float), color=colors)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()  # the table's order, top down (the y axis is shared)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle("SAEBench headline metrics (grey: baselines)", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))
