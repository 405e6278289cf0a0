"""Qwen3 chat formatting in non-thinking mode, as the instruct models are used and as SAEs should see them.

Why: Qwen3 has no BOS token and its template inserts an empty think block when `enable_thinking=False`;
prompts formatted any other way put activations off-distribution for every SAE and steering vector.
"""

from __future__ import annotations

from typing import Any, Sequence

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


def qwen3_chat_text(messages: Messages, add_generation_prompt: bool = True, enable_thinking: bool = False) -> str:
    """Qwen3's template for plain chats, used when a tokenizer carries no chat template of its own."""
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        parts.append(ASSISTANT_START + ("" if enable_thinking else NON_THINKING_BLOCK))
    return "".join(parts)


def format_chat(
    tokenizer: Any,
    prompt: str | Messages,
    system: str | None = None,
    enable_thinking: bool = False,
    add_generation_prompt: bool = True,
) -> str:
    """Render a prompt (or message list) with the tokenizer's Qwen3 template, non-thinking by default."""
    messages = as_messages(prompt, system)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
    return qwen3_chat_text(messages, add_generation_prompt, enable_thinking)


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of Qwen3's control tokens present in this tokenizer (to exclude them from SAE activations)."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in QWEN3_SPECIAL_TOKENS}
    ids |= set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if i is not None and i != unk)
