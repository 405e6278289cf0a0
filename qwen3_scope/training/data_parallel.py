"""Data parallelism inside a group: sharded token streams and an all-reduce adapter around SAELens' trainer.

Why: with fewer groups than ranks (one 65K SAE on 8 GPUs) the ranks must share a group. Each rank runs the
LLM on its own shards of the token stream, and everything the SAEs' training depends on is made to agree:

- the global batch: the stream is cut into `n_shards` shards (interleaved rows of the training data, each
  with its own seeded SAELens mixing buffer and RNG); step t's global batch is the concatenation of every
  shard's batch t. It does not depend on the world size: one process reading all shards computes the same
  steps (that is how a 2-rank run resumes on 1 rank);
- gradients: an adapter around each SAE's `training_forward_pass` queues, at the end of the backward pass, one
  all-reduce (average) of the SAE's gradients, in float32 or wider, before SAELens clips and steps; every
  SAELens loss is a per-token mean, so equal shards give the global batch's gradient;
- initialisation (weights, b_dec): broadcast from rank 0 when the group starts;
- the norm-scaling factor: each rank's mean activation norm, averaged over ranks, gives the global one;
- dead-latent statistics (firing counts, steps since fired) that the TopK AuxK / JumpReLU pre-act losses and the
  saved sparsity read: summed over ranks after every step; sample and step counts and so the learning-rate
  and coefficient schedules count global batches (the trainer's batch size is the global one).

TopK/JumpReLU thresholds are parameters (JumpReLU) or per-token (TopK), so they agree through the above. The fast
JumpReLU class's dead-latent reopening decides from the step's firing and pre-activation quantiles: it reads every
rank's share through `RankSync` (an OR of the firing, the batch's rows gathered), so all ranks reopen the same latents
by the same amounts, as one process would (without it each rank reopened from its own half, the ranks' SAEs parted,
and the saved rank-0 SAE lost quality: benchmarks/bench_dp_quality.py).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from qwen3_scope.core import compat
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.training.process_group import DistContext
from qwen3_scope.training.stream import SegmentedStream

logger = logging.getLogger(__name__)


class ShardedStream:
    """This rank's shards of a group's activation stream, concatenated per hook into its share of each batch.

    Each shard is a `SegmentedStream` over rows `s, s + n_shards, ...` of the training data with a batch of
    `train_batch_size_tokens / n_shards` tokens, read under its own RNG state (so shards read in one process
    give the same batches as shards read on separate ranks). Checkpoints hold every shard's row offset.
    """

    def __init__(
        self,
        store: Any,
        dataset: Any,
        hooks: list[str],
        steps_per_segment: int,
        seed: int,
        outlier_norm_factor: float | None,
        steps_done: Callable[[], int],
        shards: list[int],
        n_shards: int,
        ctx: DistContext,
    ):
        batch = store.train_batch_size_tokens
        if batch % n_shards:
            raise ConfigError(
                f"train_batch_size_tokens {batch} is not divisible by {n_shards} data shards; choose --data-shards "
                "dividing it."
            )
        self.global_batch, self.n_shards, self.shards, self.ctx = batch, n_shards, shards, ctx
        self.steps_per_segment, self.steps_done, self.hooks = steps_per_segment, steps_done, hooks
        self.on_boundary: Callable[[int, dict[str, Any]], None] | None = None
        self.segment: int | None = None
        self.streams: dict[int, SegmentedStream] = {}
        self.rng: dict[int, torch.Tensor] = {}
        for s in shards:
            shard_store = copy.copy(store)  # SAELens' store, one per shard (shares the model, not the position)
            shard_store.train_batch_size_tokens = batch // n_shards
            rows = dataset.select(range(s, len(dataset), n_shards))
            self.streams[s] = SegmentedStream(
                shard_store, rows, hooks, steps_per_segment, seed * 7919 + s, outlier_norm_factor, steps_done
            )
            self.rng[s] = torch.random.get_rng_state()

    @property
    def local_batch(self) -> int:
        return self.global_batch * len(self.shards) // self.n_shards

    @property
    def tokens_filtered(self) -> int:
        return sum(s.tokens_filtered for s in self.streams.values())

    def state(self) -> dict[str, Any]:
        """Every shard's position (gathered from the ranks that read them)."""
        mine = {s: stream.offset for s, stream in self.streams.items()}
        offsets: dict[int, int] = {}
        for part in self.ctx.all_gather(mine):
            offsets.update({int(k): int(v) for k, v in part.items()})
        return {
            "segment": int(self.segment or 0),
            "data_shards": self.n_shards,
            "shard_offsets": [offsets[s] for s in range(self.n_shards)],
        }

    def restore(self, state: dict[str, Any]) -> None:
        recorded = int(state.get("data_shards", 1))
        if recorded != self.n_shards:
            raise ConfigError(
                f"this checkpoint holds {recorded} data shard position(s), not {self.n_shards}; resume with the "
                "suite's recorded data shards."
            )
        self.segment = None
        for s, stream in self.streams.items():
            stream.restore({"segment": state["segment"], "offset": state["shard_offsets"][s]})

    def __iter__(self) -> ShardedStream:
        return self

    def _with_rng(self, shard: int, fn: Callable[[], Any]) -> Any:
        outer = torch.random.get_rng_state()
        torch.random.set_rng_state(self.rng[shard])
        try:
            return fn()
        finally:
            self.rng[shard] = torch.random.get_rng_state()
            torch.random.set_rng_state(outer)

    def __next__(self) -> dict[str, torch.Tensor]:
        wanted = self.steps_done() // self.steps_per_segment
        if wanted != self.segment:
            moving_on = self.segment is not None
            for s, stream in self.streams.items():
                self._with_rng(s, _call(stream._begin, wanted))
            self.segment = wanted
            if moving_on and self.on_boundary is not None:
                self.on_boundary(wanted, self.state())
        parts = [self._with_rng(s, _call(next, stream._loader)) for s, stream in self.streams.items()]
        if len(parts) == 1:
            return parts[0]
        return {h: torch.cat([p[h] for p in parts]) for h in self.hooks}


class DataParallelAdapter:
    """Makes a `MultiSAETrainer` on every rank of a data-parallel group compute the single-process steps of the
    global batch (see the module docstring). A context manager: installed for `fit()`, removed afterwards."""

    def __init__(self, trainer: Any, stream: ShardedStream, ctx: DistContext):
        self.trainer, self.stream, self.ctx = trainer, stream, ctx
        self.world = ctx.world_size
        self.bytes_per_step = 0
        self._installed: list[tuple[Any, Any]] = []

    # ----------------------------------------------------------------- setup
    def __enter__(self) -> DataParallelAdapter:
        self.ctx.wait_for_main()  # rank 0 may still be evaluating/saving the previous group
        self._broadcast_parameters()
        self._estimate_scaling_factors()
        if self.world > 1:
            for sae_trainer in self.trainer.trainers.values():
                self._install(sae_trainer)
        return self

    def __exit__(self, *exc: object) -> None:
        for sae_trainer, sae in self._installed:
            sae.__dict__.pop("training_forward_pass", None)
            sae_trainer.__dict__.pop("step", None)
            if hasattr(sae, "rank_sync"):
                sae.rank_sync = None
        self._installed.clear()

    def _broadcast_parameters(self) -> None:
        if self.world <= 1:
            return
        for sae in self.trainer.saes.values():
            for param in sae.parameters():
                dist.broadcast(param.data, src=0)

    def _estimate_scaling_factors(self) -> None:
        """SAELens' norm-scaling factor (sqrt(d_in) / mean activation norm) over the global batches.

        The norms are summed in float64 on each rank and then over the ranks, so the factor does not depend on
        how the batches are split (SAELens' own estimate sums in float32, which does)."""
        needs = [
            name
            for name, sae in self.trainer.saes.items()
            if sae.cfg.normalize_activations == "expected_average_only_in"
            and self.trainer.trainers[name].activation_scaler.scaling_factor is None
        ]
        if not needs:
            return
        n = self.trainer.cfg.n_batches_for_norm_estimate
        cached = [next(self.stream) for _ in range(n)]  # what MultiSAETrainer would draw, on this rank's shards
        sums = torch.zeros(len(needs) + 1, dtype=torch.float64)
        for i, name in enumerate(needs):
            hook = self.trainer.hook_names[name]
            sums[i] = sum(batch[hook].double().norm(dim=-1).sum().item() for batch in cached)
        sums[-1] = sum(next(iter(batch.values())).shape[0] for batch in cached)
        if self.world > 1:
            sums = sums.to(self._device())
            dist.all_reduce(sums)
            sums = sums.cpu()
        for i, name in enumerate(needs):
            mean_norm = sums[i].item() / sums[-1].item()
            self.trainer.trainers[name].activation_scaler.scaling_factor = (
                self.trainer.saes[name].cfg.d_in ** 0.5 / mean_norm
            )

    def _device(self) -> torch.device:
        return (
            next(iter(self.trainer.saes.values())).W_dec.device if self.ctx.backend == "nccl" else torch.device("cpu")
        )

    # ----------------------------------------------------------------- per step
    def _install(self, sae_trainer: Any) -> None:
        sae = sae_trainer.sae
        params = [p for p in sae.parameters() if p.requires_grad]
        forward = sae.training_forward_pass  # SAELens' own (bound) step
        step = sae_trainer.step
        world, device = self.world, self._device()
        extra = self.stream.global_batch - self.stream.local_batch
        self.bytes_per_step += sum(p.numel() * max(p.element_size(), 4) for p in params) + 4 * sae.cfg.d_sae

        def reduce_gradients() -> None:
            dtype = torch.promote_types(params[0].dtype, torch.float32)  # reduce in float32 (or wider)
            flat = torch.cat(
                [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(device, dtype) for p in params]
            )
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in params:
                n = p.numel()
                value = flat[offset : offset + n].view_as(p).to(p.device, p.dtype)
                if p.grad is None:
                    p.grad = value
                else:
                    p.grad.copy_(value)
                offset += n

        def training_forward_pass(step_input: Any) -> Any:
            output = forward(step_input)
            if output.loss.requires_grad:

                def at_backward_start(grad: torch.Tensor) -> torch.Tensor:
                    compat.queue_after_backward(reduce_gradients)
                    return grad

                output.loss.register_hook(at_backward_start)
            return output

        def dp_step(batch: torch.Tensor) -> Any:
            since, freq = sae_trainer.n_forward_passes_since_fired.clone(), sae_trainer.act_freq_scores.clone()
            output = step(batch)  # SAELens' step on this rank's share (the gradients are averaged inside)
            with torch.no_grad():
                fired = output.feature_acts.bool().sum(0).to(device, torch.float32)
                dist.all_reduce(fired)
                fired = fired.to(freq.device)
                sae_trainer.act_freq_scores = freq + fired.to(freq.dtype)
                since = since + 1
                since[fired > 0] = 0
                sae_trainer.n_forward_passes_since_fired = since
            sae_trainer.n_training_samples += extra  # the global batch was trained on
            return output

        sae.__dict__["training_forward_pass"] = training_forward_pass
        sae_trainer.__dict__["step"] = dp_step
        if hasattr(sae, "rank_sync"):  # the fast JumpReLU class reopens dead latents from the whole batch
            sae.rank_sync = RankSync(world, device)
        self._installed.append((sae_trainer, sae))


class RankSync:
    """`qwen3_scope.saes.fast_saes.RankSync` over this process group: what a training SAE's own per-step decisions
    (the fast JumpReLU class's dead-latent reopening) need from the other ranks, so that every rank decides the same
    as one process reading the whole batch. Collective calls: every rank makes them in the same order."""

    def __init__(self, world: int, device: torch.device):
        self.world, self.device = world, device

    def any(self, mask: torch.Tensor) -> torch.Tensor:
        counts = mask.to(self.device, torch.float32)
        dist.all_reduce(counts)
        return (counts > 0).to(mask.device)

    def cat(self, rows: torch.Tensor) -> torch.Tensor:
        local = rows.to(self.device).contiguous()
        sizes = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([local.shape[0]], device=self.device))
        longest = max(int(n) for n in sizes)
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=self.device)
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)]).to(rows.device)

    def first(self, tensor: torch.Tensor) -> torch.Tensor:
        shared = tensor.to(self.device).clone()
        dist.broadcast(shared, src=0)
        return shared.to(tensor.device)


def _call(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)
