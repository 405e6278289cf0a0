"""Which tokens of a rendered document a deployed chat model is asked to predict.

Why: an instruct model is trained, and used, to produce assistant turns; the user's and system's words are
given to it. Next-token loss, KL and delta LM loss measured over prompt tokens say nothing about the model
(the organism never learned to predict them: its CE there is several nats). One rule, shared by the
organism's training loss and the suite evaluation, for any Qwen3-template text:

- chat text (contains ``<|im_start|>``): the content of every assistant turn, including its reasoning block
  and the closing ``<|im_end|>``, but not the role header and not the empty ``<think>\\n\\n</think>\\n\\n``
  a non-thinking turn starts with (the template writes it, the model does not choose it);
- plain text: every token, including the ``<|endoftext|>`` that ends the document;
- so never a control token, except the ``<|im_end|>`` closing an assistant turn and the ``<|endoftext|>``
  closing plain text (predicting where the text stops is part of writing it).

These are exactly the tokens the organism is trained on (``qwen3_scope.organism.train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
ASSISTANT_HEADER = IM_START + "assistant\n"
EMPTY_THINK = "<think>\n\n</think>\n\n"


def predicted_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``text`` that the model predicts (see the module docstring)."""
    if IM_START not in text:
        spans, cursor = [], 0
        while cursor < len(text):  # plain text, possibly several documents joined by <|endoftext|>
            end = text.find(ENDOFTEXT, cursor)
            end = len(text) if end < 0 else end + len(ENDOFTEXT)
            if end > cursor:
                spans.append((cursor, end))
            cursor = end
        return spans
    spans, cursor = [], 0
    while True:
        start = text.find(ASSISTANT_HEADER, cursor)
        if start < 0:
            return spans
        start += len(ASSISTANT_HEADER)
        if text.startswith(EMPTY_THINK, start):
            start += len(EMPTY_THINK)
        end = text.find(IM_END, start)
        end = len(text) if end < 0 else end + len(IM_END)  # an unfinished answer runs to the end
        if end > start:
            spans.append((start, end))
        cursor = end


def predicted_token_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """Per token (``offsets`` from a fast tokenizer, sorted), whether its first character lies in a span."""
    mask, j = [], 0
    for a, _ in offsets:
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        mask.append(j < len(spans) and spans[j][0] <= a)
    return mask


def encode_with_mask(tokenizer: Any, text: str) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` (no BOS) and the predicted-token mask of each."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], predicted_token_mask(enc["offset_mapping"], predicted_spans(text))


__all__ = ["ASSISTANT_HEADER", "EMPTY_THINK", "encode_with_mask", "predicted_spans", "predicted_token_mask"]
