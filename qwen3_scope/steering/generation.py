"""Batched greedy generation and completion scoring, the measurements every steering sweep repeats.

Why here: a sweep generates hundreds of short completions; batching them (left-padded, KV cache on,
via the backend's own `generate`) keeps a CPU run in minutes, and the same helpers must behave the same
in HookedTransformer and TransformerBridge. Scoring uses right-padded batches, which are exact for a
causal model without any attention mask: real tokens never attend to the padding after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from qwen3_scope.core.errors import ConfigError


@dataclass
class Completions:
    """Prompts (chat-formatted text), their token ids and the greedy continuations."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]


def stop_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an assistant turn in Qwen3 (`<|im_end|>`, `<|endoftext|>`)."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    unk = getattr(tokenizer, "unk_token_id", None)
    return sorted(i for i in ids if i is not None and i != unk)


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of chat-formatted prompts, exactly as `model.to_tokens(..., prepend_bos=False)` makes them."""
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def _cut(ids: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i]
    return ids


@torch.no_grad()
def greedy_generate(
    model: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 16,
    batch_size: int = 16,
    progress: bool = False,
) -> Completions:
    """Greedy continuations of chat-formatted `prompts`, in left-padded batches with the KV cache on.

    Steering contexts (`steer`) around this call apply to every step; each batch is a new multi-token
    call, so position tracking restarts per batch by itself.
    """
    if not prompts:
        raise ConfigError("no prompts to generate from; pass at least one prompt.")
    tokenizer = model.tokenizer
    stops = stop_ids(tokenizer)
    prompt_ids = encode_prompts(tokenizer, prompts)
    completion_ids: list[list[int]] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress, leave=False):
        batch = list(prompts[start : start + batch_size])
        width = max(len(ids) for ids in prompt_ids[start : start + batch_size])
        out = model.generate(
            batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_past_kv_cache=True,
            stop_at_eos=True,
            eos_token_id=stops,
            verbose=False,
            return_type="tokens",
            prepend_bos=False,
        )
        completion_ids += [_cut(row[width:].tolist(), set(stops)) for row in out]
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in completion_ids]
    return Completions(prompt_ids, completion_ids, texts)


def right_padded(seqs: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [pad] * (width - len(s)) for s in seqs])


@torch.no_grad()
def completion_ce(
    model: Any,
    prompt_ids: Sequence[list[int]],
    completion_ids: Sequence[list[int]],
    batch_size: int = 16,
    steering: Any = None,
) -> float:
    """Mean cross-entropy (nats/token) of the completions given their prompts, under the model as hooked now.

    Pass the `SteeringHandle` of an enclosing `steer` whose edits depend on positions: each batch then
    announces its rows' prompt lengths, so "prompt"/"generated"/"post_instruction" mean what they mean
    during generation. Empty completions are skipped (NaN if all are empty).
    """
    pairs = [(p, c) for p, c in zip(prompt_ids, completion_ids) if c]
    if not pairs:
        return float("nan")
    device = next(model.parameters()).device
    announce = steering is not None and steering.position_dependent
    total, count = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if announce:
            steering.set_prompt_lengths([len(p) for p, _ in chunk])
        tokens = right_padded([p + c for p, c in chunk], pad=0).to(device)
        logprobs = model(tokens, return_type="logits").float().log_softmax(-1)
        for row, (p, c) in enumerate(chunk):
            targets = torch.tensor(c, device=device)
            predicted = logprobs[row, len(p) - 1 : len(p) + len(c) - 1]
            total -= predicted.gather(-1, targets[:, None]).sum().item()
            count += len(c)
    if announce:
        steering.set_prompt_lengths(None)
    return total / count


@torch.no_grad()
def run_and_cache(model: Any, seqs: Sequence[list[int]], hooks: Sequence[str], batch_size: int = 16):
    """Yield (row indices, {hook: activations [batch, pos, ...]}) over right-padded batches of `seqs`."""
    device = next(model.parameters()).device
    for start in range(0, len(seqs), batch_size):
        chunk = list(seqs[start : start + batch_size])
        tokens = right_padded(chunk, pad=0).to(device)
        _, cache = model.run_with_cache(tokens, names_filter=list(hooks))
        yield range(start, start + len(chunk)), {h: cache[h] for h in hooks}
