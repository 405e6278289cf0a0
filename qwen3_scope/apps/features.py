"""Feature activations of texts, the one measurement every application starts from.

`load_model_and_saes(cfg)` loads the model (HookedSAETransformer, no BOS) and the SAEs an `AppConfig`
names; `feature_activations` runs each batch of texts once, caching every hook the SAEs read, and reduces
each SAE's activations over the chosen tokens of each text: `max` (the toxicity OR rule: did a feature fire
anywhere), `last` (the redundancy footprint at the last prompt token) or `mean`. Control tokens
(`<|im_end|>`, `<|im_start|>`, `<think>`, ...) are left out: suites are trained without them.
`token_activations` yields the same activations per token, unreduced (the repetition study compares a token's
occurrences).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppConfig, AppInputError
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.loading import load_model, model_spec
from qwen3_scope.steering.discovery import load_suite
from qwen3_scope.steering.generation import run_and_cache
from qwen3_scope.steering.interventions import resolve_hook, sae_target

REDUCTIONS = ("max", "last", "mean")


def load_model_and_saes(cfg: AppConfig, model: Any = None) -> tuple[Any, dict[str, Any]]:
    """(model, {sae_id: SAE}) for `cfg` (a model already loaded may be passed in)."""
    device = cfg.device or "cpu"  # AppConfig.__post_init__ resolved it; `or` only narrows the type
    model = model if model is not None else load_model(cfg.model, backend="hooked", device=device)
    saes = load_suite(cfg.suite_dir, cfg.release, cfg.sae_ids or None, model_spec(model).key, device=device)
    return model, saes


def saes_by_layer(
    saes: dict[str, Any], site: str | None = None, require: Sequence[int] = ()
) -> dict[int, tuple[str, Any]]:
    """One SAE per layer (of `site`, if given; the first id in sorted order when a layer has several); a clear error
    when a layer of `require` (the layers a user asked for) has none."""
    out: dict[int, tuple[str, Any]] = {}
    for sae_id in sorted(saes):
        layer, s = sae_target(saes[sae_id])
        if (site is None or s == site) and layer not in out:
            out[layer] = (sae_id, saes[sae_id])
    if not out:
        raise AppInputError(
            f"the suite has no SAE{' at site ' + site if site else ''}; train one with "
            f"`qwen3-scope train --sites {site or 'resid_post'}` or choose another site."
        )
    unknown = sorted(set(require) - set(out))
    if unknown:
        raise AppInputError(
            f"the suite has no {site + ' ' if site else ''}SAE at layer(s) {unknown}; it has layers {sorted(out)}. Choose one of "
            "those or train the layer with `qwen3-scope train`."
        )
    return out


def encode_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int = 256) -> list[list[int]]:
    """Token ids (no special tokens added: Qwen3 has no BOS), truncated to `max_tokens`."""
    seqs = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_tokens] for t in texts]
    empty = [i for i, s in enumerate(seqs) if not s]
    if empty:
        raise AppInputError(f"text {empty[0]} is empty after tokenization; remove empty rows from the data.")
    return seqs


@torch.no_grad()
def token_codes(
    model: Any,
    saes: dict[str, Any],
    texts: Sequence[str],
    batch_size: int = 16,
    progress: bool = False,
    kinds: Sequence[bool] = (False,),
) -> Iterator[tuple[int, list[int], list[dict[str, torch.Tensor]]]]:
    """Yield (text index, its non-control token ids, one {sae_id: [n_tokens, d_sae]} per entry of `kinds`) for every
    text: features where the entry is False, the encoder's pre-activations (before TopK/JumpReLU) where it is True.
    Each batch of texts runs once with every hook the SAEs read cached, and each SAE encodes the batch's kept tokens
    in one call."""
    skip = set(special_token_ids(model.tokenizer))
    seqs = encode_texts(model.tokenizer, texts)
    keep = [[i for i, t in enumerate(ids) if t not in skip] or [len(ids) - 1] for ids in seqs]
    hooks = {sae_id: resolve_hook(model, *sae_target(sae)) for sae_id, sae in saes.items()}
    batches = run_and_cache(model, seqs, sorted(set(hooks.values())), batch_size)
    for rows, cache in tqdm(batches, total=-(-len(seqs) // batch_size), desc="features", disable=not progress):
        acts = {hook: a.flatten(2) if a.ndim > 3 else a for hook, a in cache.items()}
        sizes = [len(keep[i]) for i in rows]
        codes: list[dict[str, list[torch.Tensor]]] = [{} for _ in kinds]
        for sae_id, sae in saes.items():
            x = torch.cat([acts[hooks[sae_id]][i - rows.start, keep[i]] for i in rows]).to(sae.dtype)
            for out, pre in zip(codes, kinds):
                out[sae_id] = list((pre_activation(sae, x) if pre else sae.encode(x)).float().split(sizes))
        for n, i in enumerate(rows):
            yield i, [seqs[i][j] for j in keep[i]], [{sae_id: z[n] for sae_id, z in out.items()} for out in codes]


def token_activations(
    model: Any,
    saes: dict[str, Any],
    texts: Sequence[str],
    batch_size: int = 16,
    progress: bool = False,
    pre_activations: bool = False,
) -> Iterator[tuple[int, list[int], dict[str, torch.Tensor]]]:
    """Yield (text index, its non-control token ids, {sae_id: [n_tokens, d_sae]}) for every text (`token_codes`
    with one kind); `pre_activations` gives the encoder's pre-activations (before TopK/JumpReLU) instead."""
    for i, ids, (out,) in token_codes(model, saes, texts, batch_size, progress, (pre_activations,)):
        yield i, ids, out


def _reduce(z: torch.Tensor, how: str) -> torch.Tensor:
    return z[-1] if how == "last" else z.max(0).values if how == "max" else z.mean(0)


def feature_statistics(
    model: Any,
    saes: dict[str, Any],
    texts: Sequence[str],
    wanted: Sequence[tuple[str, bool]],
    batch_size: int = 16,
    progress: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """For each (reduction, pre_activations) of `wanted`, {sae_id: [len(texts), d_sae]}: the SAEs' features (or
    pre-activations) reduced over each text's non-control tokens, all from one pass of the model over `texts`."""
    for how, _ in wanted:
        if how not in REDUCTIONS:
            raise AppInputError(f"unknown reduction {how!r}; choose one of {', '.join(REDUCTIONS)}.")
    out: list[dict[str, list[torch.Tensor]]] = [{sae_id: [] for sae_id in saes} for _ in wanted]
    kinds = [pre for _, pre in wanted]
    for _, _, codes in token_codes(model, saes, texts, batch_size, progress, kinds):
        for rows, (how, _), acts in zip(out, wanted, codes):
            for sae_id, z in acts.items():
                rows[sae_id].append(_reduce(z, how))
    return [{sae_id: torch.stack(rows).cpu() for sae_id, rows in stat.items()} for stat in out]


def feature_activations(
    model: Any,
    saes: dict[str, Any],
    texts: Sequence[str],
    reduce: str = "max",
    batch_size: int = 16,
    progress: bool = False,
    pre_activations: bool = False,
) -> dict[str, torch.Tensor]:
    """{sae_id: [len(texts), d_sae]} activations reduced over each text's non-control tokens (`reduce`);
    `pre_activations` gives the encoder's pre-activations (before TopK/JumpReLU) instead."""
    return feature_statistics(model, saes, texts, [(reduce, pre_activations)], batch_size, progress)[0]


def pre_activation(sae: Any, x: torch.Tensor) -> torch.Tensor:
    """The encoder's pre-activation `(x - b_dec) @ W_enc + b_enc` (SAELens' input normalisation applied), the
    quantity SASFT penalises and JumpReLU thresholds."""
    return sae.process_sae_in(x) @ sae.W_enc + sae.b_enc


def firing_threshold(sae: Any) -> torch.Tensor:
    """Per-feature epsilon of "the feature fires": JumpReLU's threshold, 0 otherwise (TopK, ReLU)."""
    threshold = getattr(sae, "threshold", None)
    if isinstance(threshold, torch.Tensor):
        return threshold.detach().float().cpu()
    return torch.zeros(sae.cfg.d_sae)
