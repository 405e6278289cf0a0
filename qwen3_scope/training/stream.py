"""A group's activation stream, cut into segments that restart exactly: what makes a resumed suite bit-identical.

`SegmentedStream` is the one-process stream (`suite.SuiteTrainer` reads it); `data_parallel.ShardedStream` holds
one per data shard. See `training.suite`'s module docstring for why segments.

Transcoders: a transcoder trains on its input and its target activation of the same tokens. Its key in the stream is
`pair_key(input hook, output hook)`; the stream reads both hooks from the same forward pass and delivers them
concatenated on the last dimension under that key (`with_pairs`), before SAELens' mixing buffer, so the shuffle keeps
input and target of a token together. SAELens' trainer routes `batch[key]` to the transcoder, which splits it
(`saes.transcoders`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from sae_lens.training.mixing_buffer import multi_hook_concat_split_iter

from qwen3_scope.core import compat
from qwen3_scope.training import guards

PAIR_SEPARATOR = "->"


def pair_key(hook_in: str, hook_out: str) -> str:
    """The stream key of a transcoder's (input, target) hooks: `blocks.2.ln2.hook_normalized->blocks.2.hook_mlp_out`."""
    return f"{hook_in}{PAIR_SEPARATOR}{hook_out}"


def split_pair_key(key: str) -> tuple[str, str] | None:
    """(input hook, output hook) of a pair key; None for a plain hook."""
    if PAIR_SEPARATOR not in key:
        return None
    hook_in, hook_out = key.split(PAIR_SEPARATOR, 1)
    return hook_in, hook_out


def raw_hooks(keys: list[str]) -> list[str]:
    """The model hooks a list of stream keys reads (each pair's two hooks), in order, once each."""
    out: list[str] = []
    for key in keys:
        pair = split_pair_key(key)
        out += list(pair) if pair is not None else [key]
    return list(dict.fromkeys(out))


def with_pairs(acts: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """The batch under `keys`: plain hooks as they are, pair keys as [input ; target] on the last dimension."""
    out = {}
    for key in keys:
        pair = split_pair_key(key)
        out[key] = acts[key] if pair is None else torch.cat([acts[pair[0]], acts[pair[1]]], dim=-1)
    return out


class SegmentedStream:
    """One group's multi-hook activation batches, restartable exactly at segment boundaries.

    Each segment reads the training rows from a recorded offset (a rotated view of the dataset) through
    SAELens' own store, filter and mixing buffer, with the global RNG (SAELens' shuffle) seeded per
    segment. `on_boundary(segment, state)` is called before a segment starts, when the trainer has
    finished every step of the previous one: that is where checkpoints are written. `hooks` are stream keys: hooks,
    and the pair keys of transcoders (`pair_key`), whose two hooks the store must capture.
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
    ):
        self.store, self.base, self.hooks = store, dataset, hooks
        self.steps_per_segment, self.seed, self.outlier_norm_factor = steps_per_segment, seed, outlier_norm_factor
        self.steps_done = steps_done
        self.on_boundary: Callable[[int, dict[str, int]], None] | None = None
        self.segment: int | None = None
        self.offset = 0
        self._rows_at_start = 0
        self._loader: Iterator[dict[str, torch.Tensor]] | None = None
        self.tokens_filtered = 0

    def state(self) -> dict[str, int]:
        return {"segment": int(self.segment or 0), "offset": int(self.offset)}

    def restore(self, state: dict[str, int]) -> None:
        """Continue from a checkpoint: the next batch starts segment `state['segment']` at its row offset."""
        self.segment, self.offset = None, int(state["offset"])

    def __iter__(self) -> SegmentedStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        wanted = self.steps_done() // self.steps_per_segment
        if wanted != self.segment:
            self._begin(wanted)
        return next(self._loader)  # type: ignore[arg-type]

    def _begin(self, segment: int) -> None:
        moving_on = self.segment is not None
        if moving_on:  # from a segment we ran: the next one starts at the first row it did not finish
            consumed = self.store.n_dataset_processed - self._rows_at_start
            self.offset = (self.offset + consumed) % len(self.base)
        self.segment = segment
        if moving_on and self.on_boundary is not None:
            self.on_boundary(segment, self.state())
        n = len(self.base)
        self.store.dataset = self.base.select(list(range(self.offset, n)) + list(range(self.offset)))
        compat.restart_tokenized_sequences(self.store)
        self._rows_at_start = self.store.n_dataset_processed
        torch.manual_seed(self.seed * 1_000_003 + segment)
        self._loader = multi_hook_concat_split_iter(
            buffer_size=self.store.n_batches_in_buffer * self.store.training_context_size,
            batch_size=self.store.train_batch_size_tokens,
            activations_loader=self._filtered(),
            hook_names=self.hooks,
            mix_fraction=self.store.activations_mixing_fraction,
        )

    def _filtered(self) -> Iterator[dict[str, torch.Tensor]]:
        """SAELens' special-token-filtered activations, minus extreme-norm tokens (at any hook of the group), with
        transcoders' (input, target) pairs joined."""
        paired = any(split_pair_key(k) is not None for k in self.hooks)
        for acts in compat.filtered_multi_hook_activations(self.store):
            guards.check_finite(acts, self.steps_done())  # before the outlier filter, which would drop NaN tokens
            if self.outlier_norm_factor is not None:
                keep = outlier_mask(acts, self.outlier_norm_factor)
                self.tokens_filtered += int((~keep).sum())
                acts = {h: a[keep] for h, a in acts.items()}
            yield with_pairs(acts, self.hooks) if paired else acts


def outlier_mask(acts: dict[str, torch.Tensor], factor: float) -> torch.Tensor:
    """True for tokens whose norm is within `factor` x the batch median at every hook."""
    keep = None
    for a in acts.values():
        norms = a.float().norm(dim=-1)
        ok = norms <= factor * norms.median()
        keep = ok if keep is None else keep & ok
    assert keep is not None
    return keep
