"""Prompt sets for steering studies: the organism's held-out splits, or a user's AdvBench/Alpaca-style file.

Why several shapes: public refusal sets come as AdvBench (`goal`, csv or jsonl), Alpaca (`instruction`
plus optional `input`) or plain `prompt` rows; reading all of them lets `qwen3-scope steer refusal` run on
a real model with whatever set the user already has.
"""

from __future__ import annotations

from pathlib import Path

from qwen3_scope.core.errors import CorruptFileError, MissingFileError
from qwen3_scope.core.io import RowsFileError, read_rows
from qwen3_scope.organism import load_eval_split

PROMPT_KEYS = ("prompt", "goal", "instruction", "question", "text")


class PromptFileError(CorruptFileError):
    """A prompt file that holds no usable prompts (empty, not JSON lines / JSON / CSV, rows without a prompt)."""


def _row_prompt(row: dict, where: str) -> str:
    if "instruction" in row:
        extra = str(row.get("input") or "").strip()
        return str(row["instruction"]).strip() + (f"\n\n{extra}" if extra else "")
    for key in PROMPT_KEYS:
        if key in row and str(row[key]).strip():
            return str(row[key]).strip()
    raise PromptFileError(
        f"{where} has none of the prompt fields {', '.join(PROMPT_KEYS)} (keys: {', '.join(map(str, row)) or 'none'}); "
        'use AdvBench rows ({"goal": ...}), Alpaca rows ({"instruction": ..., "input": ...}) or {"prompt": ...}.'
    )


def load_prompt_file(path: str | Path) -> list[str]:
    """User messages from a .jsonl / .json (list of rows) / .csv file; a clear error for empty or odd files."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"prompt file {path} does not exist; pass a .jsonl, .json or .csv file with one prompt per row."
        )
    try:
        rows = read_rows(path)
    except RowsFileError as err:  # names the file and the format it expected
        raise PromptFileError(str(err)) from err
    except ValueError as err:  # not UTF-8 text, or a CSV pandas cannot parse
        raise PromptFileError(
            f"{path} is not a readable prompt file ({type(err).__name__}: {err}); expected UTF-8 JSON lines, a JSON "
            "list or a CSV with a prompt column (prompt, goal, instruction, question or text)."
        ) from err
    if not rows:
        raise PromptFileError(f"{path} is empty: it holds no prompts. Give a file with one prompt row per line.")
    prompts = []
    for i, row in enumerate(rows, 1):
        if isinstance(row, str):
            prompts.append(row)
        elif isinstance(row, dict):
            prompts.append(_row_prompt(row, f"{path} row {i}"))
        else:
            raise PromptFileError(f"{path} row {i} is a {type(row).__name__}, not an object with a prompt field.")
    return prompts


def organism_split(name: str) -> list[dict]:
    """Rows of one of the organism's held-out evaluation splits (harmful, harmless, lang_en, lang_fr, ...)."""
    return load_eval_split(name)


def split_for_discovery(prompts: list[str], n_discover: int, n_eval: int) -> tuple[list[str], list[str]]:
    """Disjoint discovery and evaluation prompts (halves when the set is smaller than asked)."""
    if len(prompts) < 2:
        raise PromptFileError(
            f"need at least 2 prompts to discover on some and evaluate on others, got {len(prompts)}."
        )
    n_discover = min(n_discover, len(prompts) // 2)
    return prompts[:n_discover], prompts[n_discover : n_discover + n_eval]
