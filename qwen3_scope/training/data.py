"""Training text for Qwen3 SAEs: chat-formatted in Qwen3's non-thinking template, no BOS, from anywhere.

Why our own preparation: SAELens' `use_chat_formatting` calls `apply_chat_template` without
`enable_thinking=False` and needs a template on the tokenizer; we render every conversation with
`qwen3_scope.chat.format_chat` instead and hand SAELens a plain `text` column (it then tokenizes with
`prepend_bos=False`). Every document ends in `<|endoftext|>`, as in Qwen3's (and the organism's)
pretraining packing; control tokens are excluded from the SAE's activations by the runner config.

Sources (`source=`): `None`/"organism" (the model organism's corpus: offline, the default), a local
.jsonl/.json/.parquet/.txt file or a directory of them, a directory written by `Dataset.save_to_disk`,
or a Hugging Face hub dataset name (needs a network). Rows may hold `messages`/`conversation(s)`
(role/content or ShareGPT from/value), `prompt` (+ `response`/`completion`/`reference`/...),
`instruction` (+ `input`, `output`), or `text`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from qwen3_scope.chat import format_chat

END_OF_DOCUMENT = "<|endoftext|>"
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
_ANSWER_KEYS = ("response", "completion", "answer", "output", "reference", "chosen", "target")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "model": "assistant", "system": "system"}


class DatasetSourceError(ValueError):
    pass


@dataclass
class PreparedData:
    """Train and held-out text (a `text` column each) plus what was read, for the suite manifest."""

    train: Any  # datasets.Dataset
    heldout: Any  # datasets.Dataset
    info: dict[str, Any] = field(default_factory=dict)


def _messages(value: Any) -> list[dict[str, str]]:
    messages = []
    for m in value:
        if "role" in m:
            messages.append({"role": m["role"], "content": m.get("content") or "",
                             **({"reasoning_content": m["reasoning_content"]} if m.get("reasoning_content") else {})})
        elif "from" in m:
            messages.append({"role": _SHAREGPT_ROLES.get(m["from"], m["from"]), "content": m.get("value") or ""})
        else:
            raise DatasetSourceError(f"a chat message needs role/content (or ShareGPT from/value); got keys {sorted(m)}.")
    return messages


def row_to_messages(row: dict[str, Any]) -> list[dict[str, str]] | str:
    """A dataset row as a message list, or as plain text for `text` rows."""
    for key in ("messages", "conversation", "conversations"):
        if row.get(key):
            return _messages(row[key])
    if row.get("prompt") is not None or row.get("instruction") is not None:
        user = row.get("prompt") if row.get("prompt") is not None else row["instruction"]
        if row.get("input"):
            user = f"{user}\n\n{row['input']}"
        answer = next((row[k] for k in _ANSWER_KEYS if isinstance(row.get(k), str)), None)
        return [{"role": "user", "content": str(user)}] + ([{"role": "assistant", "content": answer}] if answer else [])
    if isinstance(row.get("text"), str):
        return row["text"]
    raise DatasetSourceError(
        f"cannot read a training document from a row with keys {sorted(row)}; rows need 'messages' "
        "(or 'conversation(s)'), 'prompt' [+ 'response'], 'instruction' [+ 'output'], or 'text'."
    )


def document_text(tokenizer: Any, doc: list[dict[str, str]] | str) -> str:
    """Chats through the Qwen3 template (non-thinking; a trailing user turn gets the generation prompt)."""
    if isinstance(doc, str):
        return doc + END_OF_DOCUMENT
    if not doc:
        raise DatasetSourceError("an empty conversation cannot be a training document.")
    return format_chat(tokenizer, doc, add_generation_prompt=doc[-1]["role"] == "user") + END_OF_DOCUMENT


# --------------------------------------------------------------------------------------------------
def organism_rows(n_docs: int, seed: int | None = None) -> list[dict[str, Any]]:
    """The first `n_docs` training documents of the organism's corpus (the distribution it was trained on)."""
    try:
        from qwen3_scope.organism.corpus import CorpusConfig, build_corpus
    except ImportError as err:
        raise DatasetSourceError(
            "the model organism's corpus (qwen3_scope.organism) is not installed; pass a dataset with --dataset."
        ) from err
    corpus = build_corpus(CorpusConfig(seed=_organism_seed() if seed is None else seed, n_train_docs=n_docs))
    return [{"messages": d.messages} if d.messages is not None else {"text": d.text} for d in corpus.train]


def _organism_seed() -> int:
    try:
        from qwen3_scope.organism import ASSETS_DIR
    except ImportError:
        return 0
    log = Path(ASSETS_DIR) / "train_log.json"
    return int(json.loads(log.read_text()).get("seed", 0)) if log.is_file() else 0


def _local_files(path: Path) -> tuple[str, list[str]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES)
    kinds = {LOCAL_SUFFIXES.get(p.suffix) for p in files}
    if not files or None in kinds:
        raise DatasetSourceError(
            f"{path} holds no readable dataset: use .jsonl/.json/.parquet/.txt files (or a directory of them), "
            "or a directory written by datasets.Dataset.save_to_disk."
        )
    if len(kinds) > 1:
        raise DatasetSourceError(f"{path} mixes file types {sorted(kinds)}; keep one type per dataset directory.")
    return kinds.pop(), [str(p) for p in files]


def check_source(source: str | os.PathLike | None) -> None:
    """Fail before any model is loaded: a local path that does not exist, or a hub name while offline."""
    if source in (None, "organism"):
        return
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            _local_files(path)
        return
    if path.suffix in LOCAL_SUFFIXES or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"dataset path {path} does not exist; check the path (or omit --dataset to use "
                                "the model organism's corpus).")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DatasetSourceError(
            f"{text!r} is not a local path, and hub datasets cannot be read offline (HF_HUB_OFFLINE=1); pass a "
            "local .jsonl/.parquet file or a saved dataset directory, or omit --dataset for the organism's corpus."
        )


def iter_source_rows(source: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a local file/directory, a saved HF dataset, or a hub dataset (train split, streamed)."""
    import datasets

    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise DatasetSourceError(f"{path} has splits {list(loaded)} but no 'train' split to train on.")
            loaded = loaded["train"]
        yield from loaded
        return
    check_source(source)
    if path.exists():
        kind, files = _local_files(path)
        yield from datasets.load_dataset(kind, data_files=files, split="train", streaming=True)
        return
    try:
        yield from datasets.load_dataset(text, split="train", streaming=True)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DatasetSourceError(f"could not read hub dataset {text!r}: {err}. Check the name, or pass a local file.") from err


def _token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _rows(source: str | os.PathLike | None, tokenizer: Any, need: int, seed: int | None) -> tuple[Iterable[dict[str, Any]], dict[str, Any]]:
    if source in (None, "organism"):
        probe = organism_rows(200, seed)
        per_doc = sum(_token_counts(tokenizer, [document_text(tokenizer, row_to_messages(r)) for r in probe])) / len(probe)
        info = {"source": "organism", "kind": "organism corpus", "seed": _organism_seed() if seed is None else seed}
        return organism_rows(int(need * 1.15 / per_doc) + 64, seed), info
    kind = "local" if Path(str(source)).expanduser().exists() else "hub"
    return iter_source_rows(source), {"source": str(source), "kind": kind}


def prepare_data(
    tokenizer: Any,
    train_tokens: int,
    heldout_tokens: int,
    directory: str | os.PathLike,
    source: str | os.PathLike | None = None,
    seed: int | None = None,
    shard_documents: int = 50_000,
    progress: bool = True,
) -> PreparedData:
    """Render documents into `directory`: the first ~`heldout_tokens` as held-out text, then enough for
    `train_tokens` as training text, in parquet shards written as they fill (so a hub dataset of billions
    of tokens streams to disk instead of memory). A source with fewer tokens is reused for several epochs
    (SAELens restarts it), with a warning. `directory/train` is a dataset SAELens' own runner reads.
    """
    from tqdm.auto import tqdm

    from qwen3_scope.io import atomic_path, atomic_write_json

    directory = Path(directory)
    for stale in ("train", "heldout"):  # left by a preparation that died half-way: never mixed with this one
        shutil.rmtree(directory / stale, ignore_errors=True)
    (directory / "info.json").unlink(missing_ok=True)
    rows, info = _rows(source, tokenizer, train_tokens + heldout_tokens, seed)
    bar = tqdm(total=int((train_tokens + heldout_tokens) * 1.1), desc="preparing chat text", unit="tok",
               disable=not progress, leave=False)
    held: list[str] = []
    shard: list[str] = []
    n_held = held_tokens = n_train = train_total = n_shards = 0
    digest = hashlib.sha256()

    def write(split: str, texts: list[str], name: str) -> None:
        import datasets

        with atomic_path(directory / split / f"{name}.parquet") as tmp, _no_datasets_bars():
            datasets.Dataset.from_dict({"text": texts}).to_parquet(str(tmp))

    pending: list[str] = []

    def flush() -> None:
        nonlocal held_tokens, n_held, train_total, n_train, n_shards, shard
        if not pending:
            return
        counts = _token_counts(tokenizer, pending)
        bar.update(sum(counts))
        for text, count in zip(pending, counts):
            digest.update(text.encode() + b"\x00")
            if held_tokens < heldout_tokens:
                held.append(text)
                held_tokens, n_held = held_tokens + count, n_held + 1
            else:
                shard.append(text)
                train_total, n_train = train_total + count, n_train + 1
                if len(shard) == shard_documents:
                    write("train", shard, f"train-{n_shards:05d}")
                    shard, n_shards = [], n_shards + 1
        pending.clear()

    for row in rows:
        pending.append(document_text(tokenizer, row_to_messages(row)))
        if len(pending) == 256:
            flush()
            if train_total >= train_tokens * 1.1:
                break
    flush()
    bar.close()
    if shard:
        write("train", shard, f"train-{n_shards:05d}")
    if not n_train:
        raise DatasetSourceError(
            f"dataset {info['source']} yielded {n_held + n_train} document(s), too few to hold out "
            f"{heldout_tokens} tokens and train on the rest; pass a larger dataset."
        )
    write("heldout", held, "heldout")
    epochs = train_tokens / max(train_total, 1)
    if epochs > 1:
        warnings.warn(f"dataset {info['source']} has {train_total:,} training tokens for {train_tokens:,}: SAELens will "
                      f"reuse it ~{epochs:.1f} times. Pass a larger dataset for a single pass.", stacklevel=2)
    info.update(train_documents=n_train, train_tokens=train_total, heldout_documents=n_held, heldout_tokens=held_tokens,
                epochs=round(max(epochs, 1.0), 3), sha256_16=digest.hexdigest()[:16])
    atomic_write_json(directory / "info.json", info)
    return load_prepared(directory)


@contextmanager
def _no_datasets_bars() -> Iterator[None]:
    """`datasets` draws a progress bar for every small parquet write/read; the suite has its own bars."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def load_prepared(directory: str | os.PathLike) -> PreparedData:
    """The prepared text of a suite (memory-mapped when large); the same rows on every resume."""
    import datasets

    directory = Path(directory)
    train = sorted((directory / "train").glob("train-*.parquet"))
    heldout = directory / "heldout" / "heldout.parquet"
    info_file = directory / "info.json"
    if not train or not heldout.is_file() or not info_file.is_file():
        raise FileNotFoundError(f"prepared training data in {directory} is missing or incomplete; the suite was "
                                "interrupted while preparing it. Start it again (the same command re-prepares it).")
    small = sum(p.stat().st_size for p in train) < 256 * 2**20
    with _no_datasets_bars():
        loaded = datasets.Dataset.from_parquet([str(p) for p in train], keep_in_memory=small)
        held = datasets.Dataset.from_parquet(str(heldout), keep_in_memory=True)
    return PreparedData(loaded, held, json.loads(info_file.read_text()))
