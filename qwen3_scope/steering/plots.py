"""One figure per steering study: behaviour rate vs alpha per candidate, with the coherence cost below it.

Why coherence in the same figure: a refusal rate of 1.0 means little if the model emits gibberish at
that alpha; the lower panels make over-steering visible next to the curve it would otherwise flatter.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display (also on headless CI)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from qwen3_scope.core.io import atomic_path  # noqa: E402


def plot_sweep(
    sweep: pd.DataFrame,
    path: str | Path,
    rate_label: str = "rate",
    title: str = "",
    task_labels: dict[str, str] | None = None,
) -> Path:
    labels = {"induce": "induce", "suppress": "suppress", **(task_labels or {})}
    add = sweep[sweep["mode"] == "add"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    for col, task in enumerate(("induce", "suppress")):
        part = add[add["task"] == task]
        for name, group in part.groupby("candidate", sort=False):
            group = group.sort_values("alpha")
            style = "--" if group["method"].iloc[0] == "diff_in_means" else "-"
            axes[0, col].plot(group["alpha"], group["rate"], style, marker="o", label=name)
            axes[1, col].plot(group["alpha"], group["harmless_ce_delta"], style, marker="o", label=name)
        axes[0, col].set_title(f"{labels[task]}: {rate_label}")
        axes[0, col].set_ylim(-0.05, 1.05)
        axes[1, col].set_title(f"{labels[task]}: coherence cost")
        axes[1, col].set_ylabel("Δ CE on reference completions (nats/token)")
        axes[1, col].set_xlabel(
            "alpha (× residual norm, unit direction)" + ("" if task == "induce" else ", subtracted")
        )
        axes[0, col].grid(alpha=0.3)
        axes[1, col].grid(alpha=0.3)
    axes[0, 0].set_ylabel(rate_label)
    axes[0, 1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
