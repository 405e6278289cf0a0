"""Suite training on torch.distributed: the torchrun launcher and local spawning, on top of the training layer.

Why: a Qwen3 suite is far beyond one GPU, and the engine for many processes is `torch.distributed` started
by `torchrun` (`torch.distributed.run`), not a home-made one. The pieces, bottom up:

- `process_group.DistContext`: the process group (gloo on CPU, NCCL on GPUs), checked before anything loads
  (`backend_for`, `check_devices`), with a short collective timeout for the training traffic and a long one
  for waits on other ranks' work. Nothing ends on a barrier: a rank that fails exits, its peers' collectives
  fail on the closed connection, and the launcher stops the job and reports the rank and its error.
- `execution.Execution`: what this rank does in `SuiteTrainer` (its groups, its data shards, who writes the
  manifest and the checkpoints; per-rank records in `.ranks/` so a job resumes with any number of ranks).
- `suite.run_rank`: one rank's `train_suite`, with the rank named in its errors.
- here: `launch` / `launch_config` (`qwen3-scope train --nproc N` runs `torchrun --standalone --nproc-per-node N
  -m qwen3_scope.train`) and `spawn_local` (spawned local ranks with a file:// rendezvous, for demos and
  benchmarks).

The suite directory (`--out`) must be on a filesystem every rank sees (as for any checkpointing job).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml  # type: ignore[import-untyped]
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import get_args_parser, run

from qwen3_scope.training.config import SuiteTrainingConfig
from qwen3_scope.training.execution import RANKS_DIR, Execution, merge_rank_records
from qwen3_scope.training.process_group import (
    LONG_WAIT,
    DistContext,
    DistributedSetupError,
    backend_for,
    check_devices,
)
from qwen3_scope.training.suite import run_rank

__all__ = [  # the process-group and execution names are re-exported: callers know them from here
    "LONG_WAIT",
    "RANKS_DIR",
    "DistContext",
    "DistributedSetupError",
    "Execution",
    "backend_for",
    "check_devices",
    "launch",
    "launch_config",
    "merge_rank_records",
    "spawn_local",
    "torchrun_argv",
]


def torchrun_argv(nproc: int, train_args: list[str]) -> list[str]:
    """`torchrun` arguments for `qwen3-scope train --nproc N ...` on this machine."""
    return ["--standalone", "--nproc-per-node", str(nproc), "--module", "qwen3_scope.train", *train_args]


def launch_config(config: SuiteTrainingConfig) -> int:
    """`qwen3-scope train --nproc N`: check the backend and devices, then run the config on N torchrun ranks."""
    if config.nproc is None:
        raise DistributedSetupError("launch_config needs nproc, the number of local ranks (--nproc N).")
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
    args = get_args_parser().parse_args(torchrun_argv(nproc, train_args))
    # The ranks' OpenMP threads sleep while they wait instead of spinning (set before they import torch; a user's
    # own OMP_WAIT_POLICY wins): ranks sharing a machine's cores otherwise slow each other down many times over.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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
def _spawned_rank(rank: int, world: int, rendezvous: str, config: SuiteTrainingConfig) -> None:
    torch.set_num_threads(config.threads or 1)
    ctx = DistContext.initialise(
        rank, world, rendezvous, device=config.device or "cpu", timeout_seconds=config.collective_timeout
    )
    try:
        run_rank(config, ctx)
    finally:
        ctx.shutdown()


def spawn_local(config: SuiteTrainingConfig, world_size: int, rendezvous_dir: Path) -> None:
    """Train the suite of `config` on `world_size` spawned local processes with a file:// rendezvous in
    `rendezvous_dir` (no ports); raises if any rank fails. For CPU demos and benchmarks; jobs use torchrun."""
    rendezvous = Path(rendezvous_dir).resolve() / f"rendezvous-{time.time_ns()}"
    torch.multiprocessing.start_processes(
        _spawned_rank,
        args=(world_size, f"file://{rendezvous}", config),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
