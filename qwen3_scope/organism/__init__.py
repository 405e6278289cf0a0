"""The model organism: a tiny Qwen3-architecture instruct model trained by this repo (NOT Qwen3 weights).

``ORGANISM_DIR`` is a standard HF checkpoint (config, safetensors weights, tokenizer with a Qwen3-style chat
template, generation config) that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load offline; the loader
resolves the short name ``organism`` to it. Held-out evaluation splits live in ``EVAL_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

ORGANISM_NAME = "organism"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ORGANISM_DIR = ASSETS_DIR / "model"
EVAL_DIR = ASSETS_DIR / "eval"
EVAL_SPLITS = ("harmful", "harmless", "tasks", "lang_en", "lang_fr", "toxic", "clean")


def load_eval_split(name: str, eval_dir: str | Path | None = None) -> list[dict]:
    """Rows of a held-out split (never used in training): ``harmful``/``harmless`` prompts, ``tasks`` with
    expected answers, ``lang_en``/``lang_fr`` prompts, ``toxic``/``clean`` comments."""
    if name not in EVAL_SPLITS:
        raise ValueError(f"unknown eval split {name!r}; choose one of {', '.join(EVAL_SPLITS)}")
    path = Path(eval_dir or EVAL_DIR) / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m qwen3_scope.organism.train`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["ORGANISM_NAME", "ORGANISM_DIR", "ASSETS_DIR", "EVAL_DIR", "EVAL_SPLITS", "load_eval_split"]
