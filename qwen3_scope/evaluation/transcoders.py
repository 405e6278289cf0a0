"""Transcoders evaluated as replacement MLPs: per transcoder and for the whole replacement model.

Why not SAELens' `run_evals`: it measures an SAE's reconstruction of the activation it reads
(`decode(encode(x))` against `x`), while a transcoder reads one hook (the MLP input, on the hooked backend
`blocks.L.ln2.hook_normalized`) and predicts another (the MLP output, `blocks.L.hook_mlp_out`). Here, on the same
held-out batches and positions as the SAE suite evaluation (`SuiteReconstruction`, one clean pass per batch):

- per transcoder, against the clean activation of the hook it writes, over the non-special tokens: FVU / explained
  variance (SAELens' `ExplainedVarianceCalculator`), MSE (squared error summed over the model dimension, averaged
  over tokens), cosine, L2 ratio, L0 and L1 of its latents, dead and dense latent fractions (as for SAEs);
- per transcoder, its output spliced in place of the hook it writes: CE, KL(clean || spliced), delta LM loss, and CE
  recovered against the zero ablation of that hook (SAELens' `ce_loss_score`, as for SAEs) and against its mean
  ablation (the held-out mean activation at every token: `ce_loss_score_mean_ablation`);
- per transcoder *set* (the transcoders whose ids differ only in their `layer_<n>` part, one per written hook): the
  replacement model, every one of its MLPs replaced at once, each transcoder reading the activations of the patched
  model, as attribution graphs use it (circuit-tracer's replacement model without error terms): its CE against the
  clean CE, its KL to the clean model, and the CE recovered against zero-ablating all those MLPs together.

CE, KL and delta LM loss are taken where the SAE suite takes them: with `predicted_tokens_only`, at the positions
whose next token a deployed model predicts (`qwen3_scope.model.loss_mask`); special tokens keep their activation.
Layers and sites come from each transcoder's `cfg.metadata` (`hook_name`, `hook_name_out`), never from its id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from sae_lens.evals import ExplainedVarianceCalculator

from qwen3_scope.core.devices import DTYPES
from qwen3_scope.core.errors import ConfigError, ModelMismatchError
from qwen3_scope.evaluation.config import SuiteEvalConfig
from qwen3_scope.evaluation.held_out import HeldOutTokens
from qwen3_scope.evaluation.reconstruction import (
    SuiteReconstruction,
    is_transcoder,
    reconstruct,
    splice_hooks,
    written_hook,
)
from qwen3_scope.model.loading import model_spec
from qwen3_scope.model.sites import UnknownHookError, parse_hook_name, site_d_in
from qwen3_scope.naming import TRANSCODER

__all__ = [
    "TRANSCODER_SITE",
    "TranscoderEvaluation",
    "TranscoderStats",
    "check_transcoder",
    "evaluate_transcoders",
    "hook_layer",
    "is_transcoder",
    "replacement_hooks",
    "replacement_sets",
    "splice_hooks",
    "written_hook",
]

logger = logging.getLogger(__name__)

TRANSCODER_SITE = TRANSCODER  # the `site` of a transcoder's row in the suite table (plots, per-site means), as in ids
_LAYER_PART = re.compile(r"(?<![^/])layer_\d+(?![^/])")


class TranscoderMismatchError(ModelMismatchError):
    """A transcoder whose hooks or widths do not fit the model it is evaluated on."""


def hook_layer(model: Any, hook: str, backend: str) -> int:
    """The layer of a hook: from `model.sites` when it is a site hook, else the block whose modules hold the hook
    point (any TransformerLens hook: `blocks.L.ln2.hook_normalized`, our transcoders' input on the hooked backend,
    or `blocks.L.mlp.hook_in`, circuit-tracer's), so imported transcoders of other hook pairs are evaluated too."""
    try:
        return parse_hook_name(hook, backend)[0]
    except UnknownHookError:
        point = model.hook_dict.get(hook) if hasattr(model, "hook_dict") else None
        for layer, block in enumerate(getattr(model, "blocks", ())):
            if point is not None and any(module is point for module in block.modules()):
                return layer
        raise


def check_transcoder(sae_id: str, sae: Any, model: Any, backend: str) -> tuple[int, int]:
    """(layer read, layer written) of a transcoder, after checking that both hooks exist in the model, that its
    input comes before its output, and that its widths are those of its hooks."""
    meta, spec = sae.cfg.metadata, model_spec(model)
    reads, writes = meta.hook_name, written_hook(sae)
    missing = [h for h in (reads, writes) if h not in model.hook_dict]
    if missing:
        raise UnknownHookError(
            f"transcoder {sae_id!r} uses {missing}, which the {backend} model {spec.name} does not have "
            f"({spec.n_layers} layers); evaluate it with the model and backend it was trained on."
        )
    try:
        layer_out, site_out = parse_hook_name(writes, backend)
        layer_in = hook_layer(model, reads, backend)
    except UnknownHookError as err:
        raise UnknownHookError(f"transcoder {sae_id!r}: {err}") from err
    if layer_in > layer_out:
        raise ConfigError(
            f"transcoder {sae_id!r} reads {reads} (layer {layer_in}) but writes {writes} (layer {layer_out}): its input "
            "must come before its output."
        )
    d_out = site_d_in(spec, site_out)
    if getattr(sae.cfg, "d_out", d_out) != d_out or sae.cfg.d_in != spec.d_model:
        raise TranscoderMismatchError(
            f"transcoder {sae_id!r} maps {sae.cfg.d_in} -> {getattr(sae.cfg, 'd_out', '?')} dimensions, but "
            f"{reads} -> {writes} of {spec.name} is {spec.d_model} -> {d_out}; it belongs to another model."
        )
    return layer_in, layer_out


def replacement_sets(transcoders: dict[str, Any]) -> dict[str, list[str]]:
    """Transcoders that form one replacement model each: ids equal up to their `layer_<n>` part (`org/transcoder/
    layer_2` and `.../layer_3` are the set `org/transcoder/layer_*`; a sweep's `/l0_<n>` suffix keeps sets apart).
    Ids without a layer part form one set. A set with two transcoders writing the same hook is left out (its
    members are still evaluated one by one); the order within a set is the forward-pass order of the hooks written."""
    sets: dict[str, list[str]] = {}
    for sae_id in transcoders:
        name = _LAYER_PART.sub("layer_*", sae_id) if _LAYER_PART.search(sae_id) else "transcoders"
        sets.setdefault(name, []).append(sae_id)
    out = {}
    for name, ids in sets.items():
        written = [written_hook(transcoders[i]) for i in ids]
        if len(set(written)) == len(written):
            out[name] = ids
        else:
            logger.warning("no replacement model for %s: several of its transcoders write the same hook", name)
    return out


def replacement_hooks(transcoders: Sequence[Any], keep: torch.Tensor | None = None) -> list[tuple[str, Any]]:
    """Forward hooks that turn a model into the replacement model of `transcoders` (one per written hook):
    `with model.hooks(fwd_hooks=replacement_hooks(tcs)): logits = model(tokens)`. See `splice_hooks`."""
    written = [written_hook(t) for t in transcoders]
    if len(set(written)) != len(written):
        raise ConfigError(f"a replacement model has one transcoder per hook; these write {written}.")
    return splice_hooks(transcoders, keep)


@dataclass
class TranscoderStats:
    """Streaming fidelity and sparsity of one transcoder against the clean activation it predicts, on kept tokens
    (SAELens' definitions from `get_sparsity_and_variance_metrics`, with the target in place of the input)."""

    d_sae: int
    ev: ExplainedVarianceCalculator = field(default_factory=ExplainedVarianceCalculator)
    values: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    fired: torch.Tensor | None = None
    tokens: int = 0

    @torch.no_grad()
    def add(self, sae: Any, x_in: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> None:
        """One batch: input and target activations (batch, pos, d), keep (batch, pos)."""
        keep = keep.to(x_in.device)
        x, y = x_in[keep], target[keep].float()
        acts = sae.encode(x.to(sae.device, sae.dtype))
        if acts.is_sparse:
            acts = acts.to_dense()
        out = reconstruct(sae, x).float()
        self.ev.add_batch(sae_output=out, hidden_acts=y)
        norm_in, norm_out = y.norm(dim=-1), out.norm(dim=-1)
        per_token = {
            "mse": (y - out).pow(2).sum(-1),
            "cossim": (y * out).sum(-1) / (norm_in * norm_out),
            "l2_norm_in": norm_in,
            "l2_norm_out": norm_out,
            "l2_ratio": norm_out / torch.where(norm_in.abs() < 1e-4, torch.ones_like(norm_in), norm_in),
            "l0": (acts != 0).sum(-1).float(),
            "l1": acts.abs().sum(-1).float(),
        }
        for name, value in per_token.items():
            self.values.setdefault(name, []).append(value.cpu())
        fired = (acts != 0).sum(0).float().cpu()
        self.fired = fired if self.fired is None else self.fired + fired
        self.tokens += int(keep.sum())

    def metrics(self) -> dict[str, dict[str, float]]:
        """SAELens' `run_evals` groups and names."""
        mean = {name: torch.cat(v).mean().item() for name, v in self.values.items()}
        return {
            "reconstruction_quality": {
                "explained_variance": self.ev.compute(),
                "mse": mean["mse"],
                "cossim": mean["cossim"],
            },
            "shrinkage": {k: mean[k] for k in ("l2_norm_in", "l2_norm_out", "l2_ratio")},
            "sparsity": {"l0": mean["l0"], "l1": mean["l1"]},
        }

    def feature_metrics(self) -> dict[str, list[float]]:
        fired = self.fired if self.fired is not None else torch.zeros(self.d_sae)
        return {"feature_density": (fired / max(self.tokens, 1)).tolist()}


@dataclass
class TranscoderEvaluation:
    """Per transcoder: `run_evals`-style metric groups and feature metrics; per set: the replacement model."""

    metrics: dict[str, dict[str, dict[str, float]]]
    feature_metrics: dict[str, dict[str, list[float]]]
    replacement: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)
    ce_scope: str = ""  # where CE/KL were taken: "predicted tokens" or "all non-special tokens"


@torch.no_grad()
def hook_means(
    model: Any, batches: Sequence[torch.Tensor], hooks: Sequence[str], keep: Sequence[torch.Tensor], backend: str
) -> dict[str, torch.Tensor]:
    """Mean clean activation of each hook over the kept tokens of the batches (what a mean ablation puts in)."""
    layers = [parse_hook_name(h, backend)[0] for h in hooks]
    stop = {"stop_at_layer": max(layers) + 1} if backend == "hooked" else {}
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch, kept in zip(batches, keep):
        _, cache = model.run_with_cache(batch, names_filter=list(hooks), **stop)
        for h in hooks:
            total = cache[h][kept.to(cache[h].device)].double().sum(0)
            sums[h] = sums[h] + total if h in sums else total
        count += int(kept.sum())
    return {h: (s / max(count, 1)).float() for h, s in sums.items()}


def evaluate_transcoders(
    model: Any,
    transcoders: dict[str, Any],
    tokens: HeldOutTokens,
    config: SuiteEvalConfig,
    backend: str,
    ignore_tokens: Sequence[int] = (),
) -> TranscoderEvaluation:
    """Every transcoder (id -> SAELens transcoder) on the first `config.n_batches` batches of `tokens`, and the
    replacement model of each set (`replacement_sets`); see the module docstring for the metrics."""
    not_transcoders = [i for i, t in transcoders.items() if not is_transcoder(t)]
    if not_transcoders:
        raise ConfigError(f"{not_transcoders} read and write the same hook: evaluate SAEs with evaluate_suite.")
    layers = {i: check_transcoder(i, t, model, backend) for i, t in transcoders.items()}
    batches = tokens.batches(config.n_batches)
    masks = tokens.batch_masks(config.n_batches) if config.predicted_tokens_only else None
    scope = "predicted tokens" if masks is not None else "all non-special tokens"
    ignore = torch.tensor(sorted(set(ignore_tokens)), dtype=torch.long)
    keeps = [~torch.isin(b, ignore.to(b.device)) for b in batches]
    written = sorted({written_hook(t) for t in transcoders.values()})
    sets = {name: sorted(ids, key=lambda i: layers[i][1]) for name, ids in replacement_sets(transcoders).items()}
    recon = SuiteReconstruction(
        model,
        transcoders,
        backend,
        ignore_tokens=ignore_tokens,
        logits_dtype=DTYPES[config.logits_dtype],
        max_logits_gb=config.max_logits_gb,
        mean_ablations=hook_means(model, batches, written, keeps, backend),
        replacement_sets=sets,
    )
    stats = {i: TranscoderStats(t.cfg.d_sae) for i, t in transcoders.items()}
    for i, batch in enumerate(batches):
        cache = recon.add_batch(batch, None if masks is None else masks[i])
        for sae_id, sae in transcoders.items():
            stats[sae_id].add(sae, cache[sae.cfg.metadata.hook_name], cache[written_hook(sae)], keeps[i])
    metrics = {}
    for sae_id in transcoders:
        groups = stats[sae_id].metrics()
        for group, values in recon.metrics(sae_id).items():
            groups.setdefault(group, {}).update(values)
        metrics[sae_id] = groups
    n_layers = model_spec(model).n_layers
    rows = []
    for name, ids in sets.items():
        covered = sorted({layers[i][1] for i in ids})
        rows.append(
            {
                "set": name,
                "n_transcoders": len(ids),
                "layers": ",".join(map(str, covered)),
                "model_layers": n_layers,
                "all_layers": covered == list(range(n_layers)),
                **recon.replacement_metrics(name),
                "ce_scope": scope,
            }
        )
    return TranscoderEvaluation(
        metrics,
        {i: s.feature_metrics() for i, s in stats.items()},
        pd.DataFrame(rows),
        dict(recon.stats),
        scope,
    )
