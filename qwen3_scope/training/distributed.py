"""Suite training on torch.distributed: process groups, rank records, the torchrun launcher, failure handling.

Why: a Qwen3 suite is far beyond one GPU, and the engine for many processes is `torch.distributed` started
by `torchrun` (`torch.distributed.run`), not a home-made one. This module owns what is specific to running
a suite on several ranks:

- `DistContext`: the process group (gloo on CPU, NCCL on GPUs), checked before anything loads, with a
  short collective timeout for the training traffic and a second gloo group with a long timeout for waits on
  other ranks' work (data preparation, evaluation, the end of the run). Nothing ends on a barrier: a rank
  that fails exits, its peers' collectives fail on the closed connection, and the launcher (torchrun or
  `torch.multiprocessing.spawn`) stops the job and reports the rank and its error.
- `Execution`: what this rank does in `SuiteTrainer` (its groups, its data shards, who writes the manifest
  and the checkpoints). Ranks that train whole groups record them in `.ranks/rank_<r>.json` in the suite
  directory as they finish, so a job killed half-way resumes with any number of ranks without retraining
  finished groups; rank 0 merges the records into `manifest.json`.
- `launch`: `qwen3-scope train --nproc N` runs `torchrun --standalone --nproc-per-node N -m qwen3_scope.train`.

The suite directory (`--out`) must be on a filesystem every rank sees (as for any checkpointing job).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from qwen3_scope.core.io import atomic_write_json

logger = logging.getLogger(__name__)
RANKS_DIR = ".ranks"
LONG_WAIT = timedelta(days=7)  # waits on other ranks' groups/evaluation; a failed peer ends them at once


class DistributedSetupError(ValueError):
    """A distributed run that cannot start (backend, devices, world size); raised before any model loads."""


def backend_for(device: str | None) -> str:
    """gloo for CPU ranks, NCCL for CUDA ranks; a clear error when this torch lacks it."""
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedSetupError(
            "this build of torch has no torch.distributed; install a standard torch build "
            "(pip install torch) to train on several processes."
        )
    if device is not None and str(device).startswith("cuda"):
        if not dist.is_nccl_available():
            raise DistributedSetupError(
                "--device cuda needs the NCCL backend, which this torch lacks; install a CUDA "
                "build of torch, or train on --device cpu (gloo)."
            )
        return "nccl"
    if not dist.is_gloo_available():
        raise DistributedSetupError(
            "the gloo backend (needed for CPU ranks) is not available in this torch; install a standard torch build."
        )
    return "gloo"


def check_devices(device: str | None, ranks_per_node: int) -> None:
    """`--device cuda` needs one GPU per rank on each node."""
    if device is not None and str(device).startswith("cuda"):
        if ":" in str(device):
            raise DistributedSetupError(
                f"--device {device} names one GPU, but each of the {ranks_per_node} ranks on a "
                "node takes its own (cuda:<local rank>); pass --device cuda."
            )
        count = torch.cuda.device_count()
        if count < ranks_per_node:
            raise DistributedSetupError(
                f"{ranks_per_node} ranks per node with --device cuda need {ranks_per_node} GPUs, "
                f"but this node has {count}; use --nproc {max(count, 1)} or --device cpu."
            )


@dataclass
class DistContext:
    """This process's place in the job, and the two process groups (see the module docstring)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    slow_group: Any = None  # gloo group with a long timeout, for object collectives and waits

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: str | None = None, timeout_seconds: float = 300.0) -> DistContext:
        """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...); one process without it."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls.initialise(
            int(os.environ["RANK"]),
            world,
            "env://",
            device=device,
            timeout_seconds=timeout_seconds,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        )

    @classmethod
    def initialise(
        cls,
        rank: int,
        world_size: int,
        init_method: str,
        device: str | None = None,
        timeout_seconds: float = 300.0,
        local_rank: int | None = None,
        local_world_size: int | None = None,
    ) -> DistContext:
        """Join the job (`init_method`: env://, file://PATH or tcp://HOST:PORT)."""
        import torch.distributed as dist

        local_rank = rank if local_rank is None else local_rank
        local_world_size = world_size if local_world_size is None else local_world_size
        backend = backend_for(device)
        check_devices(device, local_world_size)
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        timeout = timedelta(seconds=timeout_seconds)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        if init_method == "env://" and attempt != "0":
            # torchrun --max-restarts: a restarted job may meet the store of the failed attempt; keys of its own
            from torch.distributed.rendezvous import rendezvous

            store, _, _ = next(rendezvous(init_method, rank, world_size, timeout=timeout))
            store = dist.PrefixStore(f"qwen3-scope/attempt_{attempt}", store)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
        else:
            dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size, timeout=timeout)
        slow = dist.new_group(backend="gloo", timeout=LONG_WAIT)
        return cls(rank, world_size, local_rank, local_world_size, backend, slow)

    def device(self, device: str | None) -> str | None:
        """Each CUDA rank on its own GPU."""
        if device is not None and str(device).startswith("cuda") and self.distributed:
            return f"cuda:{self.local_rank}"
        return device

    # object collectives (small, on the long-timeout gloo group)
    def broadcast(self, value: Any) -> Any:
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.slow_group)
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.slow_group)
        return out

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's value on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0, group=self.slow_group)
        return out

    def wait_for_main(self) -> None:
        """Rank 0 did something the others need (data preparation): a broadcast, not a barrier at the end."""
        self.broadcast(None)

    def shutdown(self) -> None:
        import torch.distributed as dist

        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------------
class Execution:
    """What this rank does in `SuiteTrainer` (one process: everything)."""

    def __init__(self, ctx: DistContext | None = None, parallel: Any = None):
        self.ctx = ctx or DistContext()
        self.parallel = parallel  # ParallelPlan, or None for a plain one-process run
        self.mode = parallel.mode if parallel is not None else "group"
        self.data_shards = parallel.data_shards if parallel is not None else 1
        self.adapter: Any = None

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

    def my_groups(self, groups: list[Any]) -> list[Any]:
        if self.mode == "data" or not self.ctx.distributed:
            return list(groups)
        return [g for g in groups if self.parallel.assignment.get(g.index, 0) == self.rank]

    def my_shards(self) -> list[int]:
        per = self.data_shards // self.ctx.world_size
        return list(range(self.rank * per, (self.rank + 1) * per))

    # ---------------------------------------------------------------- records
    def save_manifest(self, suite_dir: Path, manifest: dict[str, Any]) -> bool:
        """True: the caller writes manifest.json (rank 0, after merging the other ranks' records)."""
        if self.ctx.is_main:
            if self.ctx.distributed and self.mode == "group":
                merge_rank_records(suite_dir, manifest, keep_files=True)
            return True
        if self.mode == "group":
            atomic_write_json(
                suite_dir / RANKS_DIR / f"rank_{self.rank}.json",
                _rank_record(manifest, self.my_groups([_Index(g["index"]) for g in manifest["groups"]])),
            )
        return False

    def gather_results(self, suite_dir: Path, manifest: dict[str, Any]) -> bool:
        """End of this rank's work; True on the rank that finishes the suite (rank 0, once every rank is done)."""
        if not self.ctx.distributed or self.mode == "data":
            if self.ctx.is_main:
                merge_rank_records(suite_dir, manifest)  # records of an earlier run on more ranks
            return self.ctx.is_main
        mine = [_Index(g["index"]) for g in manifest["groups"]]
        records = self.ctx.gather(_rank_record(manifest, self.my_groups(mine)))
        if not self.ctx.is_main:
            return False
        for record in records or []:
            _merge(manifest, record)
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
        steps_done: Any,
    ) -> Any:
        from qwen3_scope.training.suite import SegmentedStream

        if self.mode != "data":
            return SegmentedStream(store, dataset, hooks, steps_per_segment, seed, outlier_norm_factor, steps_done)
        from qwen3_scope.training.data_parallel import ShardedStream

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
    def training(self, trainer: Any, stream: Any) -> Iterator[None]:
        if self.mode != "data":
            with nullcontext():
                yield
            return
        from qwen3_scope.training.data_parallel import DataParallelAdapter

        self.adapter = DataParallelAdapter(trainer, stream, self.ctx)
        with self.adapter:
            yield


class _Index:
    def __init__(self, index: int):
        self.index = index


def _rank_record(manifest: dict[str, Any], groups: list[Any]) -> dict[str, Any]:
    """This rank's finished and running groups, their SAEs' status and metrics."""
    indices = {g.index for g in groups}
    records = [g for g in manifest["groups"] if g["index"] in indices and g["status"] != "pending"]
    ids = [i for g in records for i in g["sae_ids"]]
    return {
        "groups": records,
        "saes": {i: manifest["saes"][i]["status"] for i in ids},
        "metrics": {i: manifest["metrics"][i] for i in ids if i in manifest["metrics"]},
    }


def _merge(manifest: dict[str, Any], record: dict[str, Any]) -> None:
    by_index = {g["index"]: g for g in manifest["groups"]}
    for group in record.get("groups", []):
        old = by_index.get(group["index"])
        if old is None or old.get("sae_ids") != group.get("sae_ids"):
            continue  # a record of another grouping (never merged into this plan)
        if old["status"] == "done" and group["status"] != "done":
            continue
        old.clear()
        old.update(group)
    for sae_id, status in record.get("saes", {}).items():
        if sae_id in manifest["saes"] and manifest["saes"][sae_id]["status"] != "done":
            manifest["saes"][sae_id]["status"] = status
    manifest["metrics"].update(record.get("metrics", {}))


def merge_rank_records(suite_dir: Path, manifest: dict[str, Any], keep_files: bool = False) -> None:
    """Fold the other ranks' records (`.ranks/rank_<r>.json`) into the manifest: a suite resumed with any number
    of ranks keeps every group some rank finished."""
    folder = Path(suite_dir) / RANKS_DIR
    if not folder.is_dir():
        return
    for file in sorted(folder.glob("rank_*.json")):
        try:
            _merge(manifest, json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError) as err:  # a record being replaced right now: the next merge has it
            logger.debug("skipping %s: %s", file, err)
    if not keep_files:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------
def torchrun_argv(nproc: int, train_args: list[str]) -> list[str]:
    """`torchrun` arguments for `qwen3-scope train --nproc N ...` on this machine."""
    return ["--standalone", "--nproc-per-node", str(nproc), "--module", "qwen3_scope.train", *train_args]


def launch_config(config: Any) -> int:
    """`qwen3-scope train --nproc N`: check the backend and devices, then run the config on N torchrun ranks."""
    import tempfile

    import yaml  # type: ignore[import-untyped]

    backend_for(config.device)
    check_devices(config.device, config.nproc)
    values = config.to_dict()
    values.pop("nproc")
    with tempfile.TemporaryDirectory(prefix="qwen3-scope-train-") as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        return launch(config.nproc, ["--config", str(path)])


def launch(nproc: int, train_args: list[str]) -> int:
    """Run the training under torch.distributed.run (torchrun) with `nproc` local processes; its exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(torchrun_argv(nproc, train_args))
    try:
        run(args)
    except ChildFailedError as err:
        failures = err.failures  # {global rank: ProcessFailure}
        if failures:
            rank, first = min(failures.items(), key=lambda item: item[1].timestamp)
            detail = f"rank {rank} (exit code {first.exitcode}): {_error_text(first)}"
        else:
            detail = str(err)
        print(f"error: distributed training failed on {detail}")
        return 1
    return 0


def _error_text(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", message)
    text = str(message or "").strip()
    if not text or text.startswith("To enable traceback"):
        text = f"see the rank's output above (signal/exit {failure.exitcode})"
    return text.splitlines()[0] if text.count("\n") > 20 else text


# ------------------------------------------------------------------------------------------------------
def _spawned_rank(rank: int, world: int, rendezvous: str, settings: dict[str, Any]) -> None:
    torch.set_num_threads(int(settings.get("threads") or 1))
    from qwen3_scope.train import run_rank
    from qwen3_scope.training.config import SuiteTrainingConfig

    ctx = DistContext.initialise(
        rank,
        world,
        rendezvous,
        device=settings.get("device") or "cpu",
        timeout_seconds=float(settings.get("collective_timeout", 300.0)),
    )
    try:
        run_rank(SuiteTrainingConfig(**settings), ctx)
    finally:
        ctx.shutdown()


def spawn_local(settings: dict[str, Any], world_size: int, rendezvous_dir: Path) -> None:
    """Train a suite (`SuiteTrainingConfig` fields) on `world_size` spawned local processes with a file://
    rendezvous in `rendezvous_dir` (no ports); raises if any rank fails. For CPU demos and benchmarks; jobs
    use torchrun."""
    import time

    rendezvous = Path(rendezvous_dir).resolve() / f"rendezvous-{time.time_ns()}"
    torch.multiprocessing.start_processes(
        _spawned_rank,
        args=(world_size, f"file://{rendezvous}", settings),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
