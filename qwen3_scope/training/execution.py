"""What this rank does in `SuiteTrainer`: its groups, its data shards, who writes the manifest and the checkpoints.

Ranks that train whole groups (group parallelism) record them in `.ranks/rank_<r>.json` in the suite directory
as they finish, so a job killed half-way resumes with any number of ranks without retraining finished groups;
rank 0 merges the records into `manifest.json`. In data parallelism every rank trains every group on its shards
of the token stream (`data_parallel`) and rank 0 writes everything. One process is the special case of both.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.training.data_parallel import DataParallelAdapter, ShardedStream
from qwen3_scope.training.manifest import SuiteManifest
from qwen3_scope.training.parallel_plan import ParallelPlan
from qwen3_scope.training.planner import Group
from qwen3_scope.training.process_group import DistContext
from qwen3_scope.training.stream import SegmentedStream

logger = logging.getLogger(__name__)
RANKS_DIR = ".ranks"


class Execution:
    """What this rank does in `SuiteTrainer` (one process: everything)."""

    def __init__(self, ctx: DistContext | None = None, parallel: ParallelPlan | None = None):
        self.ctx = ctx or DistContext()
        self.parallel = parallel  # None for a plain one-process run
        self.mode = parallel.mode if parallel is not None else "group"
        self.data_shards = parallel.data_shards if parallel is not None else 1
        self.adapter: DataParallelAdapter | None = None

    @classmethod
    def single(cls) -> Execution:
        return cls()

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def writes_checkpoints(self) -> bool:
        """Group mode: every rank for its groups; data mode: rank 0 (the SAEs agree on every rank)."""
        return self.mode == "group" or self.ctx.is_main

    def my_groups(self, groups: list[Group]) -> list[Group]:
        if self.mode == "data" or not self.ctx.distributed or self.parallel is None:
            return list(groups)
        return [g for g in groups if self.parallel.assignment.get(g.index, 0) == self.rank]

    def my_group_indices(self, manifest: SuiteManifest) -> set[int]:
        """This rank's groups among the manifest's (the records it writes)."""
        indices = [g["index"] for g in manifest.groups]
        if self.mode == "data" or not self.ctx.distributed or self.parallel is None:
            return set(indices)
        return {i for i in indices if self.parallel.assignment.get(i, 0) == self.rank}

    def my_shards(self) -> list[int]:
        per = self.data_shards // self.ctx.world_size
        return list(range(self.rank * per, (self.rank + 1) * per))

    # ---------------------------------------------------------------- records
    def save_manifest(self, suite_dir: Path, manifest: SuiteManifest) -> bool:
        """True: the caller writes manifest.json (rank 0, after merging the other ranks' records)."""
        if self.ctx.is_main:
            if self.ctx.distributed and self.mode == "group":
                merge_rank_records(suite_dir, manifest, keep_files=True)
            return True
        if self.mode == "group":
            atomic_write_json(
                suite_dir / RANKS_DIR / f"rank_{self.rank}.json", manifest.rank_record(self.my_group_indices(manifest))
            )
        return False

    def gather_results(self, suite_dir: Path, manifest: SuiteManifest) -> bool:
        """End of this rank's work; True on the rank that finishes the suite (rank 0, once every rank is done)."""
        if not self.ctx.distributed or self.mode == "data":
            if self.ctx.is_main:
                merge_rank_records(suite_dir, manifest)  # records of an earlier run on more ranks
            return self.ctx.is_main
        records = self.ctx.gather(manifest.rank_record(self.my_group_indices(manifest)))
        if not self.ctx.is_main:
            return False
        for record in records or []:
            manifest.merge_rank_record(record)
        merge_rank_records(suite_dir, manifest)
        return True

    # ---------------------------------------------------------------- training
    def stream(
        self,
        store: Any,
        dataset: Any,
        hooks: list[str],
        steps_per_segment: int,
        seed: int,
        outlier_norm_factor: float | None,
        steps_done: Callable[[], int],
    ) -> SegmentedStream | ShardedStream:
        if self.mode != "data":
            return SegmentedStream(store, dataset, hooks, steps_per_segment, seed, outlier_norm_factor, steps_done)
        return ShardedStream(
            store,
            dataset,
            hooks,
            steps_per_segment,
            seed,
            outlier_norm_factor,
            steps_done,
            shards=self.my_shards(),
            n_shards=self.data_shards,
            ctx=self.ctx,
        )

    @contextmanager
    def training(self, trainer: Any, stream: SegmentedStream | ShardedStream) -> Iterator[None]:
        if self.mode != "data":
            yield
            return
        assert isinstance(stream, ShardedStream)
        self.adapter = DataParallelAdapter(trainer, stream, self.ctx)
        with self.adapter:
            yield


def merge_rank_records(suite_dir: Path, manifest: SuiteManifest, keep_files: bool = False) -> None:
    """Fold the other ranks' records (`.ranks/rank_<r>.json`) into the manifest: a suite resumed with any number
    of ranks keeps every group some rank finished."""
    folder = Path(suite_dir) / RANKS_DIR
    if not folder.is_dir():
        return
    for file in sorted(folder.glob("rank_*.json")):
        try:
            manifest.merge_rank_record(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError) as err:  # a record being replaced right now: the next merge has it
            logger.debug("skipping %s: %s", file, err)
    if not keep_files:
        shutil.rmtree(folder, ignore_errors=True)
