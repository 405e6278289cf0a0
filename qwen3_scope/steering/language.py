"""Language steering (Qwen-Scope's use case): find the latent of the organism's second language (French)
and show that amplifying it turns English answers French and suppressing it turns French answers English.

The French rate uses qwen3-scope's one language detector (`qwen3_scope.model.language`), the same measure as the
organism's "answer language = prompt language".
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.language import EN_STOPWORDS, FR_STOPWORDS, LanguageDetector
from qwen3_scope.model.loading import load_model, model_spec
from qwen3_scope.organism.language import organism_detector
from qwen3_scope.steering.config import LanguageStudyConfig
from qwen3_scope.steering.discovery import load_suite
from qwen3_scope.steering.prompts import load_prompt_file, organism_split
from qwen3_scope.steering.sweep import StudyResult, run_study, write_study

__all__ = [  # re-exported: the detector (model.language, organism.language), the config (steering.config)
    "EN_STOPWORDS",
    "FR_STOPWORDS",
    "LanguageDetector",
    "LanguageStudyConfig",
    "language_section",
    "organism_detector",
    "run_language_study",
    "write_language_study",
]


def _prompt_sets(cfg: LanguageStudyConfig) -> tuple[list[str], list[str], LanguageDetector]:
    if cfg.french_file or cfg.english_file:
        if not (cfg.french_file and cfg.english_file):
            raise ConfigError("pass both a French and an English prompt file (or neither, for the organism's splits).")
        return load_prompt_file(cfg.french_file), load_prompt_file(cfg.english_file), LanguageDetector()
    return (
        [r["prompt"] for r in organism_split("lang_fr")],
        [r["prompt"] for r in organism_split("lang_en")],
        organism_detector(),
    )


def run_language_study(
    cfg: LanguageStudyConfig,
    model: Any = None,
    saes: dict[str, Any] | None = None,
    detector: LanguageDetector | None = None,
    progress: bool = True,
) -> StudyResult:
    """French latents from French-vs-English prompts; rate = fraction of answers detected as French."""
    french, english, default_detector = _prompt_sets(cfg)  # bad prompt files fail before anything is loaded
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
    detector = detector or default_detector
    meta = {
        "title": f"Language steering (French latent) on {model_spec(model).name}",
        "config": asdict(cfg),
        "task_labels": {"induce": "amplify (English prompts)", "suppress": "suppress (French prompts)"},
    }
    return run_study("language", cfg, model, saes, french, english, detector.rate, meta, progress)


def language_section(result: StudyResult, plot_name: str = "language_sweep.png", top: int = 5) -> str:
    s, base, meta = result.summary, result.base, result.meta
    fmt = lambda x, d=2: "n/a" if x != x else f"{x:.{d}f}"  # noqa: E731
    lines = [
        f"French vs English prompts ({meta['n_discover'][0]} / {meta['n_discover'][1]} for discovery and screening, "
        f"{meta['n_eval'][0]} / {meta['n_eval'][1]} for evaluation). Rate = fraction of answers the marker-word detector "
        "calls French (`qwen3_scope.steering.language`); amplify = add the direction on English prompts, suppress = "
        "subtract it on French prompts; alpha as in the refusal study.",
        "",
        f"Unsteered: English prompts answered in French {fmt(base['induce']['rate'])}, French prompts {fmt(base['suppress']['rate'])}.",
    ]
    for _, row in s.iterrows():
        lines.append(
            f"`{row['candidate']}`: English prompts answered in French {fmt(row['induce_max_rate'])} at alpha "
            f"{fmt(row['induce_alpha'])} (Δ CE {fmt(row['induce_ce_delta'], 3)}); French prompts answered in French "
            f"{fmt(row['suppress_min_rate'])} at alpha -{fmt(row['suppress_alpha'])} (Δ CE {fmt(row['suppress_ce_delta'], 3)})."
        )
    cols = ["sae_id", "feature", "mean_pos", "mean_neg", "freq_pos", "freq_neg", "score", "screen_rate"]
    lines += [
        "",
        result.features[cols].head(top).to_markdown(index=False, floatfmt=".3f"),
        "",
        s.to_markdown(index=False, floatfmt=".3f"),
        "",
        f"![French rate vs alpha]({plot_name})",
    ]
    return "\n".join(lines)


def write_language_study(
    result: StudyResult, out_dir: str | Path, plot_name: str = "language_sweep.png"
) -> dict[str, Path]:
    return write_study(result, out_dir, "answers in French", language_section(result, plot_name))
