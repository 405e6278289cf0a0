"""Random-weight Qwen3 checkpoints at a family member's exact widths (fewer layers), for tests and benchmarks.

Why: the bundled organism is 128 wide with a 2.7k vocabulary; bugs and costs that only show at real widths
(vocabulary 151,936, d_model 1024+) need a real-width model, and no weights may be downloaded in tests.
The checkpoint is a plain `Qwen3ForCausalLM.save_pretrained` directory with the organism's tokenizer (its
ids all fall inside the model's vocabulary), so every loader and backend treats it like a real model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import Qwen3ForCausalLM

from qwen3_scope.model.family import ORGANISM_DIR, resolve_model


def build_random_qwen3(
    directory: str | Path,
    model: str = "Qwen/Qwen3-0.6B",
    n_layers: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Save a random `Qwen3ForCausalLM` with `model`'s widths and `n_layers` layers into `directory`."""
    directory = Path(directory)
    spec = resolve_model(model)
    config = spec.to_hf_config(n_layers=n_layers, max_position_embeddings=4096)
    torch.manual_seed(seed)
    hf_model = Qwen3ForCausalLM(config).to(dtype)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to's decorator wrongly
    with torch.no_grad():  # random norm weights, so a hook before and after a norm differ
        for name, param in hf_model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    hf_model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (ORGANISM_DIR / name).is_file():
            shutil.copy(ORGANISM_DIR / name, directory / name)
    return directory
