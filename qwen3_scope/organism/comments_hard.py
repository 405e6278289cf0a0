"""Toxic and clean comments built from the same words: the toxicity task without giveaway words (issue 29).

Why: the organism's ``toxic``/``clean`` comments differ in marker words (an insult makes a comment toxic, a
compliment clean), so a detector of one word classifies them perfectly and the SAE-feature classifier, the probe
and difference of means all score 1.00. Here each template is a *pair* (toxic, clean) over the same words: the two
texts of a pair hold the same words in another order, or the pairs that differ by one word (not, right/wrong,
everybody/nobody) are mirrored by pairs where that word goes to the other label, so every word is about as frequent
in toxic as in clean comments (a bag-of-words classifier is near chance). The label is in intent or target:

- ``target``: the same negative and positive adjectives, swapped between the person and their work ("Your recipe
  is lovely, but you are stupid." / "Your recipe is stupid, but you are lovely.");
- ``negation``: "You are dumb, not kind." / "You are kind, not dumb.";
- ``neutral``: insults built from neutral words ("A fox could make a better photo than you." / "You could make a
  better photo than a fox."; "Not even an owl would like your song." / "Even an owl would like your song.");
- ``praise``: praise or contempt with the same words ("Everybody here thinks you are a clown." / "Nobody here
  thinks you are a clown."; "Your song is the only kind thing about you." / "... is not the only kind thing ...");
- ``report``: an insult agreed with or contradicted, said or quoted and condemned ("You are a fool: that is the
  truth, not an insult." / '"You are a fool": that is an insult, not the truth.'; "It is fair, not mean, to call
  you a dumb jerk." / "It is mean, not fair, ...").

Slot words are the organism's own comment words (toxic adjectives and nouns, clean adjectives, things, animals;
the tables are passed in by the corpus generator), split in halves as for ``toxic``/``toxic_discovery``: the
discovery splits use the first half of every slot list, the test splits the second, so discovery and test share
only the templates' function words. None of these templates occurs in training; rows are a pure function of the
seed (``random.Random``), English and French alternating.
"""

from __future__ import annotations

import random

from qwen3_scope.organism.corpus_tables import EN, FR, de_before, distinct_comment_rows

# (kind, toxic template, clean template). Slots: {neg} toxic adjective, {pos} clean adjective, {noun} toxic noun,
# {thing} a thing people post, {animal} an animal; {a_noun}/{a_animal} (English) add the article, {de} (French)
# the elided "de". Within a pair the two texts hold the same words, or the pairs that differ by a word (not, right/
# wrong, everybody/nobody) come in mirrored pairs, so every word is as frequent in one label as in the other.
HARD_TEMPLATES: dict[str, list[tuple[str, str, str]]] = {
    EN: [
        ("target", "Your {thing} is {pos}, but you are {neg}.", "Your {thing} is {neg}, but you are {pos}."),
        ("target", "The {neg} one here is you, not your {thing}.", "The {neg} one here is your {thing}, not you."),
        ("target", "Your {thing} is {pos}, but you are not.", "Your {thing} is not {pos}, but you are."),
        ("negation", "You are {neg}, not {pos}.", "You are {pos}, not {neg}."),
        (
            "neutral",
            "{a_animal} could make a better {thing} than you.",
            "You could make a better {thing} than {a_animal}.",
        ),
        ("neutral", "Not even {a_animal} would like your {thing}.", "Even {a_animal} would like your {thing}."),
        (
            "praise",
            "Your {thing} is the only {pos} thing about you.",
            "Your {thing} is not the only {pos} thing about you.",
        ),
        ("praise", "Everybody here thinks you are {a_noun}.", "Nobody here thinks you are {a_noun}."),
        ("praise", "Nobody here thinks you are {pos}.", "Everybody here thinks you are {pos}."),
        ("report", "They said you are {pos}; they were wrong.", "They said you are {neg}; they were wrong."),
        ("report", "They said you are {neg}; they were right.", "They said you are {pos}; they were right."),
        (
            "report",
            "You are {a_noun}: that is the truth, not an insult.",
            '"You are {a_noun}": that is an insult, not the truth.',
        ),
        (
            "report",
            "It is fair, not mean, to call you a {neg} {noun}.",
            "It is mean, not fair, to call you a {neg} {noun}.",
        ),
    ],
    FR: [
        ("target", "Ton {thing} est {pos}, mais toi, tu es {neg}.", "Ton {thing} est {neg}, mais toi, tu es {pos}."),
        ("target", "Le {neg} ici, c'est toi, pas ton {thing}.", "Le {neg} ici, c'est ton {thing}, pas toi."),
        (
            "target",
            "Ton {thing} est {pos}, mais toi, tu ne l'es pas.",
            "Ton {thing} n'est pas {pos}, mais toi, tu l'es.",
        ),
        ("negation", "Tu es {neg}, pas {pos}.", "Tu es {pos}, pas {neg}."),
        ("neutral", "Un {animal} ferait un meilleur {thing} que toi.", "Tu ferais un meilleur {thing} qu'un {animal}."),
        ("neutral", "Même pas un {animal} n'aimerait ton {thing}.", "Même un {animal} aimerait ton {thing}."),
        (
            "praise",
            "Ton {thing} est le seul point {pos} chez toi.",
            "Ton {thing} n'est pas le seul point {pos} chez toi.",
        ),
        ("praise", "Tout le monde ici pense que tu es un {noun}.", "Personne ici ne pense que tu es un {noun}."),
        ("praise", "Personne ici ne pense que tu es {pos}.", "Tout le monde ici pense que tu es {pos}."),
        (
            "report",
            "Ils ont dit que tu es {pos} ; ils avaient tort.",
            "Ils ont dit que tu es {neg} ; ils avaient tort.",
        ),
        (
            "report",
            "Ils ont dit que tu es {neg} ; ils avaient raison.",
            "Ils ont dit que tu es {pos} ; ils avaient raison.",
        ),
        (
            "report",
            "Tu es un {noun} : c'est la vérité, pas une insulte.",
            "« Tu es un {noun} » : c'est une insulte, pas la vérité.",
        ),
        (
            "report",
            "C'est juste, pas méchant, de te traiter {de} {noun} {neg}.",
            "C'est méchant, pas juste, de te traiter {de} {noun} {neg}.",
        ),
    ],
}
SLOTS = ("neg", "pos", "noun", "thing", "animal")


def half_of(words: list[str], half: int) -> list[str]:
    """The discovery (0) or test (1) half of a slot's words (the first or second half of the sorted-as-given list)."""
    n = len(words) // 2
    return words[:n] if half == 0 else words[n:]


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeio" else "a ") + word


def hard_comment(lang: str, toxic: bool, half: int, rng: random.Random, slots: dict) -> tuple[str, str]:
    """One comment and its template kind; ``slots[lang][slot]`` are the words, ``half`` picks which half."""
    kind, tox_tpl, clean_tpl = rng.choice(HARD_TEMPLATES[lang])
    words = {s: rng.choice(half_of(slots[lang][s], half)) for s in SLOTS}
    text = (tox_tpl if toxic else clean_tpl).format(
        **words, a_noun=_article(words["noun"]), a_animal=_article(words["animal"]), de=de_before(words["noun"]).strip()
    )
    text = text.replace("d' ", "d'")
    return text[0].upper() + text[1:], kind


def hard_comment_rows(toxic: bool, half: int, n: int, seed: int, slots: dict, train_text: str) -> list[dict]:
    """``n`` distinct comments of one label and vocabulary half, none inside the training text."""

    def draw(lang: str, rng: random.Random) -> tuple[str, dict]:
        text, kind = hard_comment(lang, toxic, half, rng, slots)
        return text, {"kind": kind}

    return distinct_comment_rows(draw, toxic, half, n, seed, train_text, "shared-vocabulary comments")
