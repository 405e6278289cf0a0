"""The one language detector of qwen3-scope (French vs English), used by the organism's behaviour measure
("answer language = prompt language") and by the language-steering study ("French rate"), so both report
the same measure.

It is deliberately simple and documented: a text is French when it holds more French marker words than
English ones, English when the reverse, "unknown" otherwise. Marker words = a fixed list of frequent function
words per language, plus, for the organism, the words that appear only in the French (resp. only in the
English) reference answers of its held-out language splits. A word with French diacritics (é, è, ê, à, ç,
ù, ...) counts as one French marker.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from qwen3_scope.organism import load_eval_split

# Words that are also English ("plus", "a", "on", ...) are not French markers.
FR_STOPWORDS = frozenset(
    "le la les un une des du de d l et est sont en au aux pour par avec sur dans ce cette ces qui que quoi "
    "je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses votre vos leur leurs pas ne "
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


@functools.cache
def organism_detector() -> LanguageDetector:
    """Stop words plus the organism's own vocabulary: words exclusive to its French or English references."""
    vocab = {}
    for lang in ("en", "fr"):
        words = set()
        for row in load_eval_split(f"lang_{lang}"):
            words |= set(_WORD.findall(str(row.get("reference", "")).lower()))
        vocab[lang] = words
    return LanguageDetector(FR_STOPWORDS | (vocab["fr"] - vocab["en"]), EN_STOPWORDS | (vocab["en"] - vocab["fr"]))


def detect_language(text: str) -> str:
    """'fr', 'en' or 'unknown' with the organism's detector (stop words plus its own vocabulary)."""
    return organism_detector()(text)
