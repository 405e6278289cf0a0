"""The Hugging Face side of the fine-tuning applications (`sasft`, `synthesis`): the trainable model, user chat files,
and the checks a fine-tuning run needs before it starts.

Why a second copy of the model: features are read through the HookedSAETransformer (`apps.features`), but fine-tuning
reuses the organism's SFT loop (`qwen3_scope.organism.finetune.sft`) and HF `generate`, which run on the HF model. The
hooked model is loaded with unprocessed weights, so every site's activations equal the HF model's and an SAE reads the
same inputs in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from qwen3_scope.apps import AppConfig, AppInputError, read_data_file
from qwen3_scope.model.family import resolve_model
from qwen3_scope.organism.behaviour import load_organism
from qwen3_scope.steering.interventions import sae_target


def load_trainable(cfg: AppConfig) -> tuple[Any, Any]:
    """(HF causal LM in float32 on `cfg.device`, tokenizer) of `cfg.model`; a tokenizer without a chat template is
    an error, since SFT renders its chats with it."""
    spec = resolve_model(cfg.model)
    model: Any
    if spec.is_local:
        model, tok = load_organism(spec.source)
    else:
        tok = AutoTokenizer.from_pretrained(spec.source)
        model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=torch.float32).eval()
    if not getattr(tok, "chat_template", None):
        raise AppInputError(
            f"model {cfg.model!r} has no chat template, and SFT renders its chats with one; use an instruct "
            "model (e.g. Qwen/Qwen3-4B) or add a `chat_template` to its tokenizer_config.json."
        )
    return model.to(cfg.device), tok


def read_jsonl(path: str | Path, required: str, what: str) -> list[dict]:
    """Rows of a JSON-lines file, each a mapping with the key `required` (`what` names the file in errors)."""
    path = Path(path).expanduser()
    rows = read_data_file(path, what, f"rows with a `{required}` key")
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or required not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise AppInputError(f"{path} row {i} has no `{required}` key (found {keys}); {what} rows need one.")
    return rows


def read_chats(path: str | Path) -> list[dict]:
    """SFT rows `{"messages": [{"role", "content"}, ...]}` with at least one user and one assistant turn."""
    rows = read_jsonl(path, "messages", "SFT chat")
    for i, row in enumerate(rows, 1):
        msgs = row["messages"]
        roles = (
            [m.get("role") for m in msgs] if isinstance(msgs, list) and all(isinstance(m, dict) for m in msgs) else []
        )
        if "user" not in roles or "assistant" not in roles or any("content" not in m for m in msgs):
            raise AppInputError(
                f"{path}: row {i} needs `messages` as a list of {{role, content}} with a user and an assistant turn."
            )
    return rows


def select_saes(saes: dict[str, Any], layers: list[int], sites: list[str]) -> dict[str, Any]:
    """The SAEs of `saes` at `layers` and `sites` (empty: all); a requested layer or site the suite lacks is an error
    naming what it has."""
    where = {sae_id: sae_target(sae) for sae_id, sae in saes.items()}
    have_layers, have_sites = sorted({lay for lay, _ in where.values()}), sorted({s for _, s in where.values()})
    missing = [str(x) for x in layers if x not in have_layers] + [s for s in sites if s not in have_sites]
    if missing:
        raise AppInputError(
            f"the suite has no SAE at {', '.join(missing)}; it has layers {have_layers} and sites {have_sites}. "
            "Choose among those, or train the missing SAEs with `qwen3-scope train`."
        )
    return {
        i: s for i, s in saes.items() if (not layers or where[i][0] in layers) and (not sites or where[i][1] in sites)
    }
