"""Feature dashboard statistics for every SAE of a suite, from one pass of the model over the tokens.

Approach (memory bounded at any width; never a dense tokens x d_sae matrix for the dataset):
1. One pass: each forward batch caches every hook of the suite; each SAE encodes its hook (a transient
   batch x d_sae block) and keeps only its *nonzero* activations (position, feature, value): O(tokens x L0).
   The same batch adds the sparse-dense product feats^T @ acts (d_sae x d_in) for the neuron correlations.
2. Everything else is computed from the sparse nonzeros, vectorised: counts, maxima, 50-bin histograms over
   (0, max], the interval counts, the top contexts (per feature, the sequences with the highest activation,
   one record per sequence at its argmax) and the interval samples: every nonzero gets a key from a seeded
   generator and each (feature, interval) keeps the n entries with the smallest keys (bottom-k sampling =
   a uniform sample without replacement, deterministic for a seed; bins are fixed because the max is
   known after step 1). Feature-feature co-activation sums come from a sparse product of the nonzeros,
   so they cost O(tokens x L0^2), not d_sae^2.
Special tokens (Qwen3's control tokens, as training excludes them) get activation 0 and are not counted.

Definitions: frac_nonzero = nonzero counted positions / counted positions; bin_contains = share of the
feature's nonzero activations that fall in the interval; logit effects = (W_dec[f] * ln_final.w) @ W_U
(attn_z decoders are first mapped through W_O); neuron alignment = the 3 largest |W_dec[f, i]| with their
share of ||W_dec[f]||_1; correlated neurons/features = Pearson over counted positions (`*_l1` holds the
cosine similarity, as SAEDashboard writes it). Activations are the SAE's own (no decoder-norm folding).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qwen3_scope.core.errors import ConfigError, ModelMismatchError

logger = logging.getLogger(__name__)

ROUND = 3  # decimals, as SAEDashboard's converter rounds


@dataclass
class SAEActivations:
    """What one pass keeps for one SAE: its nonzero activations and the neuron-correlation sums."""

    d_sae: int
    rows: np.ndarray  # int64 flat positions (sequence * context + position)
    cols: np.ndarray  # int64 features
    vals: np.ndarray  # float32 activations (> 0)
    n_counted: int  # positions that count (not special tokens)
    sum_fn: torch.Tensor  # (d_sae, d_in) sum over counted positions of feat * act
    sum_n: torch.Tensor  # (d_in,)
    sum_nn: torch.Tensor  # (d_in,)


def forward_batch_size(cfg_batch_prompts: int, context: int, max_width: int, budget_bytes: int = 256 * 2**20) -> int:
    """Prompts per forward pass so that one batch x d_sae float block stays under `budget_bytes`."""
    return max(1, min(cfg_batch_prompts, budget_bytes // max(1, context * max_width * 4)))


@torch.no_grad()
def collect_activations(
    model: Any,
    saes: dict[str, Any],
    tokens: torch.Tensor,
    special_ids: Sequence[int],
    batch_prompts: int,
    progress: bool = True,
) -> dict[str, SAEActivations]:
    """One forward pass over `tokens` (n_prompts, context) for all SAEs (keyed by id; each reads its
    `cfg.metadata.hook_name`). Returns each SAE's sparse activations and correlation sums."""
    n, t = tokens.shape
    hooks = sorted({sae.cfg.metadata.hook_name for sae in saes.values()})
    widths = max(sae.cfg.d_sae for sae in saes.values())
    step = forward_batch_size(batch_prompts, t, widths)
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    device = next(model.parameters()).device
    parts: dict[str, list[tuple[torch.Tensor, ...]]] = {k: [] for k in saes}
    sums = {
        k: [
            torch.zeros(s.cfg.d_sae, s.cfg.d_in, dtype=torch.float64),
            torch.zeros(s.cfg.d_in, dtype=torch.float64),
            torch.zeros(s.cfg.d_in, dtype=torch.float64),
        ]
        for k, s in saes.items()
    }
    counted = int((~torch.isin(tokens, special)).sum())
    bar = tqdm(range(0, n, step), desc="model pass + SAE encode", disable=not progress, leave=False)
    for start in bar:
        batch = tokens[start : start + step]
        keep = ~torch.isin(batch, special).reshape(-1)
        _, cache = model.run_with_cache(batch.to(device), names_filter=hooks)
        for key, sae in saes.items():
            acts = cache[sae.cfg.metadata.hook_name]
            acts = acts.reshape(-1, sae.cfg.d_in).to(sae.W_enc.dtype)
            feats = sae.encode(acts).float().cpu()
            acts = acts.float().cpu()
            feats[~keep] = 0
            acts[~keep] = 0
            idx = feats.nonzero()
            vals = feats[idx[:, 0], idx[:, 1]]
            parts[key].append((idx[:, 0] + start * t, idx[:, 1], vals))
            sparse = torch.sparse_coo_tensor(idx.t(), vals, feats.shape, check_invariants=False).coalesce()
            sums[key][0] += torch.sparse.mm(sparse.t(), acts).double()
            sums[key][1] += acts.sum(0).double()
            sums[key][2] += (acts.double() ** 2).sum(0)
            del feats
    out = {}
    for key, sae in saes.items():
        rows, cols, vals = (
            (torch.cat([p[i] for p in parts[key]]) for i in range(3)) if parts[key] else (torch.zeros(0),) * 3
        )
        out[key] = SAEActivations(
            sae.cfg.d_sae, rows.long().numpy(), cols.long().numpy(), vals.float().numpy(), counted, *sums[key]
        )
    return out


def _round(values: Any) -> list[float]:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().numpy()
    return np.round(np.asarray(values, dtype=np.float64).reshape(-1), ROUND).tolist()


def residual_directions(model: Any, sae: Any, layer: int, site: str) -> torch.Tensor:
    """Each feature's decoder direction in the residual stream (d_sae, d_model)."""
    w = sae.W_dec.detach().float().cpu()
    d_model = model.cfg.d_model
    if site == "attn_z":
        w_o = model.blocks[layer].attn.W_O.detach().float().cpu()  # (heads, d_head, d_model)
        return torch.einsum("fhd,hdm->fm", w.view(w.shape[0], w_o.shape[0], w_o.shape[1]), w_o)
    if w.shape[1] != d_model:
        raise ModelMismatchError(
            f"cannot map a {site} decoder of width {w.shape[1]} to the residual stream (d_model {d_model})."
        )
    return w


def unembedding(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(final norm weight (d_model,), W_U (d_model, vocab)) of a HookedTransformer-style model."""
    try:
        return model.ln_final.w.detach().float().cpu(), model.W_U.detach().float().cpu()
    except AttributeError as err:
        raise ConfigError(
            f"the model ({type(model).__name__}) exposes no ln_final.w / W_U; export with the hooked backend."
        ) from err


def _histogram(
    values: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise equal-width histograms of `values` (rows, n) over [lo, hi] per row -> (centres, counts)."""
    width = (hi - lo).clamp_min(1e-12) / n_bins
    idx = ((values - lo[:, None]) / width[:, None]).floor().clamp(0, n_bins - 1).long()
    counts = torch.zeros(values.shape[0], n_bins, dtype=torch.long).scatter_add_(1, idx, torch.ones_like(idx))
    centres = lo[:, None] + width[:, None] * (torch.arange(n_bins) + 0.5)
    return centres, counts


def logit_tables(
    model: Any, sae: Any, layer: int, site: str, features: np.ndarray, n_logits: int, n_bins: int, chunk: int = 256
) -> dict[int, dict[str, Any]]:
    """Top/bottom logit effects (token ids and values) and the 50-bin histogram of each feature's effects."""
    norm_w, w_u = unembedding(model)
    dirs = residual_directions(model, sae, layer, site) * norm_w
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(features), chunk):
        idx = torch.as_tensor(features[start : start + chunk], dtype=torch.long)
        effects = dirs[idx] @ w_u
        top = effects.topk(min(n_logits, effects.shape[1]), dim=1)
        bottom = effects.topk(min(n_logits, effects.shape[1]), dim=1, largest=False)
        centres, counts = _histogram(effects, effects.min(1).values, effects.max(1).values, n_bins)
        top_v, bottom_v, centres_r = (np.round(x.double().numpy(), ROUND) for x in (top.values, bottom.values, centres))
        top_i, bottom_i, counts_l = top.indices.tolist(), bottom.indices.tolist(), counts.tolist()
        for row, f in enumerate(idx.tolist()):
            out[f] = {
                "pos_ids": top_i[row],
                "pos_values": top_v[row].tolist(),
                "neg_ids": bottom_i[row],
                "neg_values": bottom_v[row].tolist(),
                "logits_hist_data_bar_values": centres_r[row].tolist(),
                "logits_hist_data_bar_heights": counts_l[row],
            }
    return out


def _sample_keys(rows: np.ndarray, cols: np.ndarray, d_sae: int, seed: int) -> np.ndarray:
    """A uniform [0, 1) key per (position, feature) from a seeded integer hash (splitmix64): the sample of a
    feature does not depend on which other features are computed in the same run (a resumed run agrees)."""
    with np.errstate(over="ignore"):
        x = (
            rows.astype(np.uint64) * np.uint64(d_sae)
            + cols.astype(np.uint64)
            + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _top_rows(scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if exclude is not None:
        scores = scores.clone()
        scores[torch.arange(scores.shape[0]), exclude] = -float("inf")
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    return top.values, top.indices


def feature_dashboards(
    acts: SAEActivations,
    sae: Any,
    model: Any,
    layer: int,
    site: str,
    features: np.ndarray,
    n_prompts: int,
    context: int,
    cfg: Any,
) -> dict[int, dict[str, Any]]:
    """Per feature (of `features`), the SAEDashboard fields except strings: records refer to (sequence, position).

    Returns {feature: {...}} with `records` = list of dicts (bin_min, bin_max, bin_contains, seq, pos, value).
    """
    d_sae, n_counted = acts.d_sae, max(acts.n_counted, 1)
    rows, cols, vals = acts.rows, acts.cols, acts.vals
    want = np.zeros(d_sae, dtype=bool)
    want[features] = True
    sel = want[cols]
    rows, cols, vals = rows[sel], cols[sel], vals[sel]
    nnz = np.bincount(cols, minlength=d_sae)
    vmax = np.zeros(d_sae, dtype=np.float32)
    np.maximum.at(vmax, cols, vals)
    fmax = vmax[cols]

    # activation histogram (n_bins over (0, max]) and intervals (n_intervals over (0, max])
    def bin_of(n: int) -> np.ndarray:
        return np.clip(np.ceil(vals / np.maximum(fmax, 1e-30) * n).astype(np.int64) - 1, 0, n - 1)

    hist = np.bincount(cols * cfg.n_bins + bin_of(cfg.n_bins), minlength=d_sae * cfg.n_bins).reshape(d_sae, cfg.n_bins)
    ibin = bin_of(cfg.n_intervals)
    group = cols * cfg.n_intervals + ibin
    icount = np.bincount(group, minlength=d_sae * cfg.n_intervals).reshape(d_sae, cfg.n_intervals)

    # interval samples: bottom-k of seeded random keys per (feature, interval)
    keys = _sample_keys(rows, cols, d_sae, cfg.seed)
    order = np.lexsort((keys, group))
    g_sorted = group[order]
    first = np.searchsorted(g_sorted, g_sorted, side="left")
    rank = np.arange(len(order)) - first
    sampled = order[rank < cfg.n_per_interval]

    # top contexts: one record per sequence (its argmax position), the n_top sequences with the highest max
    seq = rows // context
    order = np.lexsort((-vals, seq, cols))
    c_s, s_s = cols[order], seq[order]
    head = np.ones(len(order), dtype=bool)
    head[1:] = (c_s[1:] != c_s[:-1]) | (s_s[1:] != s_s[:-1])
    best = order[head]  # per (feature, sequence): the entry with the highest activation
    best = best[np.lexsort((rows[best], -vals[best], cols[best]))]
    c_b = cols[best]
    rank = np.arange(len(best)) - np.searchsorted(c_b, c_b, side="left")
    top = best[rank < cfg.n_top]

    # neuron alignment (decoder weights) and correlations
    w_dec = sae.W_dec.detach().float().cpu()
    feats_t = torch.as_tensor(features, dtype=torch.long)
    w = w_dec[feats_t]
    align_v, align_i = _top_rows(w.abs(), cfg.n_rows)
    align_signed = torch.gather(w, 1, align_i)
    l1 = w.abs().sum(1, keepdim=True).clamp_min(1e-12)
    # moments of every feature (not only the selected ones: correlations pair them with all others)
    sum_f = np.bincount(acts.cols, weights=acts.vals.astype(np.float64), minlength=d_sae)
    sum_ff = np.bincount(acts.cols, weights=acts.vals.astype(np.float64) ** 2, minlength=d_sae)
    mu_f, mu_n = sum_f / n_counted, acts.sum_n / n_counted
    sd_f = np.sqrt(np.maximum(sum_ff / n_counted - mu_f**2, 0))
    sd_n = (acts.sum_nn / n_counted - mu_n**2).clamp_min(0).sqrt()
    s_fn = acts.sum_fn[feats_t]
    mf = torch.as_tensor(mu_f[features]), torch.as_tensor(sd_f[features])
    pearson_n = (s_fn / n_counted - mf[0][:, None] * mu_n[None]) / (mf[1][:, None] * sd_n[None]).clamp_min(1e-12)
    cos_n = s_fn / (torch.as_tensor(np.sqrt(sum_ff[features]))[:, None] * acts.sum_nn.sqrt()[None]).clamp_min(1e-12)
    cn_v, cn_i = _top_rows(pearson_n, cfg.n_rows)
    cn_cos = torch.gather(cos_n, 1, cn_i)
    corr_f = _feature_correlations(acts, features, mu_f, sd_f, sum_ff, n_counted, cfg.n_rows)

    logits = logit_tables(model, sae, layer, site, features, cfg.n_logits, cfg.n_bins)
    records: dict[int, list[dict[str, Any]]] = {int(f): [] for f in features}
    for e in top:  # already in descending order per feature
        f = int(cols[e])
        records[f].append(
            {
                "bin_min": -1,
                "bin_max": round(float(vmax[f]), ROUND),
                "bin_contains": -1,
                "seq": int(seq[e]),
                "pos": int(rows[e] % context),
                "value": float(vals[e]),
            }
        )
    width = vmax / cfg.n_intervals
    interval_records: dict[int, list[dict[str, Any]]] = {int(f): [] for f in features}
    for e in sampled[np.lexsort((-vals[sampled], -ibin[sampled], cols[sampled]))]:  # highest interval first
        f, b = int(cols[e]), int(ibin[e])
        interval_records[f].append(
            {
                "bin_min": round(float(width[f] * b), ROUND),
                "bin_max": round(float(width[f] * (b + 1)), ROUND),
                "bin_contains": round(float(icount[f, b] / max(nnz[f], 1)), 6),
                "seq": int(seq[e]),
                "pos": int(rows[e] % context),
                "value": float(vals[e]),
            }
        )
    # each record's sequence: the feature's nonzero activations there, as arrays (sequence, position, value) of the
    # nonzeros in the (feature, sequence) pairs its records refer to; `order` sorts the nonzeros by that pair
    n_seq = n_prompts
    pair_key = cols[order] * n_seq + seq[order]
    wanted = np.unique(np.concatenate([cols[top], cols[sampled]]) * n_seq + np.concatenate([seq[top], seq[sampled]]))
    entries = order[np.isin(pair_key, wanted)]  # still sorted by (feature, sequence)
    bounds = np.searchsorted(cols[entries], np.asarray(features, dtype=np.int64), side="left")
    ends = np.searchsorted(cols[entries], np.asarray(features, dtype=np.int64), side="right")
    e_seq, e_pos, e_val = seq[entries], rows[entries] % context, vals[entries]
    context_values = {int(f): (e_seq[a:b], e_pos[a:b], e_val[a:b]) for f, a, b in zip(features, bounds, ends)}
    out = {}
    for row, f in enumerate(int(x) for x in features):
        alive = nnz[f] > 0
        centres = (np.arange(cfg.n_bins) + 0.5) * vmax[f] / cfg.n_bins
        cf_i, cf_p, cf_c = corr_f.get(f, ([], [], []))
        out[f] = {
            "feature_index": f,
            "neuron_alignment_indices": align_i[row].tolist(),
            "neuron_alignment_values": _round(align_signed[row]),
            "neuron_alignment_l1": _round(align_v[row] / l1[row]),
            "correlated_neurons_indices": cn_i[row].tolist() if alive else [],
            "correlated_neurons_pearson": _round(cn_v[row]) if alive else [],
            "correlated_neurons_l1": _round(cn_cos[row]) if alive else [],
            "correlated_features_indices": cf_i,
            "correlated_features_pearson": cf_p,
            "correlated_features_l1": cf_c,
            **{k: v for k, v in logits[f].items()},
            "frac_nonzero": float(nnz[f] / n_counted),
            "freq_hist_data_bar_values": _round(centres) if alive else [],
            "freq_hist_data_bar_heights": hist[f].tolist() if alive else [],
            "vector": np.round(w_dec[f].double().numpy(), ROUND).tolist(),
            "max_value": float(vmax[f]),
            "records": records[f] + interval_records[f],
            "context_values": context_values[f],
        }
    return out


def _feature_correlations(
    acts: SAEActivations,
    features: np.ndarray,
    mu: np.ndarray,
    sd: np.ndarray,
    sum_ff: np.ndarray,
    n_counted: int,
    k: int,
    chunk_rows: int = 1 << 16,
) -> dict[int, tuple[list[int], list[float], list[float]]]:
    """Top-k Pearson-correlated other features (with cosine) from the sparse co-activation sums.

    Only pairs that fire together somewhere are candidates: a pair that never co-fires has Pearson
    -mu_i mu_j / (sd_i sd_j) <= 0, so it is never among the positively correlated ones (fewer than k rows
    are listed when fewer than k features ever co-fire)."""
    d_sae = acts.d_sae
    if len(acts.vals) == 0:
        return {}
    n_pos = int(acts.rows.max()) + 1
    want = np.zeros(d_sae, dtype=bool)
    want[features] = True
    acc = None
    # chunks of positions bound the sparse product's intermediate size
    order = np.argsort(acts.rows, kind="stable")
    rows, cols, vals = acts.rows[order], acts.cols[order], acts.vals[order]
    bounds = np.searchsorted(rows, np.arange(0, n_pos + chunk_rows, chunk_rows))
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        r, c, v = rows[lo:hi], cols[lo:hi], vals[lo:hi]
        a = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([r - r.min(), c])),
            torch.as_tensor(v, dtype=torch.float64),
            (int(r.max() - r.min()) + 1, d_sae),
            check_invariants=False,
        )
        left = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([c[want[c]], r[want[c]] - r.min()])),
            torch.as_tensor(v[want[c]], dtype=torch.float64),
            (d_sae, int(r.max() - r.min()) + 1),
            check_invariants=False,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            prod = torch.sparse.mm(left, a).coalesce()
        acc = prod if acc is None else (acc + prod).coalesce()
    if acc is None or acc._nnz() == 0:
        return {}
    (i, j), s = acc.indices().numpy(), acc.values().numpy()
    keep = i != j
    i, j, s = i[keep], j[keep], s[keep]
    pearson = (s / n_counted - mu[i] * mu[j]) / np.maximum(sd[i] * sd[j], 1e-12)
    cosine = s / np.maximum(np.sqrt(sum_ff[i] * sum_ff[j]), 1e-12)
    order = np.lexsort((j, -pearson, i))
    i, j, pearson, cosine = i[order], j[order], pearson[order], cosine[order]
    rank = np.arange(len(i)) - np.searchsorted(i, i, side="left")
    out: dict[int, tuple[list[int], list[float], list[float]]] = {}
    for a, b, p, c in zip(i[rank < k], j[rank < k], pearson[rank < k], cosine[rank < k]):
        entry = out.setdefault(int(a), ([], [], []))
        entry[0].append(int(b))
        entry[1].append(round(float(p), ROUND))
        entry[2].append(round(float(c), ROUND))
    return out
