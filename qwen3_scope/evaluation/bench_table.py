"""SAEBench's headline numbers beside `qwen3-scope eval`'s: read a `qwen3-scope bench` run, check that it benched
the suite being evaluated, and join its columns onto the eval table.

Why a module of its own, free of torch and `sae_bench`: SAEBench runs in an environment of its own (numpy < 2);
the main environment only reads the files it wrote (`bench.csv`, `bench.json`). The join is on `sae_id` (bench
names SAEs and their `source` exactly as eval does); every SAEBench column gets the prefix `saebench_` in the eval
table, since SAEBench's core numbers come from its own pass and stand beside eval's rather than replacing them.
Baselines (source `baseline`: identity, PCA, random SAE per hooked site) have no eval row; they stay in the bench
table, which the report shows whole, beside the SAEs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qwen3_scope.core.errors import ConfigError, CorruptFileError, MissingFileError

BENCH_TABLE = "bench.csv"
BENCH_FACTS = "bench.json"
PREFIX = "saebench_"
BASELINE = "baseline"
# what the headline columns of `bench.csv` mean (qwen3_scope.evaluation.saebench.HEADLINE writes them)
COLUMN_NOTES = {
    "explained_variance": "core: explained variance of the reconstruction (SAEBench's pass)",
    "ce_loss_score": (
        "core: CE loss recovered, averaged by SAEBench over every position of its batches (prompt tokens too, "
        "where eval scores the tokens a deployed model predicts); on the organism even a random SAE scores > 1 "
        "there, so read eval's ce_loss_score for fidelity"
    ),
    "l0": "core: active latents per token",
    "sparse_probing_top1": "sparse probing: test accuracy of a probe on the single best latent (mean over datasets)",
    "sparse_probing_topK": "sparse probing: the same with the K best latents",
    "llm_probe_accuracy": "sparse probing: a probe on the model's activations themselves (the ceiling)",
    "scr_topN": "SCR: spurious-correlation removal when the N latents most tied to the spurious label are ablated",
    "tpp_topN": "TPP: targeted probe perturbation (accuracy drop of the targeted class minus the others) for N latents",
    "absorption": "absorption: mean absorption fraction (lower is better), or why it was not measured",
    "meta_structure_fve": "meta-structure: decoder variance a meta-SAE explains (higher = more compositional latents)",
}


class BenchMismatchError(ConfigError):
    """A bench run of other SAEs than the suite being evaluated."""


@dataclass
class BenchRun:
    """What a `qwen3-scope bench` run wrote: its summary table (one row per SAE and baseline) and its facts."""

    directory: str
    table: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)
    data: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return [c for c in self.table.columns if c not in ("sae_id", "source")]


def read_bench(directory: str | Path) -> BenchRun:
    """`<directory>/bench.csv` (and `bench.json`) of a `qwen3-scope bench --out <directory>` run."""
    path = Path(directory) / BENCH_TABLE
    if not path.is_file():
        raise MissingFileError(
            f"{directory} has no {BENCH_TABLE}; --bench takes the --out directory of a `qwen3-scope bench` run "
            "of the same suite (it writes bench.csv there)."
        )
    try:
        table = pd.read_csv(path, dtype={"sae_id": str, "source": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not a bench table ({err}); re-run qwen3-scope bench.") from err
    if not {"sae_id", "source"} <= set(table.columns):
        raise CorruptFileError(f"{path} lacks the columns sae_id and source that qwen3-scope bench writes.")
    table["source"] = table["source"].fillna("")
    facts: dict[str, Any] = {}
    if (Path(directory) / BENCH_FACTS).is_file():
        facts = json.loads((Path(directory) / BENCH_FACTS).read_text())
    return BenchRun(
        Path(directory).name,
        table,
        notes=dict(facts.get("notes", {})),
        data=str(facts.get("data", "")),
        seconds=dict(facts.get("seconds", {})),
    )


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def check_bench(run: BenchRun, suite: Iterable[tuple[str, str]]) -> None:
    """The bench run benched SAEs of this suite: at least one of its SAE ids is in the suite, from the same source
    (release name or suite directory). A bench run of part of the suite is fine (the other rows stay empty)."""
    sources = dict(suite)
    benched = run.table[run.table["source"] != BASELINE]
    common = [s for s in benched["sae_id"] if s in sources]
    if not common:
        raise BenchMismatchError(
            f"the bench run {run.directory!r} benched {', '.join(benched['sae_id'][:4]) or 'no SAE'}"
            f"{' ...' if len(benched) > 4 else ''}, none of which is in this suite ({', '.join(list(sources)[:4])}"
            f"{' ...' if len(sources) > 4 else ''}): it is a bench run of another suite. Bench this one with the "
            "same --release/--ids or --suite (qwen3-scope bench ... --out DIR) and pass that DIR."
        )
    for row in benched.itertuples():
        if row.sae_id in sources and not _same_source(str(row.source), sources[row.sae_id]):
            raise BenchMismatchError(
                f"the bench run {run.directory!r} benched {row.sae_id!r} of {row.source!r}, but this evaluation reads "
                f"it from {sources[row.sae_id]!r}: the same id in another suite. Bench this suite and pass that run."
            )


def join_bench(table: pd.DataFrame, run: BenchRun) -> pd.DataFrame:
    """The eval table with one `saebench_<metric>` column per SAEBench headline metric (empty for SAEs the run
    did not bench, e.g. transcoders)."""
    benched = run.table[run.table["source"] != BASELINE]
    columns = {m: PREFIX + m for m in run.metrics}
    right = benched[["sae_id", *run.metrics]].rename(columns=columns)
    return table.drop(columns=[c for c in columns.values() if c in table.columns]).merge(right, on="sae_id", how="left")


def bench_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith(PREFIX)]


def bench_markdown(run: BenchRun) -> str:
    """The bench table (SAEs and baselines) as markdown, with its notes."""
    lines = [run.table.to_markdown(index=False, floatfmt=".4g")]
    lines += [f"- {name}: {note}" for name, note in run.notes.items()]
    return "\n".join(lines)


def column_note(column: str) -> str:
    """What a bench column means (`scr_top10` -> the `scr_topN` note)."""
    key = column.removeprefix(PREFIX)
    for pattern, note in COLUMN_NOTES.items():
        stem = pattern.removesuffix("topN").removesuffix("topK")
        if key == pattern or (pattern != stem and key.startswith(stem + "top") and key[len(stem) + 3 :].isdigit()):
            return note.replace(" N ", f" {key[len(stem) + 3 :]} ").replace(" K ", f" {key[len(stem) + 3 :]} ")
    return ""
