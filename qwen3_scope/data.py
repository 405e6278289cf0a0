"""Training text for Qwen3 SAEs: chat-formatted in Qwen3's non-thinking template, no BOS, from anywhere.

Why our own preparation: SAELens' `use_chat_formatting` calls `apply_chat_template` without
`enable_thinking=False` and needs a template on the tokenizer; we render every conversation with
`qwen3_scope.model.chat.format_chat` instead and hand SAELens a plain `text` column (it then tokenizes with
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from qwen3_scope.core.errors import CorruptFileError, MissingFileError, Qwen3ScopeError
from qwen3_scope.core.io import atomic_path, atomic_write_json
from qwen3_scope.core.portable import portable_dataset_name
from qwen3_scope.model.chat import QWEN3_SPECIAL_TOKENS, format_chat
from qwen3_scope.organism import ASSETS_DIR, corpus_module

END_OF_DOCUMENT = "<|endoftext|>"
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
_ANSWER_KEYS = ("response", "completion", "answer", "output", "reference", "chosen", "target")
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}


class DatasetSourceError(Qwen3ScopeError, ValueError):
    """A training dataset that cannot be read or used (empty, unknown columns, no train split, offline hub name)."""


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
            messages.append(
                {
                    "role": m["role"],
                    "content": m.get("content") or "",
                    **({"reasoning_content": m["reasoning_content"]} if m.get("reasoning_content") else {}),
                }
            )
        elif "from" in m:
            messages.append({"role": _SHAREGPT_ROLES.get(m["from"], m["from"]), "content": m.get("value") or ""})
        else:
            raise DatasetSourceError(
                f"a chat message needs role/content (or ShareGPT from/value); got keys {sorted(m)}."
            )
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
        "(or 'conversation(s)'), 'prompt' [+ 'response'], 'instruction' [+ 'output'], 'text', or token ids "
        "('input_ids' / 'tokens', a pre-tokenized dataset)."
    )


def document_text(tokenizer: Any, doc: list[dict[str, str]] | str, thinking: bool = False) -> str:
    """Chats through the model's own chat template (non-thinking unless `thinking`; a trailing user turn
    gets the generation prompt), plain text as is; each ends in `<|endoftext|>`."""
    if isinstance(doc, str):
        return doc + END_OF_DOCUMENT
    if not doc:
        raise DatasetSourceError("an empty conversation cannot be a training document.")
    return (
        format_chat(tokenizer, doc, add_generation_prompt=doc[-1]["role"] == "user", enable_thinking=thinking)
        + END_OF_DOCUMENT
    )


# --------------------------------------------------------------------------------------------------
def organism_rows(n_docs: int, seed: int | None = None) -> list[dict[str, Any]]:
    """The first `n_docs` training documents of the organism's corpus (the distribution it was trained on: the
    generator of the shipped organism's corpus version)."""
    gen = corpus_module()
    corpus = gen.build_corpus(gen.CorpusConfig(seed=organism_seed() if seed is None else seed, n_train_docs=n_docs))
    return [{"messages": d.messages} if d.messages is not None else {"text": d.text} for d in corpus.train]


def organism_seed() -> int:
    log = Path(ASSETS_DIR) / "train_log.json"
    return int(json.loads(log.read_text()).get("seed", 0)) if log.is_file() else 0


def _local_files(path: Path) -> tuple[str, list[str]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES)
    if not files or any(p.suffix not in LOCAL_SUFFIXES for p in files):
        raise DatasetSourceError(
            f"{path} holds no readable dataset: use .jsonl/.json/.parquet/.txt files (or a directory of them), "
            "or a directory written by datasets.Dataset.save_to_disk."
        )
    kinds = {LOCAL_SUFFIXES[p.suffix] for p in files}
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
        _check_columns(path)
        return
    if path.suffix in LOCAL_SUFFIXES or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise MissingFileError(
            f"dataset path {path} does not exist; check the path (or omit --dataset to use "
            "the model organism's corpus)."
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise DatasetSourceError(
            f"{text!r} is not a local path, and hub datasets cannot be read offline (HF_HUB_OFFLINE=1); pass a "
            "local .jsonl/.parquet file or a saved dataset directory, or omit --dataset for the organism's corpus."
        )


def _check_columns(path: Path) -> None:
    """The first row of a local dataset must hold a document: text, a chat, or token ids."""
    first = next(iter(iter_source_rows(path)), None)
    if first is None:
        raise DatasetSourceError(f"dataset {path} is empty; pass a dataset with at least one row.")
    if _tokens_of(first) is None:
        try:
            row_to_messages(first)
        except DatasetSourceError as err:
            raise DatasetSourceError(f"dataset {path}: {err}") from err


def iter_source_rows(source: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a local file/directory, a saved HF dataset, or a hub dataset (train split, streamed)."""
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
    if path.exists():
        kind, files = _local_files(path)
        yield from datasets.load_dataset(kind, data_files=files, split="train", streaming=True)
        return
    yield from stream_hub_dataset(text)


def stream_hub_dataset(name: str, split: str = "train") -> Iterator[dict[str, Any]]:
    """Rows of a Hugging Face hub dataset, streamed (nothing is downloaded beyond what is read)."""
    try:
        yield from datasets.load_dataset(name, split=split, streaming=True)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DatasetSourceError(
            f"could not read hub dataset {name!r}: {err}. Check the name, or pass a local file."
        ) from err


def _source_rows(
    source: str | os.PathLike | None, tokenizer: Any, need: int, seed: int | None
) -> tuple[Iterable[dict[str, Any]], dict[str, Any]]:
    if source in (None, "organism"):
        probe = organism_rows(200, seed)
        texts = [document_text(tokenizer, row_to_messages(r)) for r in probe]
        per_doc = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) / len(probe)
        info = {"source": "organism", "kind": "organism corpus", "seed": organism_seed() if seed is None else seed}
        return organism_rows(int(need * 1.15 / per_doc) + 64, seed), info
    check_source(source)
    kind = "local" if Path(str(source)).expanduser().exists() else "hub (streamed)"
    return iter_source_rows(source), {"source": portable_dataset_name(source), "kind": kind}


class _Source:
    """One training source: its rows as token ids (rendered and tokenized once, or read pre-tokenized)."""

    def __init__(self, source: Any, tokenizer: Any, budget: int, seed: int | None, thinking: bool):
        self.rows, self.info = _source_rows(source, tokenizer, budget, seed)
        self.iterator = iter(self.rows)
        self.tokenizer, self.thinking, self.budget, self.taken, self.done = tokenizer, thinking, budget, 0, False
        self.info.update(budget_tokens=budget)

    def next_documents(self, n: int = 256) -> list[list[int]]:
        """Up to n documents as token id lists ([] once exhausted)."""
        texts: list[str] = []
        tokenized: list[list[int]] = []
        for row in self.iterator:
            ids = _tokens_of(row)
            if ids is not None:
                check_pretokenized(ids, self.tokenizer, self.info["source"])
                self.info["pretokenized"] = True
                tokenized.append(ids)
            else:
                texts.append(document_text(self.tokenizer, row_to_messages(row), thinking=self.thinking))
            if len(texts) + len(tokenized) >= n:
                break
        else:
            self.done = True
        if texts:
            tokenized.extend(self.tokenizer(texts, add_special_tokens=False)["input_ids"])
        return tokenized


def _tokens_of(row: dict[str, Any]) -> list[int] | None:
    for key in ("input_ids", "tokens"):
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            return [int(i) for i in value]
    return None


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """What makes token ids mean the same thing: vocabulary size and hash, and the control tokens' ids."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()[:16]
    return {
        "vocab_size": len(tokenizer),
        "vocab_sha256_16": digest,
        "special_tokens": {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN3_SPECIAL_TOKENS if t in vocab},
    }


def check_pretokenized(ids: list[int], tokenizer: Any, source: Any, metadata: dict[str, Any] | None = None) -> None:
    """A pre-tokenized dataset must come from this model's tokenizer: ids inside its vocabulary, and (when
    the dataset records it) the same vocabulary and control-token ids."""
    size = len(tokenizer)
    if ids and max(ids) >= size:
        raise DatasetSourceError(
            f"pre-tokenized dataset {source} holds token id {max(ids)}, outside this model's vocabulary of {size}: it "
            "was tokenized with another tokenizer. Re-tokenize it with this model's tokenizer (SAELens' PretokenizeRunner "
            "with tokenizer_name=<the model>) or pass the text dataset."
        )
    if not metadata:
        return
    mine = tokenizer_fingerprint(tokenizer)
    theirs = metadata.get("qwen3_scope_tokenizer")
    if theirs:
        for key in ("vocab_size", "vocab_sha256_16", "special_tokens"):
            if theirs.get(key) != mine[key]:
                raise DatasetSourceError(
                    f"pre-tokenized dataset {source} was made with another tokenizer ({key}: {theirs.get(key)} there, "
                    f"{mine[key]} here); re-tokenize it with this model's tokenizer or pass the text dataset."
                )
        return
    name = metadata.get("tokenizer_name")
    if name:
        try:
            other = AutoTokenizer.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError):
            warnings.warn(
                f"cannot load tokenizer {name!r} (named by {source}'s sae_lens.json) offline to compare "
                "vocabularies; only the id range was checked.",
                stacklevel=3,
            )
            return
        if other.get_vocab() != tokenizer.get_vocab():
            raise DatasetSourceError(
                f"pre-tokenized dataset {source} was made with tokenizer {name!r}, whose vocabulary "
                "differs from this model's; re-tokenize it with this model's tokenizer (SAELens' PretokenizeRunner)."
            )


def dataset_metadata(source: Any) -> dict[str, Any] | None:
    """SAELens' `sae_lens.json` (pretokenize runner) next to a local dataset, if any."""
    if source is None:
        return None
    path = Path(str(source)).expanduser()
    for candidate in (path / "sae_lens.json", path.parent / "sae_lens.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise DatasetSourceError(
                    f"{candidate} (the dataset's SAELens metadata) is not valid JSON: {err}."
                ) from err
    return None


def _weights(sources: list[Any], weights: list[float] | None) -> list[float]:
    if weights is None:
        return [1 / len(sources)] * len(sources)
    if len(weights) != len(sources):
        raise DatasetSourceError(
            f"{len(weights)} weights for {len(sources)} dataset sources; give one weight per source."
        )
    total = float(sum(weights))
    return [w / total for w in weights]


def prepare_data(
    tokenizer: Any,
    train_tokens: int,
    heldout_tokens: int,
    directory: str | os.PathLike,
    source: str | os.PathLike | list[Any] | None = None,
    seed: int | None = None,
    shard_documents: int = 50_000,
    progress: bool = True,
    context_size: int = 128,
    weights: list[float] | None = None,
    thinking: bool = False,
    align_documents: bool = False,
) -> PreparedData:
    """Tokenize the training data once, into `directory`, as SAELens reads pre-tokenized data.

    Documents (chats rendered with the model's template, non-thinking unless `thinking`; plain text; or
    rows that are already token ids) are packed back to back into windows of `context_size` tokens, the
    way SAELens' own runner packs text (no BOS, no separator: every document ends in `<|endoftext|>`).
    With `align_documents`, a document starts a window or follows whole documents in it (one longer than a
    window fills windows of its own), the rest of a window padded with the pad token, a control token the
    training excludes: no window starts mid-document. Why: a window cut mid-document starts without context, a
    state the deployed model never sees; on the organism 2/3 of the attn_out latents that stay silent on
    held-out chats fired in such windows, 96% of the time at their first 8 positions. Token counts (budget,
    `train_tokens`, epochs) count real tokens, not padding.
    The first ~`heldout_tokens` go to `heldout/heldout.parquet` (as text, for the evaluation), the rest to
    `train/train-*.parquet` shards (`input_ids` column) written as they fill, so a streamed hub dataset of
    billions of tokens goes to disk instead of memory. Several sources are mixed by `weights` (shares of
    the tokens). A source with fewer tokens is reused for several epochs (SAELens restarts it), with a warning.
    """
    directory = Path(directory)
    for stale in ("train", "heldout"):  # left by a preparation that died half-way: never mixed with this one
        shutil.rmtree(directory / stale, ignore_errors=True)
    (directory / "info.json").unlink(missing_ok=True)
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    shares = _weights(sources, weights)
    total = train_tokens + heldout_tokens
    streams = [_Source(src, tokenizer, int(total * share) + 1, seed, thinking) for src, share in zip(sources, shares)]
    for stream, src in zip(streams, sources):
        metadata = dataset_metadata(src)
        if metadata is not None:
            assert src is not None  # a source without one has no metadata
            stream.info["sae_lens_metadata"] = {k: metadata.get(k) for k in ("tokenizer_name", "context_size")}
            first = next(iter(iter_source_rows(src)), None)
            probe = _tokens_of(first) if first else None
            if probe is not None:
                check_pretokenized(probe, tokenizer, stream.info["source"], metadata)
    bar = tqdm(total=int(total * 1.1), desc="tokenizing training data", unit="tok", disable=not progress, leave=False)
    held: list[list[int]] = []
    rows: list[list[int]] = []
    carry: list[int] = []
    held_tokens = n_train = n_real = n_docs = n_shards = 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    digest = hashlib.sha256()

    def write(split: str, data: dict[str, list[Any]], name: str) -> None:
        with atomic_path(directory / split / f"{name}.parquet") as tmp, _no_datasets_bars():
            datasets.Dataset.from_dict(data).to_parquet(str(tmp))

    def emit(row: list[int]) -> None:
        nonlocal rows, n_train, n_shards
        rows.append(row)
        n_train += 1
        if len(rows) == shard_documents:
            write("train", {"input_ids": rows}, f"train-{n_shards:05d}")
            rows, n_shards = [], n_shards + 1

    while any(not s.done for s in streams) and n_real < train_tokens * 1.1:
        # the source furthest behind its share goes next, so the mix holds at every point of the stream
        stream = min((s for s in streams if not s.done), key=lambda s: s.taken / max(s.budget, 1))
        docs = stream.next_documents(256 if len(streams) == 1 else 8)  # mixes interleave in small steps
        for ids in docs:
            digest.update(json.dumps(ids).encode())
            stream.taken += len(ids)
            bar.update(len(ids))
            n_docs += 1
            if held_tokens < heldout_tokens:
                held.append(ids)
                held_tokens += len(ids)
                continue
            if align_documents:
                for start in range(0, len(ids), context_size):
                    piece = ids[start : start + context_size]
                    if len(carry) + len(piece) > context_size:
                        n_real += len(carry)
                        emit(carry + [pad] * (context_size - len(carry)))
                        carry = []
                    carry.extend(piece)
                continue
            carry.extend(ids)
            while len(carry) >= context_size:
                emit(carry[:context_size])
                del carry[:context_size]
                n_real += context_size
        if len(streams) > 1 and stream.taken >= stream.budget * 1.1:
            stream.done = True  # its share is full; the other sources fill theirs
    bar.close()
    if rows:
        write("train", {"input_ids": rows}, f"train-{n_shards:05d}")
    if not n_train:
        raise DatasetSourceError(
            f"dataset {', '.join(str(s.info['source']) for s in streams)} yielded {n_docs} document(s), too few to hold "
            f"out {heldout_tokens} tokens and train on {context_size}-token windows of the rest; pass a larger dataset."
        )
    write("heldout", {"text": tokenizer.batch_decode(held)}, "heldout")
    train_total = n_real
    epochs = train_tokens / max(train_total, 1)
    names = [s.info["source"] for s in streams]
    if epochs > 1:
        warnings.warn(
            f"dataset {', '.join(map(str, names))} has {train_total:,} training tokens for {train_tokens:,}: "
            f"SAELens will reuse it ~{epochs:.1f} times. Pass a larger dataset for a single pass.",
            stacklevel=2,
        )
    info: dict[str, Any] = (
        dict(streams[0].info)
        if len(streams) == 1
        else {"source": " + ".join(map(str, names)), "kind": "mix", "mix": [s.info for s in streams]}
    )
    info.update(
        dataset_name=None if names == ["organism"] else (names[0] if len(names) == 1 else " + ".join(map(str, names))),
        tokenized=True,
        context_size=context_size,
        thinking=thinking,
        tokenizer=tokenizer_fingerprint(tokenizer),
        train_documents=n_docs - len(held),
        train_sequences=n_train,
        train_tokens=train_total,
        aligned_documents=align_documents,
        heldout_documents=len(held),
        heldout_tokens=held_tokens,
        epochs=round(max(epochs, 1.0), 3),
        sha256_16=digest.hexdigest()[:16],
    )
    if len(streams) > 1:
        info["mix_tokens"] = {str(s.info["source"]): s.taken for s in streams}
        info["weights"] = shares
    atomic_write_json(directory / "info.json", info)
    return load_prepared(directory)


@contextmanager
def _no_datasets_bars() -> Iterator[None]:
    """`datasets` draws a progress bar for every small parquet write/read; the suite has its own bars."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def load_prepared(directory: str | os.PathLike) -> PreparedData:
    """The prepared text of a suite (memory-mapped when large); the same rows on every resume."""
    directory = Path(directory)
    train = sorted((directory / "train").glob("train-*.parquet"))
    heldout = directory / "heldout" / "heldout.parquet"
    info_file = directory / "info.json"
    if not train or not heldout.is_file() or not info_file.is_file():
        raise MissingFileError(
            f"prepared training data in {directory} is missing or incomplete; the suite was "
            "interrupted while preparing it. Start it again (the same command re-prepares it)."
        )
    small = sum(p.stat().st_size for p in train) < 256 * 2**20
    with _no_datasets_bars():
        loaded = datasets.Dataset.from_parquet([str(p) for p in train], keep_in_memory=small)
        held = datasets.Dataset.from_parquet(str(heldout), keep_in_memory=True)
    try:
        info = json.loads(info_file.read_text())
    except json.JSONDecodeError as err:
        raise CorruptFileError(
            f"{info_file} is not valid JSON ({err}); delete {directory} and run the same command again to re-prepare "
            "the data."
        ) from err
    return PreparedData(loaded, held, info)
