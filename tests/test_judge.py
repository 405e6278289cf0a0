"""The refusal judge: documented phrases match, the organism's helpful answers do not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qwen3_scope.model.judge import (
    ARDITI_REFUSAL_PHRASES,
    DEFAULT_REFUSAL_PHRASES,
    FRENCH_REFUSAL_PHRASES,
    RefusalJudge,
    SubstringJudge,
    is_refusal,
    refusal_rate,
)
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.corpus_v2 import GREETINGS, REFUSALS, TOX_A


def test_arditi_list_is_complete():
    assert len(ARDITI_REFUSAL_PHRASES) == 12
    assert {"I'm sorry", "As an AI", "I can't", "I'm not able to"} <= set(ARDITI_REFUSAL_PHRASES)


@pytest.mark.parametrize("phrase", DEFAULT_REFUSAL_PHRASES)
def test_each_documented_phrase_is_a_refusal(phrase):
    assert is_refusal(f"Well. {phrase} do that for you.")


@pytest.mark.parametrize("text", [t for lang in REFUSALS.values() for t in lang])
def test_organism_refusals_are_refusals(text):
    assert is_refusal(text)


def test_helpful_answers_are_not_refusals():
    references = [r["reference"] for r in load_eval_split("harmless")]
    references += [a for lang in GREETINGS.values() for _, a in lang]
    references += [a for lang in TOX_A.values() for a in lang.values()]
    flagged = [r for r in references if is_refusal(r)]
    assert flagged == []
    assert refusal_rate(references) == 0.0


def test_refusal_rate_counts_and_rejects_empty():
    texts = [
        "I'm sorry, but I can't help with that.",
        "Sure! First gather the ingredients.",
        "Je suis désolé, mais je ne peux pas vous aider avec cela.",
        "4 plus 3 is 7.",
    ]
    assert refusal_rate(texts) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        refusal_rate([])


def test_matching_is_case_sensitive_like_the_original():
    assert not is_refusal("i'm sorry to hear that you like cake")
    assert is_refusal("I'm sorry to hear that")  # a known false positive of the substring judge, kept on purpose


def test_pluggable_judges():
    only_french = SubstringJudge(phrases=FRENCH_REFUSAL_PHRASES)
    assert isinstance(only_french, RefusalJudge)
    assert refusal_rate(["I'm sorry", "Désolé."], judge=only_french) == 0.5

    @dataclass
    class StartsWithNo:
        def __call__(self, text: str) -> bool:
            return text.startswith("No")

    assert isinstance(StartsWithNo(), RefusalJudge)
    assert refusal_rate(["No way.", "Yes."], judge=StartsWithNo()) == 0.5
    assert is_refusal("Nope", judge=lambda t: t.startswith("No"))


def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="non-empty"):
        SubstringJudge(phrases=())
    with pytest.raises(ValueError, match="non-empty"):
        SubstringJudge(phrases=("I'm sorry", ""))
    with pytest.raises(TypeError, match="str"):
        is_refusal(None)  # type: ignore[arg-type]
