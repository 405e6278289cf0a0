"""SAELens' downstream metrics (CE and KL with the SAE spliced in, and with the site zero-ablated) for a whole
suite, with every full-vocabulary operation done once per pass and in bounded memory.

Why: at Qwen3's vocabulary (151,936) the unembedding, softmax and KL dominate evaluation. SAELens'
`get_recons_loss` (inside `run_evals`) does, per SAE and batch, a clean pass, a spliced pass and an ablation
pass, each returning full logits that are then softmaxed again for the KL; a suite repeats the clean pass
and its softmax for every SAE, and holding a batch's logits of every pass costs gigabytes. Here, for each
chunk of sequences of a batch:

- one clean pass, stopped before the unembedding, caches every hook the suite reads; its log-probabilities
  are computed once and shared by every SAE;
- per hook, one zero-ablation pass (shared by every SAE on that hook) and per SAE one spliced pass, each
  run from the SAE's layer only (HookedTransformer's `start_at_layer`; the layers before it are the clean
  ones) and unembedded chunk by chunk;
- CE and KL(clean || patched) are reduced to per-token numbers immediately (from a logsumexp and one
  multiply-add over the vocabulary: no log-softmax, no log of the clean probabilities per SAE), so at most one
  chunk of logits of each kind is alive at a time (`max_logits_gb`).

The formulas and masking are SAELens' (`get_recons_loss`, `get_downstream_reconstruction_metrics`): the SAE
replaces the activation except at ignored (special) tokens; ablation zeroes it everywhere; KL per token is
`kl_div(log_softmax(new), softmax(clean)).sum(-1)`; CE is the next-token loss; both are averaged over the
tokens that are not ignored; the scores are (ablation - SAE) / (ablation - clean). Given a loss mask (the
tokens a deployed model predicts, `qwen3_scope.model.loss_mask`), CE and KL are taken only at positions whose
*next* token is predicted (assistant turns, plain text), never on prompt or control tokens. TransformerBridge and HF
models cannot start mid-model, so there each pass is a full pass (still once per SAE and per hook).

Transcoders (SAELens' `Transcoder` family: `cfg.metadata.hook_name_out` set) read one hook and write another: the
spliced pass replaces the *written* hook (`hook_name_out`, e.g. `blocks.L.hook_mlp_out`) with the transcoder's output
on the clean activation of the hook it reads, and the ablations are of the written hook. Two more kinds of pass serve
them: a mean ablation (the written hook replaced by a given mean activation at every token, as the zero ablation
zeroes it everywhere) and a replacement model (several transcoders spliced at once, each reading the activation of the
patched model, as attribution graphs use them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.model.loading import model_spec
from qwen3_scope.model.sites import hook_name, parse_hook_name

_HEAD_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z")


def written_hook(sae: Any) -> str:
    """The hook an SAE's output replaces: its own hook, or a transcoder's `hook_name_out`."""
    meta = sae.cfg.metadata
    return getattr(meta, "hook_name_out", None) or meta.hook_name


def is_transcoder(sae: Any) -> bool:
    """Whether the SAE reads one hook and writes another (SAELens' transcoders: `hook_name_out` differs)."""
    return written_hook(sae) != sae.cfg.metadata.hook_name


def reconstruct(sae: Any, x: torch.Tensor) -> torch.Tensor:
    """The SAE's reconstruction of `x`, or a transcoder's prediction of its output hook from input `x` (its
    `forward`, which includes the skip connection `W_skip` of SAELens' skip transcoders; SAELens' own splice,
    `HookedSAETransformer.add_sae`, calls `decode(encode(x))` and leaves `W_skip` out)."""
    with torch.no_grad():
        x_sae = x.to(sae.device, sae.dtype)
        y = sae.forward(x_sae) if is_transcoder(sae) else sae.decode(sae.encode(x_sae))
    return y.to(x.device, x.dtype)


def spliced(sae: Any, activation: torch.Tensor, keep: torch.Tensor | None, source: torch.Tensor | None = None):
    """SAELens' replacement hook: the SAE's reconstruction of `activation` (a transcoder's output computed from
    `source`, the activation of the hook it reads) where `keep` (batch, pos) is True; the activation elsewhere."""
    flat = activation.ndim == 4
    x = activation.flatten(-2, -1) if flat else activation
    x_in = x if source is None else (source.flatten(-2, -1) if source.ndim == 4 else source)
    new = reconstruct(sae, x_in).to(x.dtype)
    if keep is not None:
        new = torch.where(keep.to(x.device)[..., None], new, x)
    return new.reshape(activation.shape) if flat else new


def splice_hooks(saes: Sequence[Any], keep: torch.Tensor | None = None) -> list[tuple[str, Any]]:
    """TransformerLens forward hooks that splice several SAEs and transcoders in at once (for transcoders: the
    replacement model). Each transcoder's input is captured at the hook it reads *in the running pass* (so it sees
    the outputs of the transcoders before it) and its output replaces the hook it writes, except where `keep`
    (batch, pos) is False. SAELens' `HookedSAETransformer.run_with_saes` does the same for transcoders without a
    skip connection; these hooks also keep `W_skip` and work on every backend with forward hooks."""
    captured: dict[int, torch.Tensor] = {}
    hooks: list[tuple[str, Any]] = []
    for i, sae in enumerate(saes):
        reads = sae.cfg.metadata.hook_name

        def capture(activation: torch.Tensor, hook: Any, i: int = i) -> None:
            captured[i] = activation

        def replace(activation: torch.Tensor, hook: Any, i: int = i, sae: Any = sae, reads: str = reads):
            if not is_transcoder(sae):
                return spliced(sae, activation, keep)
            if i not in captured:
                raise ConfigError(
                    f"a transcoder writes {hook.name} before the model reaches {reads}, the hook it reads; its input "
                    "must come before its output in the forward pass."
                )
            return spliced(sae, activation, keep, captured.pop(i))

        if is_transcoder(sae):
            hooks.append((reads, capture))
        hooks.append((written_hook(sae), replace))
    return hooks


@dataclass
class _Sum:
    """Per-token values (a few floats per token), averaged at the end exactly as SAELens does (cat, mean)."""

    values: list[torch.Tensor] = field(default_factory=list)

    def add(self, values: torch.Tensor) -> None:
        self.values.append(values.detach().float().cpu())

    @property
    def mean(self) -> float:
        return torch.cat(self.values).mean().item() if self.values else float("nan")


@dataclass
class _Accumulators:
    ce: dict[str, _Sum] = field(default_factory=dict)
    kl: dict[str, _Sum] = field(default_factory=dict)

    def get(self, kind: str, key: str) -> _Sum:
        return getattr(self, kind).setdefault(key, _Sum())


class SuiteReconstruction:
    """Accumulates CE/KL metrics of many SAEs over token batches; `add_batch` returns the clean activations.

    saes: {sae_id: SAE or transcoder}; ignore_tokens: token ids whose activations are left unreplaced and whose
    metrics are dropped (SAELens' `exclude_special_tokens`); logits_dtype: dtype of the log-softmax/KL arithmetic;
    max_logits_gb: bound on one chunk's logits (sequences per chunk follow from it). mean_ablations: {written hook:
    mean activation} for an extra pass per hook with that mean in place of the activation; replacement_sets: {name:
    sae_ids} of transcoders spliced in at once (one pass per set and chunk, plus one with all their written hooks
    zero-ablated together).
    """

    def __init__(
        self,
        model: Any,
        saes: dict[str, Any],
        backend: str,
        ignore_tokens: Sequence[int] = (),
        logits_dtype: torch.dtype = torch.float32,
        max_logits_gb: float = 0.5,
        mean_ablations: dict[str, torch.Tensor] | None = None,
        replacement_sets: Mapping[str, Sequence[str]] | None = None,
    ):
        self.model, self.saes, self.backend = model, saes, backend
        self.ignore = torch.tensor(sorted(set(ignore_tokens)), dtype=torch.long)
        self.logits_dtype, self.max_logits_bytes = logits_dtype, int(max_logits_gb * 2**30)
        self.hooks = {sae_id: written_hook(sae) for sae_id, sae in saes.items()}  # the hook each SAE replaces
        self.reads = {sae_id: sae.cfg.metadata.hook_name for sae_id, sae in saes.items()}  # the hook each SAE reads
        self.mean_ablations = dict(mean_ablations or {})
        self.replacement_sets = {name: list(ids) for name, ids in (replacement_sets or {}).items()}
        unsupported = [i for i, s in saes.items() if s.cfg.metadata.hook_head_index is not None]
        if unsupported:
            raise ConfigError(
                f"SAEs {unsupported} read a single attention head; evaluate them with share_forward=False."
            )
        for name, ids in self.replacement_sets.items():
            written = [self.hooks[i] for i in ids]
            if len(set(written)) != len(written):
                raise ConfigError(
                    f"replacement set {name!r} has two transcoders writing the same hook "
                    f"({sorted({h for h in written if written.count(h) > 1})}); a replacement model has one per hook."
                )
        parsed = {h: parse_hook_name(h, backend) for h in set(self.hooks.values())}
        self.layer = {h: layer for h, (layer, _) in parsed.items()}
        self.site = {h: site for h, (_, site) in parsed.items()}
        self.splice = backend == "hooked"
        self.n_layers, self.vocab = model_spec(model).n_layers, model_spec(model).vocab_size
        mid = {self.layer[h] for h in parsed if self.site[h] not in ("resid_pre", "resid_post")}
        self.resid_pre = {layer: hook_name("resid_pre", layer, "hooked") for layer in mid} if self.splice else {}
        self.acc = _Accumulators()
        self.stats: Counter[str] = Counter()

    # ---- passes -------------------------------------------------------------------------------------------
    def _chunks(self, n_sequences: int, seq_len: int) -> list[slice]:
        per_sequence = seq_len * self.vocab * torch.finfo(self.logits_dtype).bits // 8
        size = max(1, min(n_sequences, self.max_logits_bytes // max(per_sequence, 1)))
        return [slice(i, min(i + size, n_sequences)) for i in range(0, n_sequences, size)]

    def _logits(self, final: torch.Tensor) -> torch.Tensor:
        """Final residual (after the last block) -> logits in `logits_dtype`; other backends' passes give logits."""
        if self.splice:
            final = self.model.unembed(self.model.ln_final(final))
        self.stats["unembeddings"] += 1
        return final.to(self.logits_dtype)

    @property
    def cached_hooks(self) -> list[str]:
        """The hooks whose clean activations `add_batch` returns: every hook an SAE reads or writes."""
        return sorted(set(self.hooks.values()) | set(self.reads.values()))

    def _clean(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        names = sorted(set(self.cached_hooks) | set(self.resid_pre.values()))
        self.stats["clean_passes"] += 1
        if self.splice:
            final, cache = self.model.run_with_cache(tokens, names_filter=names, stop_at_layer=self.n_layers)
            mask = self.model.input_to_embed(tokens)[3]
        else:
            final, cache = self.model.run_with_cache(tokens, names_filter=names, return_type="logits")
            mask = None
        return final, {n: cache[n] for n in names}, mask

    def _patched(
        self,
        tokens: torch.Tensor,
        hook: str,
        patched: torch.Tensor,
        cache: dict[str, torch.Tensor],
        attention_mask: Any,
    ) -> torch.Tensor:
        """The final residual (hooked) or logits (other backends) with `hook`'s activation replaced by `patched`."""
        replace = [(hook, lambda activation, hook: patched)]
        if not self.splice:
            self.stats["full_patched_passes"] += 1
            return self.model.run_with_hooks(tokens, fwd_hooks=replace, return_type="logits")
        self.stats["spliced_passes"] += 1
        layer, site = self.layer[hook], self.site[hook]
        if site in ("resid_post", "resid_pre"):  # the patched residual is the input of block L+1 (or L)
            start, residual, replace = layer + (site == "resid_post"), patched, []
        else:
            start, residual = layer, cache[self.resid_pre[layer]]
        if start >= self.n_layers:
            return residual
        with self.model.hooks(fwd_hooks=replace):
            return self.model(
                residual,
                start_at_layer=start,
                stop_at_layer=self.n_layers,
                tokens=tokens,
                attention_mask=attention_mask,
            )

    def _replaced(self, tokens: torch.Tensor, hooks: list[tuple[str, Any]]) -> torch.Tensor:
        """The final residual (hooked) or logits (other backends) of a full pass with `hooks`."""
        self.stats["replacement_passes"] += 1
        if not self.splice:
            return self.model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits")
        with self.model.hooks(fwd_hooks=hooks):
            return self.model(tokens, stop_at_layer=self.n_layers)

    # ---- metrics ------------------------------------------------------------------------------------------
    def _record(
        self,
        key: str,
        logits: torch.Tensor,
        clean: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        tokens: torch.Tensor,
        keep: torch.Tensor,
        scored: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """CE and KL(clean || this pass) per kept token, with no full-vocabulary log or log-softmax.

        With lse = logsumexp(logits): CE = lse - logit[next token]; and KL(p || q) = sum_v p_v (log p_v - log q_v)
        = sum_v p_v ((c_v - l_v) - (lse_c - lse_l)) for clean logits c, probabilities p = softmax(c), patched
        logits l. Every term is small when the pass is close to the clean one, so float32 keeps SAELens' accuracy
        (its `kl_div(log_softmax(l), softmax(c))` takes a log of p on every call). Returns lse. With `scored`
        (predicted-token positions, shape [batch, seq - 1]) CE and KL are taken there instead of at kept tokens.
        """
        lse = torch.logsumexp(logits, dim=-1)
        target = logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
        ce_at = keep[:, :-1] if scored is None else scored
        self.acc.get("ce", key).add((lse[:, :-1] - target)[ce_at])
        if clean is not None:
            clean_logits, clean_probs, clean_lse = clean
            shift = (clean_lse - lse)[..., None]
            kl = (clean_probs * (clean_logits - logits - shift)).sum(-1)
            self.acc.get("kl", key).add(kl[keep] if scored is None else kl[:, :-1][scored])
        return lse

    @torch.no_grad()
    def add_batch(self, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every SAE's metrics on one batch; returns the clean activations of the suite's hooks (whole batch).

        loss_mask: the predicted tokens of the batch; CE/KL are then scored at positions t whose token t+1 is
        predicted and not ignored."""
        keep = ~torch.isin(tokens, self.ignore.to(tokens.device))
        scored_all = None
        if loss_mask is not None:
            scored_all = loss_mask.to(tokens.device)[:, 1:] & keep[:, :-1]
            self.stats["scored_positions"] += int(scored_all.sum())
        caches: list[dict[str, torch.Tensor]] = []
        for rows in self._chunks(tokens.shape[0], tokens.shape[1]):
            chunk, chunk_keep = tokens[rows], keep[rows]
            scored = None if scored_all is None else scored_all[rows]
            final, cache, attention_mask = self._clean(chunk)
            caches.append({h: cache[h] for h in self.cached_hooks})
            logits = self._logits(final)
            lse = self._record("clean", logits, None, chunk, chunk_keep, scored)
            clean = (logits, torch.softmax(logits, dim=-1), lse)  # once per chunk, shared by every pass's KL
            for hook in sorted(set(self.hooks.values())):
                ablated = self._logits(self._patched(chunk, hook, torch.zeros_like(cache[hook]), cache, attention_mask))
                self._record(f"ablation:{hook}", ablated, clean, chunk, chunk_keep, scored)
                del ablated
                if hook in self.mean_ablations:
                    mean = self.mean_ablations[hook].to(cache[hook].device, cache[hook].dtype).expand_as(cache[hook])
                    ablated = self._logits(self._patched(chunk, hook, mean.clone(), cache, attention_mask))
                    self._record(f"mean_ablation:{hook}", ablated, clean, chunk, chunk_keep, scored)
                    del ablated
                for sae_id, sae in self.saes.items():
                    if self.hooks[sae_id] != hook:
                        continue
                    source = cache[self.reads[sae_id]] if is_transcoder(sae) else None
                    patched = spliced(sae, cache[hook], chunk_keep, source)
                    logits = self._logits(self._patched(chunk, hook, patched, cache, attention_mask))
                    self._record(sae_id, logits, clean, chunk, chunk_keep, scored)
                    del logits
            for name, ids in self.replacement_sets.items():
                logits = self._logits(self._replaced(chunk, splice_hooks([self.saes[i] for i in ids], chunk_keep)))
                self._record(f"replacement:{name}", logits, clean, chunk, chunk_keep, scored)
                zero = [(self.hooks[i], lambda activation, hook: torch.zeros_like(activation)) for i in ids]
                logits = self._logits(self._replaced(chunk, zero))
                self._record(f"replacement_ablation:{name}", logits, clean, chunk, chunk_keep, scored)
                del logits
            del clean
        return {h: torch.cat([c[h] for c in caches]) for h in caches[0]}

    def metrics(self, sae_id: str) -> dict[str, dict[str, float]]:
        """SAELens' `run_evals` groups and names for the downstream metrics of one SAE."""
        hook = self.hooks[sae_id]
        ce_sae, ce_clean, ce_abl = (self.acc.get("ce", k).mean for k in (sae_id, "clean", f"ablation:{hook}"))
        kl_sae, kl_abl = self.acc.get("kl", sae_id).mean, self.acc.get("kl", f"ablation:{hook}").mean
        return {
            "model_behavior_preservation": {
                "kl_div_score": (kl_abl - kl_sae) / kl_abl,
                "kl_div_with_ablation": kl_abl,
                "kl_div_with_sae": kl_sae,
            },
            "model_performance_preservation": {
                "ce_loss_score": (ce_abl - ce_sae) / (ce_abl - ce_clean),
                "ce_loss_with_ablation": ce_abl,
                "ce_loss_with_sae": ce_sae,
                "ce_loss_without_sae": ce_clean,
                "ce_positions": sum(len(v) for v in self.acc.get("ce", "clean").values),
                **self._mean_ablation_metrics(hook, ce_sae, ce_clean, kl_sae),
            },
        }

    def _mean_ablation_metrics(self, hook: str, ce_sae: float, ce_clean: float, kl_sae: float) -> dict[str, float]:
        """CE and KL with the written hook mean-ablated, and the share of that gap the SAE recovers."""
        if hook not in self.mean_ablations:
            return {}
        ce_mean, kl_mean = (self.acc.get(kind, f"mean_ablation:{hook}").mean for kind in ("ce", "kl"))
        return {
            "ce_loss_with_mean_ablation": ce_mean,
            "ce_loss_score_mean_ablation": (ce_mean - ce_sae) / (ce_mean - ce_clean),
            "kl_div_with_mean_ablation": kl_mean,
            "kl_div_score_mean_ablation": (kl_mean - kl_sae) / kl_mean,
        }

    def replacement_metrics(self, name: str) -> dict[str, float]:
        """The replacement model of one set against the clean model (and against all its written hooks zeroed)."""
        ce_clean = self.acc.get("ce", "clean").mean
        ce, ce_abl = (self.acc.get("ce", f"{kind}:{name}").mean for kind in ("replacement", "replacement_ablation"))
        kl, kl_abl = (self.acc.get("kl", f"{kind}:{name}").mean for kind in ("replacement", "replacement_ablation"))
        return {
            "ce_loss_without_replacement": ce_clean,
            "ce_loss_with_replacement": ce,
            "delta_lm_loss": ce - ce_clean,
            "kl_div_with_replacement": kl,
            "ce_loss_with_ablation": ce_abl,
            "ce_loss_score": (ce_abl - ce) / (ce_abl - ce_clean),
            "kl_div_with_ablation": kl_abl,
            "kl_div_score": (kl_abl - kl) / kl_abl,
            "ce_positions": sum(len(v) for v in self.acc.get("ce", "clean").values),
        }
