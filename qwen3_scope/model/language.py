"""The one language detector of qwen3-scope (French vs English), used by the organism's behaviour measure
("answer language = prompt language") and by the language-steering study ("French rate"), so both report
the same measure.

It is deliberately simple and documented: a text is French when it holds more French marker words than
English ones, English when the reverse, "unknown" otherwise. Marker words = a fixed list of frequent function
words per language (this module, for any model), plus, for the organism, the words that appear only in the French
(resp. only in the English) reference answers of its held-out language splits (`qwen3_scope.organism.language`
builds that instance of this same `LanguageDetector`). A word with French diacritics (é, è, ê, à, ç, ù, ...)
counts as one French marker.

Code-switching (French words inside an English answer) is the same detector's `has_french_words`: a word with
French diacritics, or a French marker word that is not also an English word (`EN_HOMOGRAPHS` such as "car" or
"pour", the English vocabulary the detector knows) and is longer than one letter ("d'", "l'" are too ambiguous).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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
# French marker words that English texts use too: never evidence of French words inside English text.
EN_HOMOGRAPHS = frozenset("car pour son font non ma mon".split())
FRENCH_LETTERS = set("éèêëàâçùûüôîïœ")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """The lower-cased words of `text` as the detector sees them (letters only: no digits or underscores)."""
    return _WORD.findall(text.lower())


class LanguageDetector:
    """French vs English by marker-word counts (see the module docstring)."""

    def __init__(
        self,
        fr_words: Iterable[str] = FR_STOPWORDS,
        en_words: Iterable[str] = EN_STOPWORDS,
        en_vocab: Iterable[str] = (),
    ):
        self.fr = frozenset(w.lower() for w in fr_words)
        en = frozenset(w.lower() for w in en_words)
        self.en = en - self.fr
        # every word an English text may hold: never evidence of French words inside English text
        self.en_vocab = en | EN_HOMOGRAPHS | frozenset(w.lower() for w in en_vocab)

    def scores(self, text: str) -> tuple[int, int]:
        ws = words(text)
        fr = sum(w in self.fr or bool(FRENCH_LETTERS & set(w)) for w in ws)
        en = sum(w in self.en and not FRENCH_LETTERS & set(w) for w in ws)
        return fr, en

    def __call__(self, text: str) -> str:
        fr, en = self.scores(text)
        return "fr" if fr > en else "en" if en > fr else "unknown"

    def french_words(self, text: str) -> list[str]:
        """The words of `text` only French has (see the module docstring), in order."""
        return [
            w
            for w in words(text)
            if FRENCH_LETTERS & set(w) or (len(w) > 1 and w in self.fr and w not in self.en_vocab)
        ]

    def french_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the French-only words of `text` (which tokens of a text are French)."""
        return [m.span() for m in _WORD.finditer(text) if self.french_words(m.group())]

    def has_french_words(self, text: str) -> bool:
        """Whether `text` holds a French-only word: code-switching when `text` is an English answer."""
        return bool(self.french_words(text))

    def rate(self, texts: Sequence[str], lang: str = "fr") -> float:
        """Fraction of `texts` detected as `lang` (an empty list has no rate: NaN)."""
        return sum(self(t) == lang for t in texts) / len(texts) if texts else float("nan")
