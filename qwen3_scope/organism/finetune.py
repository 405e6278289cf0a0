"""Supervised fine-tuning of the organism on chats (e.g. the code-switching set), loss on assistant turns only.

Why: the Qwen-Scope applications need a habit to *remove* with SAE-guided fine-tuning; ``codeswitch_sft``
(eval split, not in the base training mix) induces one: French words inside English answers. This is the
one small fine-tuning loop that induces and measures it (``behaviour.py`` reports the rate before/after).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import cast

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Qwen3ForCausalLM

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.loss_mask import encode_with_mask
from qwen3_scope.organism.train import masked_lm_loss, render_chat


def sft(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    rows: list[dict],
    steps: int = 40,
    lr: float = 1e-3,
    batch_size: int = 8,
    seed: int = 0,
    inplace: bool = False,
    extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> PreTrainedModel:
    """Fine-tune (a copy of) ``model`` on ``rows`` (``{"messages": [...]}``) for ``steps`` AdamW steps.

    ``extra_loss(ids, mask)``, called after each forward pass with the batch's token ids and loss mask, is added to
    the loss: a regulariser that reads the forward pass through hooks on the model (SAE-guided fine-tuning)."""
    if steps < 1 or not rows:
        raise ConfigError(f"sft needs steps >= 1 and at least one row (got steps={steps}, {len(rows)} rows)")
    model = model if inplace else copy.deepcopy(model)
    # Rows are tokenised when first drawn: a run draws steps x batch_size of them, often far fewer than it is given
    # (SASFT's 2,400+ chats for 640 draws), and the draws depend only on how many rows there are.
    encoded: dict[int, tuple[list[int], list[bool]]] = {}

    def encode(i: int) -> tuple[list[int], list[bool]]:
        if i not in encoded:
            encoded[i] = encode_with_mask(tok, render_chat(tok, rows[i]["messages"]))
        return encoded[i]

    pad = tok.pad_token_id
    rng = random.Random(seed)
    # foreach: one kernel per step for all of the model's tensors instead of a loop over them; bit-identical to the
    # default on CPU (checked on 20 steps), 15 % faster per step there (torch picks foreach only for CUDA tensors)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, foreach=True)
    model.train()
    for _ in range(steps):
        batch = [encode(i) for i in rng.sample(range(len(rows)), min(batch_size, len(rows)))]
        n = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (n - len(i)) for i, _ in batch], device=model.device)
        mask = torch.tensor([m + [False] * (n - len(m)) for _, m in batch], device=model.device)
        loss = masked_lm_loss(cast(Qwen3ForCausalLM, model), ids, mask)  # a Qwen3 causal LM (.model, .lm_head)
        if extra_loss is not None:
            loss = loss + extra_loss(ids, mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.eval()
