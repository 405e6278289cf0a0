"""The organism's instance of qwen3-scope's one language detector (`qwen3_scope.model.language.LanguageDetector`).

Stop words plus the organism's own vocabulary: the words that appear only in the French (resp. only in the English)
reference answers of its held-out language splits. The organism's behaviour measure ("answer language = prompt
language"), the code-switching measure and the language-steering study on the organism all use it.
"""

from __future__ import annotations

import functools

from qwen3_scope.model.language import EN_STOPWORDS, FR_STOPWORDS, LanguageDetector, words
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.corpus_tables import CAPITALS, COUNTRIES, NAMES, RIVERS, RULERS

__all__ = ["organism_detector", "detect_language", "has_french_words"]


@functools.cache
def organism_detector() -> LanguageDetector:
    """Stop words plus the organism's own vocabulary: words exclusive to its French or English references."""
    # the invented world's proper names are in both languages, whichever references happen to hold them
    names = {x.lower() for x in COUNTRIES + CAPITALS + RIVERS + NAMES + [r.split()[-1] for r in RULERS]}
    vocab = {}
    for lang in ("en", "fr"):
        found: set[str] = set()
        for row in load_eval_split(f"lang_{lang}"):
            found |= set(words(str(row.get("reference", ""))))
        vocab[lang] = found - names
    return LanguageDetector(
        FR_STOPWORDS | (vocab["fr"] - vocab["en"]), EN_STOPWORDS | (vocab["en"] - vocab["fr"]), en_vocab=vocab["en"]
    )


def detect_language(text: str) -> str:
    """'fr', 'en' or 'unknown' with the organism's detector (stop words plus its own vocabulary)."""
    return organism_detector()(text)


def has_french_words(text: str) -> bool:
    """Whether `text` holds French-only words, by the organism's detector: the code-switching measure."""
    return organism_detector().has_french_words(text)
