"""Labelled data for SAEBench's supervised evals, in the shapes its own loaders return (no `sae_bench` import).

SAEBench reads its probing data from the hub: `dataset_utils.get_multi_label_train_test_data(name, ...)` returns
`{class: [text, ...]}` train and test dicts (sparse probing, TPP), and SCR builds its spuriously correlated sets from
a train and a test DataFrame with a text column and two attribute columns (`dataset_info.dataset_metadata[name]`).
This module builds exactly those objects offline:

- the model organism's labelled held-out splits: language (English / French), harmful / harmless request,
  toxic / clean comment, and the task families of its `tasks` split (multi-class); SCR on harm x language (the
  organism's requests exist in both languages, so the pair can be made perfectly correlated the way SAEBench
  correlates profession and gender);
- a user's labelled file (jsonl/json/csv rows with `text` and `label`, optionally a second attribute column
  for SCR), read like the applications' labelled files;
- for real Qwen3 models, nothing: SAEBench's own hub datasets are used as it uses them (`hub=True`).

Sizes follow SAEBench's conventions: a probe set of `train_size` / `test_size` texts is `train_size // 2` texts
per class (its binary-task halving, as for ag_news and europarl); SCR's quadrants are `train_size // 4`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qwen3_scope.core.errors import ConfigError, CorruptFileError
from qwen3_scope.core.io import read_rows
from qwen3_scope.model.chat import format_chat
from qwen3_scope.organism import load_eval_split

PREFIX = "qwen3-scope/"  # dataset names we add to SAEBench's tables; its own names never start with this
MIN_PER_CLASS = 4  # a probe needs a few examples of each class in train and in test


class TooFewExamplesError(ConfigError):
    """A class (or an SCR quadrant) has fewer texts than the requested probe sizes need."""


class MissingLabelsError(ConfigError):
    """A supervised eval was asked for, but the data has no labels it can use."""


@dataclass
class ProbeSet:
    """One multi-class dataset for sparse probing and TPP: `{class: [text]}` for train and test."""

    name: str
    train: dict[str, list[str]]
    test: dict[str, list[str]]

    @property
    def classes(self) -> list[str]:
        return list(self.train)


@dataclass
class SpuriousSet:
    """One SCR dataset: train/test DataFrames with `text` and two integer attribute columns, the value names of
    each (`column1_mapping`, `column2_mapping` as SAEBench's `dataset_info.dataset_metadata`), the column-1 pairs
    the probes separate and the two column-2 values that are made spuriously correlated with them."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    column1_name: str
    column2_name: str
    column1_mapping: dict[str, int]
    column2_mapping: dict[str, int]
    column1_pairs: list[tuple[str, str]]
    column2_values: tuple[str, str]

    def metadata(self) -> dict[str, Any]:
        """The entry SAEBench's `dataset_info.dataset_metadata` needs for this set."""
        return {
            "text_column_name": "text",
            "column1_name": self.column1_name,
            "column2_name": self.column2_name,
            "column2_autointerp_name": self.column2_name,
            "column1_mapping": self.column1_mapping,
            "column2_mapping": self.column2_mapping,
        }


@dataclass
class BenchData:
    """Everything the supervised evals read; `hub` means SAEBench's own hub datasets (nothing built here)."""

    source: str
    probe_sets: list[ProbeSet] = field(default_factory=list)
    spurious_sets: list[SpuriousSet] = field(default_factory=list)
    hub: bool = False


# ---- sizes and splits ----------------------------------------------------------------------------------------


def _split_classes(
    name: str,
    by_class: dict[str, list[str]],
    train_size: int,
    test_size: int,
    seed: int,
    drop_small: bool = False,
) -> ProbeSet:
    """`train_size // 2` / `test_size // 2` texts per class; with `drop_small`, classes too small for that are left
    out (the organism's rarer task families) instead of being an error."""
    n_train, n_test = train_size // 2, test_size // 2
    if drop_small:
        by_class = {c: t for c, t in by_class.items() if len(t) >= n_train + n_test}
    if n_train < MIN_PER_CLASS or n_test < MIN_PER_CLASS:
        raise TooFewExamplesError(
            f"train_size {train_size} / test_size {test_size} give {n_train} / {n_test} texts per class; a probe needs "
            f"at least {MIN_PER_CLASS} of each class in train and test (sizes >= {2 * MIN_PER_CLASS})."
        )
    if len(by_class) < 2:
        raise MissingLabelsError(
            f"dataset {name} has {len(by_class)} class ({', '.join(by_class)}); a probe needs two."
        )
    short = {c: len(t) for c, t in by_class.items() if len(t) < n_train + n_test}
    if short:
        listed = ", ".join(f"{c!r}: {n}" for c, n in sorted(short.items()))
        raise TooFewExamplesError(
            f"dataset {name}: classes with fewer than the {n_train} + {n_test} texts train_size {train_size} and "
            f"test_size {test_size} need ({listed}); lower --train-size / --test-size or add labelled rows."
        )
    rng = random.Random(seed)
    train, test = {}, {}
    for cls in sorted(by_class):
        texts = list(by_class[cls])
        rng.shuffle(texts)
        train[cls], test[cls] = texts[:n_train], texts[n_train : n_train + n_test]
    return ProbeSet(name, train, test)


def _spurious(
    name: str,
    rows: list[dict[str, Any]],
    columns: tuple[str, str],
    train_size: int,
    test_size: int,
    seed: int,
) -> SpuriousSet:
    """An SCR set from rows with `text` and the two attribute columns (two values each)."""
    c1, c2 = columns
    values = {c: sorted({str(r[c]) for r in rows}) for c in columns}
    for c in columns:
        if len(values[c]) != 2:
            raise MissingLabelsError(
                f"SCR dataset {name}: column {c!r} has values {values[c]}; SCR needs exactly two values in each of "
                f"its two columns ({c1!r} and {c2!r})."
            )
    mapping = {c: {v: i for i, v in enumerate(values[c])} for c in columns}
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * train_size / (train_size + test_size))
    frames = {}
    for part, part_rows, size in (("train", rows[:cut], train_size), ("test", rows[cut:], test_size)):
        frame = pd.DataFrame(
            {
                "text": [str(r["text"]) for r in part_rows],
                c1: [mapping[c1][str(r[c1])] for r in part_rows],
                c2: [mapping[c2][str(r[c2])] for r in part_rows],
            }
        )
        quadrant = size // 4
        if quadrant < MIN_PER_CLASS:
            raise TooFewExamplesError(
                f"SCR needs {part}_size >= {4 * MIN_PER_CLASS} (SAEBench uses size // 4 texts per quadrant), got {size}."
            )
        counts = frame.groupby([c1, c2]).size()
        for (a, b), need in (
            ((0, 0), 2 * quadrant + 1),
            ((1, 1), 2 * quadrant + 1),
            ((0, 1), quadrant),
            ((1, 0), quadrant),
        ):
            have = int(counts.get((a, b), 0))
            if have < need:
                raise TooFewExamplesError(
                    f"SCR dataset {name} ({part} split): {c1}={values[c1][a]}, {c2}={values[c2][b]} has {have} texts, "
                    f"SAEBench's spurious-correlation sets need {need} for {part}_size {size}; lower the size or add rows."
                )
        frames[part] = frame
    return SpuriousSet(
        name,
        frames["train"],
        frames["test"],
        c1,
        c2,
        mapping[c1],
        mapping[c2],
        [(values[c1][0], values[c1][1])],
        (values[c2][0], values[c2][1]),
    )


# ---- the organism ---------------------------------------------------------------------------------------------


def _chat(tokenizer: Any, prompt: str) -> str:
    return format_chat(tokenizer, prompt)


def organism_data(tokenizer: Any, train_size: int, test_size: int, seed: int = 42) -> BenchData:
    """The organism's labelled held-out splits as SAEBench datasets. Requests are rendered with the chat template
    (the organism is an instruct model; SAEBench feeds raw text, as for base models); comments stay plain text,
    as the organism read them in training."""
    harm_rows = [
        {"text": _chat(tokenizer, r["prompt"]), "harm": r["label"], "lang": r["lang"]}
        for split in ("harmful", "harmless")
        for r in load_eval_split(split)
    ]
    by_lang = {lang: [_chat(tokenizer, r["prompt"]) for r in load_eval_split(f"lang_{lang}")] for lang in ("en", "fr")}
    by_harm = {h: [r["text"] for r in harm_rows if r["harm"] == h] for h in ("harmful", "harmless")}
    by_tox = {
        label: [r["text"] for split in (label, f"{label}_discovery") for r in load_eval_split(split)]
        for label in ("toxic", "clean")
    }
    by_task: dict[str, list[str]] = {}  # the 13 families (how-to + the 12 task kinds) of every split that has them
    for split in ("tasks", "harmless", "lang_en", "lang_fr"):
        for r in load_eval_split(split):
            text = _chat(tokenizer, r["prompt"])
            if r.get("task") and text not in by_task.setdefault(r["task"], []):
                by_task[r["task"]].append(text)
    probe_sets = [
        _split_classes(PREFIX + "organism-language", by_lang, train_size, test_size, seed),
        _split_classes(PREFIX + "organism-harm", by_harm, train_size, test_size, seed),
        _split_classes(PREFIX + "organism-toxicity", by_tox, train_size, test_size, seed),
    ]
    source = "the organism's labelled held-out splits"
    try:  # the task families have 50-2000 held-out prompts each: at large sizes the small ones are left out
        probe_sets.append(
            _split_classes(PREFIX + "organism-tasks", by_task, train_size, test_size, seed, drop_small=True)
        )
    except MissingLabelsError:
        source += f" (task families left out: fewer than 2 have {train_size // 2 + test_size // 2} prompts)"
    spurious = _spurious(PREFIX + "organism-harm-x-language", harm_rows, ("harm", "lang"), train_size, test_size, seed)
    return BenchData(source, probe_sets, [spurious])


# ---- a user's labelled file ---------------------------------------------------------------------------------


def file_data(
    path: str | Path, train_size: int, test_size: int, seed: int = 42, scr_column: str | None = None
) -> BenchData:
    """Rows with `text` and `label` (any class names; two or more classes) for sparse probing and TPP; with
    `scr_column`, also an SCR set of `label` x that column (two values each)."""
    path = Path(path).expanduser()
    rows = read_rows(path)  # a missing or unreadable file is a RowsFileError naming it
    if not rows:
        raise CorruptFileError(f"labelled file {path} is empty; it needs rows with `text` and `label`.")
    needed = ("text", "label") + ((scr_column,) if scr_column else ())
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or any(k not in row for k in needed):
            keys = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
            raise MissingLabelsError(
                f"{path} row {i} lacks one of the columns {', '.join(needed)} (has: {keys}); SAEBench's supervised "
                "evals need labelled rows."
            )
    by_class: dict[str, list[str]] = {}
    for row in rows:
        by_class.setdefault(str(row["label"]), []).append(str(row["text"]))
    name = PREFIX + "file-" + path.stem
    probe = _split_classes(name, by_class, train_size, test_size, seed)
    spurious = []
    if scr_column:
        spurious.append(_spurious(name + "-scr", rows, ("label", scr_column), train_size, test_size, seed))
    return BenchData(f"labelled file {path.name}", [probe], spurious)


def check_supervised(data: BenchData, evals: list[str]) -> None:
    """Every supervised eval asked for has data: SCR needs a set with a second, spuriously correlated attribute."""
    if data.hub:
        return
    if "scr" in evals and not data.spurious_sets:
        raise MissingLabelsError(
            f"SCR needs a second attribute spuriously correlated with the label, and {data.source} has none; give "
            "--scr-column COLUMN with a labelled file, or leave scr out of --evals."
        )
    if any(e in evals for e in ("sparse_probing", "tpp")) and not data.probe_sets:
        raise MissingLabelsError(f"sparse probing and TPP need labelled classes, and {data.source} has none.")
