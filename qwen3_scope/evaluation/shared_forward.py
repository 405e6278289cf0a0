"""A model wrapper that lets SAELens' `run_evals` share one clean forward pass across a whole suite.

Why: for every SAE and token batch `run_evals` makes a clean pass (logits and per-token loss), a cached
pass up to the SAE's layer, a pass with the SAE spliced in and a pass with the site zero-ablated. Across
a suite the clean passes are identical, and the prefix of a spliced pass (every layer before the SAE's)
equals the clean one. `SharedForwardModel` runs each batch's clean pass once, keeps its logits, loss and
the activations of every hook the suite needs (plus `resid_pre` of their layers), and answers:

- `model(tokens, return_type="both", loss_per_token=True)` and `run_with_cache(tokens, names_filter=...)`
  from that memo;
- `run_with_hooks(tokens, fwd_hooks=[(hook, fn)], ...)` by applying `fn` to the cached activation and
  running the rest of the model on the result: for a HookedTransformer from the hook's layer
  (`start_at_layer=L` on the cached `blocks.L.hook_resid_pre`; a patched `resid_post` of layer L is itself
  the input of layer L+1, so that pass starts there), for TransformerBridge / HF a full pass
  with the patched activation (they cannot start mid-model). A patched activation that is all zeros (the
  ablation baseline) gives the same pass for every SAE on that hook, so it is run once per hook.

Anything else (other tokens, several hooks, backward hooks, unknown kwargs) goes to the real model
unchanged, so the wrapper is always correct and only ever faster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens.HookedTransformer import Output

from qwen3_scope.model.loading import backend_of
from qwen3_scope.model.sites import UnknownHookError, hook_name, parse_hook_name

_PASS_THROUGH_KWARGS = {"prepend_bos"}  # no effect on token (not string) input


@dataclass
class BatchMemo:
    """What one clean pass over a batch leaves behind."""

    tokens: torch.Tensor
    logits: torch.Tensor | None  # None when the memo keeps activations only (see keep_logits)
    loss: torch.Tensor | None  # per token, (batch, pos - 1)
    cache: dict[str, torch.Tensor]
    attention_mask: torch.Tensor | None = None
    ablations: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class SharedForwardModel:
    """Duck-typed HookedRootModule over a real model (hooked, bridge or hf backend); see module docstring.

    hook_names: the SAE hooks of the suite; `shared_ablation_hooks`: hooks read by more than one SAE,
    whose zero-ablation pass is memoized too (one logits tensor per hook and batch). keep_logits=False
    keeps only activations (for vocabularies whose logits would not fit): clean calls then go to the model.
    """

    def __init__(
        self,
        model: Any,
        hook_names: Iterable[str],
        shared_ablation_hooks: Iterable[str] = (),
        backend: str | None = None,
        keep_logits: bool = True,
    ):
        self.keep_logits = keep_logits
        self.model = model
        self.backend = backend or backend_of(model)
        self.hook_names = sorted(set(hook_names))
        self.shared_ablation_hooks = set(shared_ablation_hooks) if keep_logits else set()
        parsed = {h: parse_hook_name(h, self.backend) for h in self.hook_names}
        self.layers = {h: layer for h, (layer, _) in parsed.items()}
        self.sites = {h: site for h, (_, site) in parsed.items()}
        self.splice = self.backend == "hooked"
        mid_block = {self.layers[h] for h in self.hook_names if self.sites[h] not in ("resid_pre", "resid_post")}
        self._resid_pre = {layer: hook_name("resid_pre", layer, "hooked") for layer in mid_block} if self.splice else {}
        self.memos: list[BatchMemo] = []
        self.stats: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:  # tokenizer, cfg, hook_dict, ... of the real model
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    # ---- the clean pass -------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, batches: Sequence[torch.Tensor], progress: bool = True) -> None:
        """Run the clean pass of every batch now (with a progress bar) instead of lazily."""
        for tokens in tqdm(batches, desc="clean forward passes", disable=not progress, leave=False):
            self._memo_for(tokens)

    def _find(self, tokens: Any) -> BatchMemo | None:
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
            return None
        for memo in self.memos:
            if memo.tokens is tokens or (
                memo.tokens.shape == tokens.shape and torch.equal(memo.tokens, tokens.to(memo.tokens.device))
            ):
                return memo
        return None

    @torch.no_grad()
    def _memo_for(self, tokens: torch.Tensor) -> BatchMemo:
        memo = self._find(tokens)
        if memo is not None:
            return memo
        names = self.hook_names + sorted(set(self._resid_pre.values()) - set(self.hook_names))
        (logits, loss), cache = self.model.run_with_cache(
            tokens, names_filter=names, return_type="both", loss_per_token=True
        )
        missing = [n for n in names if n not in cache]
        if missing:
            raise UnknownHookError(
                f"the {self.backend} model produced no activation for {missing}; these hook names do not exist in it."
            )
        attention_mask = self.model.input_to_embed(tokens)[3] if self.splice else None
        if not self.keep_logits:
            logits = loss = None
        memo = BatchMemo(
            tokens=tokens, logits=logits, loss=loss, cache={n: cache[n] for n in names}, attention_mask=attention_mask
        )
        self.memos.append(memo)
        self.stats["clean_passes"] += 1
        return memo

    def clear(self) -> None:
        self.memos.clear()

    # ---- what run_evals calls -------------------------------------------------------------------------
    def __call__(self, tokens: Any, return_type: str | None = "logits", loss_per_token: bool = False, **kwargs: Any):
        memo = self._find(tokens) if set(kwargs) <= _PASS_THROUGH_KWARGS else None
        if (
            memo is not None
            and memo.logits is not None
            and (return_type == "logits" or (return_type in ("both", "loss") and loss_per_token))
        ):
            self.stats["clean_from_memo"] += 1
            assert memo.loss is not None, "a memo keeps the loss whenever it keeps the logits"
            return _output(memo.logits, memo.loss, return_type)
        self.stats["model_calls"] += 1
        return self.model(tokens, return_type=return_type, loss_per_token=loss_per_token, **kwargs)

    forward = __call__

    def run_with_cache(self, tokens: Any, names_filter: Any = None, stop_at_layer: int | None = None, **kwargs: Any):
        """From the memo when every requested name is cached; the output is the clean logits, or None
        with `stop_at_layer` (SAELens discards it; its HookedProxyLM returns None there too)."""
        names = [names_filter] if isinstance(names_filter, str) else names_filter
        memo = self._find(tokens) if set(kwargs) <= _PASS_THROUGH_KWARGS and isinstance(names, (list, tuple)) else None
        if (
            memo is not None
            and all(n in memo.cache for n in names)
            and (stop_at_layer is not None or memo.logits is not None)
        ):
            self.stats["cache_from_memo"] += 1
            return (None if stop_at_layer is not None else memo.logits), {n: memo.cache[n].clone() for n in names}
        self.stats["model_calls"] += 1
        return self.model.run_with_cache(tokens, names_filter=names_filter, stop_at_layer=stop_at_layer, **kwargs)

    @torch.no_grad()
    def run_with_hooks(
        self,
        tokens: Any,
        return_type: str | None = "logits",
        fwd_hooks: Sequence = (),
        bwd_hooks: Sequence = (),
        loss_per_token: bool = False,
        **kwargs: Any,
    ):
        memo = (
            self._find(tokens) if set(kwargs) <= _PASS_THROUGH_KWARGS | {"reset_hooks_end", "clear_contexts"} else None
        )
        servable = (
            memo is not None
            and not bwd_hooks
            and len(fwd_hooks) == 1
            and isinstance(fwd_hooks[0][0], str)
            and fwd_hooks[0][0] in self.layers
            and (return_type == "logits" or (return_type in ("both", "loss") and loss_per_token))
        )
        if not servable:
            self.stats["model_calls"] += 1
            return self.model.run_with_hooks(
                tokens,
                return_type=return_type,
                fwd_hooks=fwd_hooks,
                bwd_hooks=bwd_hooks,
                loss_per_token=loss_per_token,
                **kwargs,
            )
        assert memo is not None  # servable implies a memo
        name, fn = fwd_hooks[0]
        activation = memo.cache[name].clone()
        result = fn(activation, hook=self.model.hook_dict[name])
        patched = activation if result is None else result  # a hook may edit in place and return None
        ablation = name in self.shared_ablation_hooks and not patched.any()
        if ablation and name in memo.ablations:
            self.stats["ablation_from_memo"] += 1
            return _output(*memo.ablations[name], return_type)
        logits, loss = self._patched_pass(memo, name, patched)
        if ablation:
            memo.ablations[name] = (logits, loss)
        return _output(logits, loss, return_type)

    def _patched_pass(self, memo: BatchMemo, name: str, patched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model from `name` on, with `name`'s activation replaced by `patched`."""
        replace = [(name, lambda activation, hook: patched)]
        if self.splice:
            layer, site = self.layers[name], self.sites[name]
            self.stats["spliced_passes"] += 1
            if site in ("resid_post", "resid_pre"):  # the patched residual *is* the input of block L+1 (or L)
                start, residual, replace = layer + (site == "resid_post"), patched, []
            else:
                start, residual = layer, memo.cache[self._resid_pre[layer]]
            with self.model.hooks(fwd_hooks=replace):
                logits, loss = self.model(
                    residual,
                    start_at_layer=start,
                    tokens=memo.tokens,
                    attention_mask=memo.attention_mask,
                    return_type="both",
                    loss_per_token=True,
                )
            return logits, loss
        self.stats["full_patched_passes"] += 1
        logits, loss = self.model.run_with_hooks(
            memo.tokens, fwd_hooks=replace, return_type="both", loss_per_token=True
        )
        return logits, loss


def _output(logits: torch.Tensor, loss: torch.Tensor, return_type: str | None):
    if return_type == "logits":
        return logits
    if return_type == "loss":
        return loss
    return Output(logits, loss)
