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
EVAL_SPLITS = (
    "harmful",
    "harmless",
    "tasks",
    "lang_en",
    "lang_fr",
    "toxic",
    "clean",
    "toxic_discovery",
    "clean_discovery",
    "repetition",
    "codeswitch_sft",
    "harmless_requests",
)
V1_EVAL_SPLITS = EVAL_SPLITS[:7]  # what a corpus-v1 organism ships


def corpus_version(assets: str | Path | None = None) -> int:
    """The corpus version the organism in ``assets`` (default: the shipped one) was trained on."""
    log = Path(assets or ASSETS_DIR) / "train_log.json"
    return int(json.loads(log.read_text()).get("corpus_version", 1)) if log.is_file() else 1


def corpus_module(version: int | None = None):
    """The corpus generator module of a corpus version (1: frozen ``corpus_v1``, 2: ``corpus``); by default the
    version the shipped organism was trained on (SAE training data and held-out checks must use that one)."""
    version = corpus_version() if version is None else version
    if version == 1:
        from qwen3_scope.organism import corpus_v1

        return corpus_v1
    if version == 2:
        from qwen3_scope.organism import corpus

        return corpus
    raise ValueError(f"unknown organism corpus version {version}; known versions are 1 and 2")


def available_eval_splits(eval_dir: str | Path | None = None) -> tuple[str, ...]:
    """The splits present in ``eval_dir`` (a v1 organism has the first seven only)."""
    d = Path(eval_dir or EVAL_DIR)
    return tuple(n for n in EVAL_SPLITS if (d / f"{n}.jsonl").is_file())


def load_eval_split(name: str, eval_dir: str | Path | None = None) -> list[dict]:
    """Rows of a held-out split (never used in training): ``harmful``/``harmless`` prompts (held-out phrasing
    families), ``tasks`` with expected answers, ``lang_en``/``lang_fr`` prompts, ``toxic``/``clean`` (test
    vocabulary) and ``toxic_discovery``/``clean_discovery`` comments, ``repetition`` texts, the
    ``codeswitch_sft`` fine-tuning chats (not organism behaviour: the habit to fine-tune in), and
    ``harmless_requests`` (harmless how-to requests only, as many as ``harmful``: per-family over-refusal)."""
    if name not in EVAL_SPLITS:
        raise ValueError(f"unknown eval split {name!r}; choose one of {', '.join(EVAL_SPLITS)}")
    path = Path(eval_dir or EVAL_DIR) / f"{name}.jsonl"
    if not path.exists():
        hint = (
            " (this organism was trained on corpus v1, which has no such split)" if name not in V1_EVAL_SPLITS else ""
        )
        raise FileNotFoundError(f"{path} is missing{hint}; regenerate it with `python -m qwen3_scope.organism.train`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = [
    "ORGANISM_NAME",
    "ORGANISM_DIR",
    "ASSETS_DIR",
    "EVAL_DIR",
    "EVAL_SPLITS",
    "V1_EVAL_SPLITS",
    "corpus_version",
    "corpus_module",
    "available_eval_splits",
    "load_eval_split",
]
