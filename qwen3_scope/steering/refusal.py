"""The refusal case study: find SAE latents that carry refusal and show they steer it, with numbers.

Pipeline (Arditi et al.'s protocol, with SAE latents as the candidates):
1. harmful and harmless prompts (the organism's held-out splits by default, or AdvBench/Alpaca-style
   files), each split into disjoint discovery and evaluation parts, formatted with the Qwen3 chat
   template in non-thinking mode;
2. discovery: mean SAE activations on harmful minus harmless at the post-instruction tokens, for every
   SAE of the suite (all layers and sites), ranked (`discovery.contrast`); the top latents are screened
   causally on the discovery prompts and the best `top_k` kept (`sweep`);
3. sweep on the evaluation prompts: add +alpha on harmless prompts (induce refusal) and -alpha on
   harmful prompts (bypass), plus ablation, measuring the refusal rate with the judge
   (`qwen3_scope.model.judge`) and the coherence cost; the difference-in-means direction (the best
   residual layer) is the baseline in the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.judge import DEFAULT_JUDGE, refusal_rate
from qwen3_scope.model.loading import load_model, model_spec
from qwen3_scope.steering.config import RefusalStudyConfig
from qwen3_scope.steering.discovery import load_suite
from qwen3_scope.steering.prompts import load_prompt_file, organism_split
from qwen3_scope.steering.sweep import StudyResult, run_study, write_study

__all__ = [  # RefusalStudyConfig lives in qwen3_scope.steering.config (light, for the CLI); re-exported here
    "RefusalStudyConfig",
    "headline",
    "prompt_sets",
    "refusal_section",
    "run_refusal_study",
    "write_refusal_study",
]


def prompt_sets(cfg: RefusalStudyConfig) -> tuple[list[str], list[str]]:
    """(harmful, harmless) user messages: the given files, or the organism's held-out splits."""
    if cfg.harmful_file or cfg.harmless_file:
        if not (cfg.harmful_file and cfg.harmless_file):
            raise ConfigError("pass both a harmful and a harmless prompt file (or neither, for the organism's splits).")
        return load_prompt_file(cfg.harmful_file), load_prompt_file(cfg.harmless_file)
    return [r["prompt"] for r in organism_split("harmful")], [r["prompt"] for r in organism_split("harmless")]


def run_refusal_study(
    cfg: RefusalStudyConfig,
    model: Any = None,
    saes: dict[str, Any] | None = None,
    judge: Callable[[str], bool] | None = None,
    progress: bool = True,
) -> StudyResult:
    """Discovery, screening and alpha sweep; `judge` says whether one completion refuses (default:
    `qwen3_scope.model.judge`'s documented phrase matcher; any `str -> bool` callable plugs in)."""
    harmful, harmless = prompt_sets(cfg)  # bad prompt files fail before anything is loaded
    model = (
        model
        if model is not None
        else load_model(cfg.model, backend=cfg.backend, device=cfg.resolved_device, dtype=cfg.dtype)
    )
    saes = (
        saes
        if saes is not None
        else load_suite(
            cfg.suite_dir, cfg.release, cfg.sae_ids, model_spec(model).key, cfg.resolved_sae_device, dtype=cfg.sae_dtype
        )
    )
    judge = judge or DEFAULT_JUDGE
    meta = {
        "title": f"Refusal steering on {model_spec(model).name}",
        "judge": repr(judge),
        "config": asdict(cfg),
        "task_labels": {"induce": "induce (add, harmless prompts)", "suppress": "bypass (subtract, harmful prompts)"},
    }
    return run_study(
        "refusal", cfg, model, saes, harmful, harmless, lambda texts: refusal_rate(texts, judge), meta, progress
    )


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def headline(result: StudyResult) -> list[str]:
    """The sentences the README's closing note quotes: induce and bypass rates with alpha, costs, baseline."""
    s, base = result.summary, result.base
    lines = [
        f"Unsteered refusal rate: harmless {_fmt(base['induce']['rate'])}, harmful {_fmt(base['suppress']['rate'])} "
        f"(reference CE {_fmt(base['reference_ce'], 3)} nats/token)."
    ]
    for _, row in s.iterrows():
        what = "SAE latent" if row["method"] == "sae_feature" else "Baseline (difference-in-means)"
        ablate = ""
        if "ablate_rate" in row and row["ablate_rate"] == row["ablate_rate"]:
            how = (
                "latent ablated, error term kept"
                if row["method"] == "sae_feature"
                else "directional ablation at every layer"
            )
            ablate = f"; {how}: {_fmt(row['ablate_rate'])} (Δ CE {_fmt(row['ablate_ce_delta'], 3)})"
        lines.append(
            f"{what} `{row['candidate']}`: refusal on harmless prompts {_fmt(row['induce_max_rate'])} at alpha "
            f"{_fmt(row['induce_alpha'])} (Δ CE {_fmt(row['induce_ce_delta'], 3)}, fluency CE {_fmt(row['induce_fluency_ce'], 2)}); "
            f"refusal on harmful prompts down to {_fmt(row['suppress_min_rate'])} at alpha -{_fmt(row['suppress_alpha'])} "
            f"(Δ CE {_fmt(row['suppress_ce_delta'], 3)}, fluency CE {_fmt(row['suppress_fluency_ce'], 2)}){ablate}."
        )
    return lines


def refusal_section(result: StudyResult, plot_name: str = "refusal_sweep.png", top: int = 10) -> str:
    """Markdown for the demo report: method, headline numbers, the ranked latents and the per-candidate table."""
    meta = result.meta
    lines = [
        f"Model `{meta['model']}`, {meta['n_saes']} SAEs. Discovery on {meta['n_discover'][0]} harmful / {meta['n_discover'][1]} "
        f"harmless prompts (post-instruction tokens); the top {meta['screened']} latents screened on those prompts at alpha "
        f"{meta['screen_alpha']:g}; evaluation on {meta['n_eval'][0]} / {meta['n_eval'][1]} other held-out prompts "
        "(greedy, KV cache, non-thinking template). Alpha = multiples of the layer's mean residual norm along the unit "
        "direction, added at the post-instruction tokens; induce = add on harmless prompts, bypass = subtract on "
        "harmful prompts. Δ CE = rise in cross-entropy of the unsteered model's own harmless completions under steering.",
        "",
        *headline(result),
        "",
        "Top latents (harmful minus harmless, score = mean shift / residual norm; screen = induced refusal rate):",
        "",
        result.features.head(top)[
            ["sae_id", "feature", "mean_pos", "mean_neg", "freq_pos", "freq_neg", "score", "screen_rate"]
        ].to_markdown(index=False, floatfmt=".3f"),
        "",
        "Per candidate:",
        "",
        result.summary.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"![refusal rate vs alpha]({plot_name})",
    ]
    return "\n".join(lines)


def write_refusal_study(
    result: StudyResult, out_dir: str | Path, plot_name: str = "refusal_sweep.png"
) -> dict[str, Path]:
    return write_study(result, out_dir, "refusal rate", refusal_section(result, plot_name))
