"""This process's place in a torch.distributed job: `DistContext` (rank, world, the two process groups) and the
checks that run before anything loads (backend, devices).

The process group is gloo on CPU, NCCL on GPUs, with a short collective timeout for the training traffic and a
second gloo group with a long timeout for waits on other ranks' work (data preparation, evaluation, the end of the
run). Nothing ends on a barrier: a rank that fails exits, its peers' collectives fail on the closed connection, and
the launcher (torchrun or `torch.multiprocessing.spawn`, see `training.distributed`) stops the job and reports the
rank and its error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from qwen3_scope.core.errors import ConfigError

LONG_WAIT = timedelta(days=7)  # waits on other ranks' groups/evaluation; a failed peer ends them at once


class DistributedSetupError(ConfigError):
    """A distributed run that cannot start (backend, devices, world size); raised before any model loads."""


def backend_for(device: str | None) -> str:
    """gloo for CPU ranks, NCCL for CUDA ranks; a clear error when this torch lacks it."""
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
            from torch.distributed.rendezvous import rendezvous  # lazy: absent from torch builds without distributed

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
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.slow_group)
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.slow_group)
        return out

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's value on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [value]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, out, dst=0, group=self.slow_group)
        return out

    def wait_for_main(self) -> None:
        """Rank 0 did something the others need (data preparation): a broadcast, not a barrier at the end."""
        self.broadcast(None)

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
