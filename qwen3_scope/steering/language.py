"""Language steering (Qwen-Scope's use case): find the latent of the organism's second language (French)
and show that amplifying it turns English answers French and suppressing it turns French answers English.

The language detector is deliberately simple and documented: a text is French when it holds more
French marker words than English ones, English when the reverse, "unknown" otherwise. Marker words =
a fixed list of frequent function words per language, plus, for the organism, the words that appear
only in the French (resp. only in the English) reference answers of its held-out language splits.
Letters with French diacritics (é, è, ê, à, ç, ù, ...) count as one French marker each word.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from qwen3_scope.steering.discovery import load_suite
from qwen3_scope.steering.prompts import load_prompt_file, organism_split
from qwen3_scope.steering.sweep import StudyConfig, StudyResult, run_study, write_study

FR_STOPWORDS = frozenset(
    "le la les un une des du de d l et est sont en au aux pour par avec sur dans ce cette ces qui que quoi "
    "je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses votre vos leur leurs pas ne plus "
    "mais ou donc car oui non voici très bien faire font être avoir suis es sommes êtes ont c est".split()
)
EN_STOPWORDS = frozenset(
    "the an and is are of to in for with by at from this that these those it its i you he she we they "
    "my your his her our their not no but or so yes here very well do does be have has was were what how "
    "which who then first there".split()
)
FRENCH_LETTERS = set("éèêëàâçùûüôîïœ")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


class LanguageDetector:
    """French vs English by marker-word counts (see the module docstring)."""

    def __init__(self, fr_words: Iterable[str] = FR_STOPWORDS, en_words: Iterable[str] = EN_STOPWORDS):
        self.fr = frozenset(w.lower() for w in fr_words)
        self.en = frozenset(w.lower() for w in en_words) - self.fr

    def scores(self, text: str) -> tuple[int, int]:
        words = _WORD.findall(text.lower())
        fr = sum(w in self.fr or bool(FRENCH_LETTERS & set(w)) for w in words)
        en = sum(w in self.en and not FRENCH_LETTERS & set(w) for w in words)
        return fr, en

    def __call__(self, text: str) -> str:
        fr, en = self.scores(text)
        return "fr" if fr > en else "en" if en > fr else "unknown"

    def rate(self, texts: Sequence[str], lang: str = "fr") -> float:
        """Fraction of `texts` detected as `lang` (an empty list has no rate: NaN)."""
        return sum(self(t) == lang for t in texts) / len(texts) if texts else float("nan")


def organism_detector() -> LanguageDetector:
    """Stop words plus the organism's own vocabulary: words exclusive to its French or English references."""
    vocab = {}
    for lang in ("en", "fr"):
        words = set()
        for row in organism_split(f"lang_{lang}"):
            words |= set(_WORD.findall(str(row.get("reference", "")).lower()))
        vocab[lang] = words
    return LanguageDetector(FR_STOPWORDS | (vocab["fr"] - vocab["en"]), EN_STOPWORDS | (vocab["en"] - vocab["fr"]))


@dataclass
class LanguageStudyConfig(StudyConfig):
    french_file: str | None = None
    english_file: str | None = None


def _prompt_sets(cfg: LanguageStudyConfig) -> tuple[list[str], list[str], LanguageDetector]:
    if cfg.french_file or cfg.english_file:
        if not (cfg.french_file and cfg.english_file):
            raise ValueError("pass both a French and an English prompt file (or neither, for the organism's splits).")
        return load_prompt_file(cfg.french_file), load_prompt_file(cfg.english_file), LanguageDetector()
    return ([r["prompt"] for r in organism_split("lang_fr")], [r["prompt"] for r in organism_split("lang_en")],
            organism_detector())


def run_language_study(
    cfg: LanguageStudyConfig, model: Any = None, saes: dict[str, Any] | None = None,
    detector: LanguageDetector | None = None, progress: bool = True,
) -> StudyResult:
    """French latents from French-vs-English prompts; rate = fraction of answers detected as French."""
    from qwen3_scope.loading import load_model, model_spec

    french, english, default_detector = _prompt_sets(cfg)  # bad prompt files fail before anything is loaded
    model = model if model is not None else load_model(cfg.model, backend=cfg.backend, device=cfg.device, dtype=cfg.dtype)
    saes = saes if saes is not None else load_suite(cfg.suite_dir, cfg.release, cfg.sae_ids, model_spec(model).key, cfg.sae_device,
                                                   dtype=cfg.sae_dtype)
    detector = detector or default_detector
    meta = {"title": f"Language steering (French latent) on {model_spec(model).name}", "config": asdict(cfg),
            "task_labels": {"induce": "amplify (English prompts)", "suppress": "suppress (French prompts)"}}
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
    lines += ["", result.features[cols].head(top).to_markdown(index=False, floatfmt=".3f"), "",
              s.to_markdown(index=False, floatfmt=".3f"), "", f"![French rate vs alpha]({plot_name})"]
    return "\n".join(lines)


def write_language_study(result: StudyResult, out_dir: str | Path, plot_name: str = "language_sweep.png") -> dict[str, Path]:
    return write_study(result, out_dir, "answers in French", language_section(result, plot_name))
