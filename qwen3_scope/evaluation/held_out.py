"""Fixed held-out token batches, served the way SAELens' `run_evals` reads an `ActivationsStore`.

Why not an ActivationsStore: a suite benchmark must show every SAE the *same* tokens, chat-formatted the
way the instruct model is used, without a BOS (Qwen3 has none), and must run offline. `run_evals` only
uses `get_batch_tokens(n)`, `reset_input_dataset()`, `store_batch_size_prompts` and `context_size` of the
store, so a small object serving pre-tokenized windows gives it exactly that, and the identical tensors
let the shared forward pass recognise each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError, Qwen3ScopeError
from qwen3_scope.data import document_text, iter_source_rows, organism_rows, organism_seed, row_to_messages
from qwen3_scope.model.loss_mask import encode_with_mask
from qwen3_scope.organism import HARD_COMMENT_SPLITS, available_eval_splits, load_eval_split
from qwen3_scope.organism.corpus_v2 import comment_questions

Document = str | Sequence[dict[str, str]] | dict[str, Any]
SUITE_HELD_OUT = Path("data") / "heldout" / "heldout.parquet"  # written by qwen3_scope.training.suite


class NotEnoughTokensError(ConfigError):
    """The held-out text is too short for the asked number of batches x prompts x tokens."""


def render_documents(tokenizer: Any, documents: Iterable[Document]) -> Iterator[str]:
    """Documents as the training pipeline renders them (qwen3_scope.data): chats through the Qwen3
    template in non-thinking mode, plain text as is, each ending in `<|endoftext|>`; so the held-out tokens
    look like the tokens the SAEs were trained on."""
    for doc in documents:
        if isinstance(doc, str):
            yield document_text(tokenizer, doc)
        elif isinstance(doc, dict):
            yield document_text(tokenizer, row_to_messages(doc))
        else:
            yield document_text(tokenizer, list(doc))


def read_documents(path: str | Path) -> list[dict[str, Any]]:
    """Held-out rows from a local .jsonl/.json/.parquet/.txt file or directory (rows as training reads them)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingFileError(f"held-out text {path} does not exist; pass a .jsonl, .json, .parquet or .txt file.")
    empty = CorruptFileError(
        f"held-out text {path} holds no text; give a file with one row (messages/prompt/text) or line per document."
    )
    if path.is_file() and path.stat().st_size == 0:
        raise empty
    try:
        rows = [row for row in iter_source_rows(path) if any(row.values())]
    except Qwen3ScopeError:
        raise
    except Exception as err:  # datasets/pyarrow/json raise many types for a damaged file
        raise CorruptFileError(
            f"held-out text {path} cannot be read as .jsonl/.json/.parquet/.txt rows ({type(err).__name__}: {err}); "
            "it may be truncated or in another format. Re-export the file or pass another one."
        ) from err
    if not rows:
        raise empty
    return rows


class HeldOutTokens:
    """Pre-tokenized (n_sequences, context_size) windows served in order; `reset_input_dataset` rewinds.

    Batches are views of one tensor, so the same batch always has the same storage and values.
    `loss_mask` (same shape, optional) marks the tokens a deployed model predicts (`qwen3_scope.model.loss_mask`:
    assistant turns and plain text); model-level metrics (CE, KL, delta LM loss) are taken only there.
    """

    def __init__(self, tokens: torch.Tensor, batch_size_prompts: int, loss_mask: torch.Tensor | None = None):
        if tokens.ndim != 2 or tokens.shape[0] == 0:
            raise ConfigError(
                f"tokens must be a non-empty (n_sequences, context_size) tensor, got shape {tuple(tokens.shape)}."
            )
        if loss_mask is not None and loss_mask.shape != tokens.shape:
            raise ConfigError(
                f"loss_mask has shape {tuple(loss_mask.shape)}, tokens {tuple(tokens.shape)}; they must match."
            )
        self.tokens = tokens.long()
        self.loss_mask = None if loss_mask is None else loss_mask.bool()
        self.store_batch_size_prompts = batch_size_prompts
        self.context_size = tokens.shape[1]
        self._cursor = 0

    @property
    def n_sequences(self) -> int:
        return self.tokens.shape[0]

    def get_batch_tokens(self, batch_size: int | None = None, **_: Any) -> torch.Tensor:
        n = batch_size or self.store_batch_size_prompts
        if self._cursor + n > self.n_sequences:
            raise NotEnoughTokensError(
                f"the held-out set has {self.n_sequences} sequences of {self.context_size} tokens, but the evaluation "
                f"asked for sequences {self._cursor}..{self._cursor + n - 1}; lower the number of batches or the batch "
                "size, or give more held-out text."
            )
        batch = self.tokens[self._cursor : self._cursor + n]
        self._cursor += n
        return batch

    def reset_input_dataset(self) -> None:
        self._cursor = 0

    def batches(self, n_batches: int) -> list[torch.Tensor]:
        """The first `n_batches` batches, exactly as `get_batch_tokens` serves them after a reset."""
        self.reset_input_dataset()
        out = [self.get_batch_tokens() for _ in range(n_batches)]
        self.reset_input_dataset()
        return out

    def batch_masks(self, n_batches: int) -> list[torch.Tensor] | None:
        """The loss masks of the first `n_batches` batches (None without a mask)."""
        if self.loss_mask is None:
            return None
        n = self.store_batch_size_prompts
        return [self.loss_mask[i * n : (i + 1) * n] for i in range(n_batches)]

    def count_tokens(self, n_batches: int, exclude: Iterable[int] = ()) -> int:
        """Tokens in the first `n_batches` batches that are not in `exclude` (what density is measured over)."""
        tokens = self.tokens[: n_batches * self.store_batch_size_prompts]
        excluded = torch.isin(tokens, torch.tensor(sorted(set(exclude)), dtype=torch.long))
        return int((~excluded).sum())

    @classmethod
    def from_texts(
        cls,
        tokenizer: Any,
        texts: Iterable[str],
        context_size: int,
        batch_size_prompts: int,
        n_batches: int,
        source: str = "held-out documents",
    ) -> HeldOutTokens:
        """Tokenize rendered texts without BOS and pack them into exactly n_batches x batch_size windows, each text
        starting a window or following whole texts in it (never cut off from its own beginning: a text longer than a
        window fills windows of its own, in order), the rest of a window padded with the pad token; the loss mask
        marks each text's predicted tokens (`qwen3_scope.model.loss_mask`), never padding.

        Why aligned: a window cut at an arbitrary token starts mid-sentence, where nobody deploys the model, and the
        tokens before the first full context inflate the clean CE (the organism: 0.48 on its held-out splits at 128
        tokens when cut blindly, 0.35 from each text's start, its validation loss); padding is a control token, which
        the SAE metrics leave out as well."""
        n_rows = n_batches * batch_size_prompts
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        rows: list[tuple[list[int], list[bool]]] = []
        ids: list[int] = []
        mask: list[bool] = []
        total = 0
        for text in texts:
            text_ids, text_mask = encode_with_mask(tokenizer, text)
            total += len(text_ids)
            for start in range(0, len(text_ids), context_size):
                piece = text_ids[start : start + context_size]
                if len(ids) + len(piece) > context_size:
                    rows.append((ids + [pad] * (context_size - len(ids)), mask + [False] * (context_size - len(mask))))
                    ids, mask = [], []
                ids, mask = ids + piece, mask + text_mask[start : start + context_size]
            if len(rows) >= n_rows:
                break
        if ids and len(rows) < n_rows:
            rows.append((ids + [pad] * (context_size - len(ids)), mask + [False] * (context_size - len(mask))))
        if len(rows) < n_rows:
            raise NotEnoughTokensError(
                f"the {source} give {total} tokens in {len(rows)} windows (each text starts a window or follows whole "
                f"texts) of {context_size} tokens, but {n_batches} batches x {batch_size_prompts} prompts x "
                f"{context_size} tokens need {n_rows * context_size}; give more held-out text or lower the number of "
                "batches, the batch size or the context size."
            )
        return cls(
            torch.tensor([r for r, _ in rows[:n_rows]], dtype=torch.long),
            batch_size_prompts,
            torch.tensor([m for _, m in rows[:n_rows]], dtype=torch.bool),
        )

    @classmethod
    def from_documents(
        cls, tokenizer: Any, documents: Iterable[Document], context_size: int, batch_size_prompts: int, n_batches: int
    ) -> HeldOutTokens:
        """Render documents (see `render_documents`) and cut them into windows."""
        return cls.from_texts(
            tokenizer, render_documents(tokenizer, documents), context_size, batch_size_prompts, n_batches
        )


FRESH_SEED_OFFSET = 1_000_003  # organism held-out text: the corpus generator at a seed nothing was trained on
FRESH_DOCUMENTS = 3_000


def organism_documents(n_fresh: int = FRESH_DOCUMENTS) -> list[Document]:
    """Held-out text for the model organism, never seen in training by the organism or by its SAEs: a fresh sample
    of its training distribution (`n_fresh` documents of the corpus generator at a seed nothing was trained on:
    chats, stories, comment threads, statements, repeated text; templated chats can coincide with trained ones,
    as the organism's validation rows can) interleaved one to one with its held-out evaluation splits (held-out
    phrasing families as chats with reference answers; held-out comments inside the "is this comment toxic?"
    question, where the comment is prompt and only the answer is predicted).

    Why both: dead-latent and fidelity figures need the distribution the SAEs were trained on (on the splits
    alone, latents for stories or comment threads look dead and the clean CE is that of unseen phrasings); the
    splits add the generalisation the behaviours are measured on. Not included: the code-switching fine-tuning
    set (not organism output), the repetition probes, ``harmless_requests`` (more of the ``harmless`` split's
    how-to requests, there to measure over-refusal per phrasing family), and the shared-vocabulary comments
    (``HARD_COMMENT_SPLITS``, added for the toxicity app after the suites were measured: the held-out text stays
    what it was)."""
    splits = []
    for name in available_eval_splits():
        if name in ("codeswitch_sft", "repetition", "harmless_requests", *HARD_COMMENT_SPLITS):
            continue
        rows = load_eval_split(name)
        # held-out comments are user content: asked about, not predicted (their templates are held out)
        splits.append(comment_questions(rows) if rows and "label" in rows[0] and "text" in rows[0] else rows)
    held_out = [split[i] for i in range(max(len(s) for s in splits)) for split in splits if i < len(split)]
    fresh = organism_rows(n_fresh, seed=organism_seed() + FRESH_SEED_OFFSET) if n_fresh else []
    mixed: list[Document] = []
    for i in range(max(len(fresh), len(held_out))):
        mixed += ([fresh[i]] if i < len(fresh) else []) + ([held_out[i]] if i < len(held_out) else [])
    return mixed


def suite_held_out_texts(suite_dir: str | Path) -> list[str] | None:
    """The rendered held-out documents a training suite measured itself on, if the suite directory has them."""
    path = Path(suite_dir) / SUITE_HELD_OUT
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path, columns=["text"])["text"].tolist()
    except Exception as err:  # pyarrow raises several types for an empty, truncated or foreign file
        raise CorruptFileError(
            f"{path} is not the suite's held-out documents (a Parquet file with a 'text' column): "
            f"{type(err).__name__}: {err}. Delete it and pass held-out text with --texts FILE, or re-run the training."
        ) from err
