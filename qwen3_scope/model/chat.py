"""Qwen3 chat formatting in non-thinking mode, as the instruct models are used and as SAEs should see them.

Why: Qwen3 has no BOS token and its template inserts an empty think block when `enable_thinking=False`;
prompts formatted any other way put activations off-distribution for every SAE and steering vector.
The 2507 releases split the modes: -Thinking-2507 models always think (their default here), -Instruct-2507
models have no think block; asking either for the other mode is a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.family import QWEN3_FAMILY, Qwen3ModelSpec, resolve_model

ENDOFTEXT, IM_START, IM_END, THINK, END_THINK = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"
QWEN3_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, THINK, END_THINK)
# The one definition of the empty think block Qwen3's template writes in non-thinking mode (enable_thinking=False).
NON_THINKING_BLOCK = f"{THINK}\n\n{END_THINK}\n\n"
ASSISTANT_START = f"{IM_START}assistant\n"

Messages = Sequence[dict[str, str]]


def as_messages(prompt: str | Messages, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return messages


class ThinkingModeError(ConfigError):
    """A thinking mode the model's chat template does not have."""


def chat_spec(tokenizer: Any, model: Any = None):
    """The registry spec of the model a prompt is formatted for: `model` (name, path or spec), else the family
    model the tokenizer was loaded from (`Qwen/Qwen3-4B-Thinking-2507`; a dictionary lookup, no file access);
    None when neither names one."""
    if isinstance(model, Qwen3ModelSpec):
        return model
    if model is not None:
        return resolve_model(model)
    name = str(getattr(tokenizer, "name_or_path", "") or "").lower().removeprefix("qwen/")
    return next(
        (spec for official, spec in QWEN3_FAMILY.items() if official.lower().removeprefix("qwen/") == name), None
    )


def resolve_thinking(spec: Any, enable_thinking: bool | None) -> bool:
    """Thinking mode for a model: Thinking-2507 models think by default (and always), Instruct-2507 models never
    do, the hybrid-thinking Qwen3 and Qwen3.5 models default to non-thinking. A mode the template lacks is an error."""
    mode = getattr(spec, "thinking", "switch")
    if mode == "always":
        if enable_thinking is False:
            raise ThinkingModeError(
                f"{spec.name} always thinks: its chat template has no non-thinking mode. Drop enable_thinking=False, "
                f"or use {spec.name.replace('-Thinking-', '-Instruct-')} for answers without a think block."
            )
        return True
    if mode == "never":
        if enable_thinking:
            raise ThinkingModeError(
                f"{spec.name} has no thinking mode: the Instruct-2507 models answer without a think block. Drop "
                f"enable_thinking=True, or use {spec.name.replace('-Instruct-', '-Thinking-')} for thinking."
            )
        return False
    return bool(enable_thinking)


def qwen3_chat_text(
    messages: Messages, add_generation_prompt: bool = True, enable_thinking: bool = False, mode: str = "switch"
) -> str:
    """Qwen3's template for plain chats, used when a tokenizer carries no chat template of its own.

    mode: the model's thinking mode ("switch": an empty think block unless thinking, "always": an opened
    think block, "never": no think block at all)."""
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        if mode == "always":
            parts.append(ASSISTANT_START + "<think>\n")
        elif mode == "never":
            parts.append(ASSISTANT_START)
        else:
            parts.append(ASSISTANT_START + ("" if enable_thinking else NON_THINKING_BLOCK))
    return "".join(parts)


def format_chat(
    tokenizer: Any,
    prompt: str | Messages,
    system: str | None = None,
    enable_thinking: bool | None = None,
    add_generation_prompt: bool = True,
    model: Any = None,
) -> str:
    """Render a prompt (or message list) with the tokenizer's Qwen3 template.

    Thinking mode defaults to the model's (see `resolve_thinking`; the model is `model` or the one the tokenizer
    was loaded from): non-thinking for Qwen3/Qwen3.5, thinking for -Thinking-2507, none for -Instruct-2507.
    """
    spec = chat_spec(tokenizer, model)
    thinking = resolve_thinking(spec, enable_thinking)
    messages = as_messages(prompt, system)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=thinking
        )
    return qwen3_chat_text(messages, add_generation_prompt, thinking, getattr(spec, "thinking", "switch"))


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of Qwen3's control tokens present in this tokenizer (to exclude them from SAE activations)."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in QWEN3_SPECIAL_TOKENS}
    ids |= set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if i is not None and i != unk)
