"""The model organism: a tiny Qwen3-architecture instruct model trained by this repo (NOT Qwen3 weights).

``ORGANISM_DIR`` is a standard HF checkpoint (config, safetensors weights, tokenizer with a Qwen3-style chat
template, generation config) that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load offline; the loader
resolves the short name ``organism`` to it. Held-out evaluation splits live in ``EVAL_DIR``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError

ORGANISM_NAME = "organism"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ORGANISM_DIR = ASSETS_DIR / "model"
EVAL_DIR = ASSETS_DIR / "eval"
# comments whose labels share their words (``comments_hard``): the toxicity task without giveaway words
HARD_COMMENT_SPLITS = ("toxic_hard", "clean_hard", "toxic_hard_discovery", "clean_hard_discovery")
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
    *HARD_COMMENT_SPLITS,
)
V1_EVAL_SPLITS = EVAL_SPLITS[:7]  # what a corpus-v1 organism ships
CORPUS_VERSIONS = (1, 2)  # 1: frozen corpus_v1; 2: corpus_v2, the shipped organism's


def corpus_version(assets: str | Path | None = None) -> int:
    """The corpus version the organism in ``assets`` (default: the shipped one) was trained on."""
    log = Path(assets or ASSETS_DIR) / "train_log.json"
    if not log.is_file():
        return 1
    try:
        return int(json.loads(log.read_text(encoding="utf-8")).get("corpus_version", 1))
    except (ValueError, TypeError, AttributeError) as err:
        raise CorruptFileError(f"{log} is not a training log (a JSON object with an integer corpus_version)") from err


def corpus_module(version: int | None = None):
    """The corpus generator module of a corpus version (1: the frozen ``corpus_v1``, 2: ``corpus_v2``, the shipped
    organism's); by default the version the shipped organism was trained on (SAE training data and held-out checks
    must use that one)."""
    version = corpus_version() if version is None else version
    if version not in CORPUS_VERSIONS:
        raise ConfigError(f"unknown organism corpus version {version}; known versions are 1 and 2")
    # lazy: the generators import this package (EVAL_SPLITS), and loading one costs ~50 ms of tables
    return importlib.import_module(f"qwen3_scope.organism.corpus_v{version}")


def available_eval_splits(eval_dir: str | Path | None = None) -> tuple[str, ...]:
    """The splits present in ``eval_dir`` (a v1 organism has the first seven only)."""
    d = Path(eval_dir or EVAL_DIR)
    return tuple(n for n in EVAL_SPLITS if (d / f"{n}.jsonl").is_file())


def load_eval_split(name: str, eval_dir: str | Path | None = None) -> list[dict]:
    """Rows of a held-out split (never used in training): ``harmful``/``harmless`` prompts (held-out phrasing
    families), ``tasks`` with expected answers, ``lang_en``/``lang_fr`` prompts, ``toxic``/``clean`` (test
    vocabulary) and ``toxic_discovery``/``clean_discovery`` comments, ``repetition`` texts, the
    ``codeswitch_sft`` fine-tuning chats (not organism behaviour: the habit to fine-tune in),
    ``harmless_requests`` (harmless how-to requests only, as many as ``harmful``: per-family over-refusal), and
    ``toxic_hard``/``clean_hard`` (test vocabulary) and ``toxic_hard_discovery``/``clean_hard_discovery`` comments
    whose labels share their words (``comments_hard``)."""
    if name not in EVAL_SPLITS:
        raise ConfigError(f"unknown eval split {name!r}; choose one of {', '.join(EVAL_SPLITS)}")
    path = Path(eval_dir or EVAL_DIR) / f"{name}.jsonl"
    if not path.exists():
        hint = (
            " (this organism was trained on corpus v1, which has no such split)" if name not in V1_EVAL_SPLITS else ""
        )
        raise MissingFileError(f"{path} is missing{hint}; regenerate it with `python -m qwen3_scope.organism.train`")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise CorruptFileError(
                    f"{path}: line {i} is not JSON ({err.msg}); expected one JSON object per line "
                    "(regenerate it with `python -m qwen3_scope.organism.train`)"
                ) from err
    return rows


__all__ = [
    "ORGANISM_NAME",
    "ORGANISM_DIR",
    "ASSETS_DIR",
    "EVAL_DIR",
    "EVAL_SPLITS",
    "V1_EVAL_SPLITS",
    "HARD_COMMENT_SPLITS",
    "CORPUS_VERSIONS",
    "corpus_version",
    "corpus_module",
    "available_eval_splits",
    "load_eval_split",
]
