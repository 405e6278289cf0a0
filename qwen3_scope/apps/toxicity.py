"""Zero-shot toxicity classifier from SAE features (Qwen-Scope, arXiv 2605.11887): no training, only a choice.

Why features: a feature that fires on toxic text and stays silent on clean text is already a classifier; the
OR of a few such features ("toxic if any of them fires anywhere in the text") needs no weights, only a ranking.
For every feature f of every layer, delta_f = P(f fires | toxic) - P(f fires | clean) on a discovery split
("fires": max activation over the text's tokens above the feature's epsilon, 0 for TopK, the threshold for
JumpReLU); the top K per layer are the classifier. The layer is the one whose best single feature has the
largest delta ("top1-diff"), K the one with the best discovery F1 (the smaller K on ties), so nothing is tuned on
the test split. What it is measured on:

- `f1_test`: a test split whose toxic vocabulary is disjoint from discovery's (on the organism: `toxic`/`clean`
  against `toxic_discovery`/`clean_discovery`), so a feature that only memorised discovery's insults fails. Those
  toxic comments carry insult words, so one word gives the label away; `--splits hard` uses the organism's
  `toxic_hard`/`clean_hard` (against `toxic_hard_discovery`/`clean_hard_discovery`) instead, whose toxic and clean
  texts hold the same words (adjectives swapped between the person and their work, negation, insults built from
  neutral words, an insult agreed with or quoted and condemned): the label is in intent or target, not in words;
- `f1_crosslingual`: discover on one language's rows only (English), test on another's (French);
- `f1_ratio_10pct`: F1 with features discovered on a stratified 10% of the discovery data over F1 with all of it
  (mean over draws);
- baselines in the same table: a logistic probe on the mean-pooled residual stream (resid_post) of the chosen
  layer, and the difference-of-means direction there (threshold at the midpoint of the class means); control:
  K random features of the chosen layer among those that fire on some discovery text (a dead feature would make
  the control trivially bad); reference: calling every text toxic (F1 0.667 on balanced data, what a rule that
  fires on everything scores). Each row also gives the accuracy; when the test rows have a `kind` column (the hard
  splits do) a second table gives each method's accuracy per kind of comment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from qwen3_scope.apps import AppInputError, AppResult, agg_pyplot, read_data_file
from qwen3_scope.apps.config import ToxicityConfig
from qwen3_scope.apps.features import (
    encode_texts,
    feature_activations,
    firing_threshold,
    load_model_and_saes,
    saes_by_layer,
)
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.organism import load_eval_split
from qwen3_scope.steering.generation import run_and_cache
from qwen3_scope.steering.interventions import resolve_hook

LABELS = {"toxic": 1, "clean": 0, "1": 1, "0": 0, "true": 1, "false": 0}
# --splits -> the organism's (discovery, test) split names, each (toxic, clean)
ORGANISM_SPLITS = {
    "markers": (("toxic_discovery", "clean_discovery"), ("toxic", "clean")),
    "hard": (("toxic_hard_discovery", "clean_hard_discovery"), ("toxic_hard", "clean_hard")),
}


# --- data ----------------------------------------------------------------------------------------------
def load_labelled_file(path: str | Path) -> list[dict]:
    """Rows `{text, label (1 toxic / 0 clean), lang}` of a jsonl/json/csv file; clear errors for bad rows."""
    path = Path(path).expanduser()
    raw = read_data_file(path, "labelled", "rows with `text` and `label` (toxic/clean or 1/0)")
    rows = []
    for i, row in enumerate(raw, 1):
        if not isinstance(row, dict) or "text" not in row or "label" not in row:
            keys = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
            raise AppInputError(
                f"{path} row {i} lacks a `text` or `label` column (has: {keys}); rows need `text` and `label` "
                "(toxic/clean or 1/0)."
            )
        label = LABELS.get(str(row["label"]).strip().lower())
        if label is None:
            raise AppInputError(f"{path} row {i} has label {row['label']!r}; use toxic/clean or 1/0 (also true/false).")
        rows.append(
            {
                "text": str(row["text"]),
                "label": label,
                "lang": str(row.get("lang") or ""),
                "kind": str(row.get("kind") or ""),
            }
        )
    return rows


def _organism_rows(names: tuple[str, str]) -> list[dict]:
    return [
        {"text": r["text"], "label": int(r["label"] == "toxic"), "lang": r.get("lang", ""), "kind": r.get("kind", "")}
        for name in names
        for r in load_eval_split(name)
    ]


def _checked(rows: list[dict], what: str, max_per_class: int | None) -> list[dict]:
    """At most `max_per_class` rows per label (in file order); both labels must be present."""
    by_label = {y: [r for r in rows if r["label"] == y] for y in (1, 0)}
    missing = [name for y, name in ((1, "toxic"), (0, "clean")) if not by_label[y]]
    if missing:
        raise AppInputError(
            f"the {what} data has no {missing[0]} rows (only one class); add rows of both labels (toxic and clean)."
        )
    return [r for y in (1, 0) for r in by_label[y][:max_per_class]]


# --- the classifier ------------------------------------------------------------------------------------
def f1_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """F1 of boolean predictions against boolean labels (toxic = positive); 0 when nothing is predicted or true."""
    tp = (pred & y).sum().item()
    denom = pred.sum().item() + y.sum().item()
    return 2 * tp / denom if denom else 0.0


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Share of predictions equal to the labels."""
    return (pred == y).float().mean().item()


def deltas(fires: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """delta_f = P(f fires | toxic) - P(f fires | clean), from boolean `fires` [texts, features]."""
    return fires[y].float().mean(0) - fires[~y].float().mean(0)


def or_rule(fires: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Toxic when any of `features` fires."""
    return fires[:, features].any(1)


@dataclass
class Choice:
    """Features discovered per (layer, K), the chosen layer (top1-diff) and K (best discovery F1)."""

    features: dict[tuple[int, int], torch.Tensor]
    top1: dict[int, float]
    discovery_f1: dict[tuple[int, int], float]
    layer: int
    k: int


def discover(fires: dict[int, torch.Tensor], y: torch.Tensor, ks: list[int], layer: int | None = None) -> Choice:
    """Rank features by delta on discovery rows; pick the layer (top1-diff unless given) and K."""
    features, top1, dev_f1 = {}, {}, {}
    for lay, f in fires.items():
        d = deltas(f, y)
        order = torch.argsort(d, descending=True, stable=True)
        top1[lay] = d[order[0]].item()
        for k in ks:
            features[lay, k] = order[:k]
            dev_f1[lay, k] = f1_score(or_rule(f, order[:k]), y)
    layer = max(top1, key=lambda lay: (top1[lay], -lay)) if layer is None else layer
    k = max(ks, key=lambda k: (dev_f1[layer, k], -k))
    return Choice(features, top1, dev_f1, layer, k)


def _subset(mask: torch.Tensor, fires: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    return {lay: f[mask] for lay, f in fires.items()}


def stratified_sample(y: torch.Tensor, fraction: float, rng: random.Random) -> torch.Tensor:
    """A boolean mask keeping `fraction` of each label (at least one row of each)."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for label in (True, False):
        idx = torch.nonzero(y == label).flatten().tolist()
        mask[rng.sample(idx, max(1, round(fraction * len(idx))))] = True
    return mask


# --- baselines on the residual stream --------------------------------------------------------------------
@torch.no_grad()
def mean_residual(model: Any, texts: list[str], layer: int, batch_size: int = 16) -> torch.Tensor:
    """[texts, d_model] resid_post of `layer` averaged over each text's non-control tokens (as the features)."""
    skip = set(special_token_ids(model.tokenizer))
    seqs = encode_texts(model.tokenizer, texts)
    hook = resolve_hook(model, layer, "resid_post")
    out = []
    for rows, cache in run_and_cache(model, seqs, [hook], batch_size):
        for i in rows:
            keep = [j for j, t in enumerate(seqs[i]) if t not in skip] or [len(seqs[i]) - 1]
            out.append(cache[hook][i - rows.start, keep].float().mean(0).cpu())
    return torch.stack(out)


def logistic_probe(x: torch.Tensor, y: torch.Tensor, weight_decay: float = 1e-2) -> Any:
    """A standardised L2-regularised logistic regression (L-BFGS); returns `predict(x) -> bool`."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    target = y.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target) + weight_decay * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda x_new: (((x_new - mu) / sd) @ w + b) > 0


def difference_of_means(x: torch.Tensor, y: torch.Tensor) -> Any:
    """Project on mean(toxic) - mean(clean); toxic above the midpoint of the two class means' projections."""
    mu_t, mu_c = x[y].mean(0), x[~y].mean(0)
    d = mu_t - mu_c
    cut = ((mu_t + mu_c) / 2) @ d
    return lambda x_new: x_new @ d > cut


# --- the application ---------------------------------------------------------------------------------------
def _data(cfg: ToxicityConfig) -> tuple[list[dict], list[dict]]:
    if cfg.discovery_file and cfg.test_file:
        disc, test = load_labelled_file(cfg.discovery_file), load_labelled_file(cfg.test_file)
    else:
        disc_names, test_names = ORGANISM_SPLITS[cfg.splits]
        disc, test = _organism_rows(disc_names), _organism_rows(test_names)
    return _checked(disc, "discovery", cfg.max_per_class), _checked(test, "test", cfg.max_per_class)


def _layers(cfg: ToxicityConfig, saes: dict[str, Any]) -> dict[int, tuple[str, Any]]:
    wanted = set(cfg.layers) | ({cfg.layer} if cfg.layer is not None else set())
    by_layer = saes_by_layer(saes, cfg.site, sorted(wanted))
    too_big = [k for k in cfg.ks if any(k > sae.cfg.d_sae for _, sae in by_layer.values())]
    if too_big:
        width = min(sae.cfg.d_sae for _, sae in by_layer.values())
        raise AppInputError(f"K {too_big} exceeds the SAE width {width}; choose K between 1 and {width}.")
    return {lay: by_layer[lay] for lay in sorted(wanted if cfg.layers else by_layer)}


def _crosslingual(
    cfg: ToxicityConfig, disc: list[dict], test: list[dict], fires_d: dict, fires_t: dict, y_d: torch.Tensor
) -> tuple[float, float] | None:
    """(F1, accuracy) of features discovered on source-language rows, on target-language test rows."""
    src = torch.tensor([r["lang"] == cfg.source_lang for r in disc])
    tgt = torch.tensor([r["lang"] == cfg.target_lang for r in test])
    y_t = torch.tensor([bool(r["label"]) for r in test])
    if not (y_d[src].any() and (~y_d[src]).any() and y_t[tgt].any() and (~y_t[tgt]).any()):
        return None  # no `lang` column, or a language lacks one of the labels
    choice = discover(_subset(src, fires_d), y_d[src], cfg.ks, cfg.layer)
    pred = or_rule(fires_t[choice.layer][tgt], choice.features[choice.layer, choice.k])
    return f1_score(pred, y_t[tgt]), accuracy(pred, y_t[tgt])


def run(cfg: ToxicityConfig, model: Any = None, saes: dict[str, Any] | None = None) -> AppResult:
    """Discover, choose, test, and compare with the probe, difference-of-means and random-feature baselines."""
    disc, test = _data(cfg)  # bad files fail before anything loads
    if model is None or saes is None:
        model, saes = load_model_and_saes(cfg, model)
    by_layer = _layers(cfg, saes)
    texts = [r["text"] for r in disc + test]
    acts = feature_activations(model, {i: s for i, s in by_layer.values()}, texts, "max", cfg.batch_size, progress=True)
    fires = {lay: acts[sae_id] > firing_threshold(sae) for lay, (sae_id, sae) in by_layer.items()}
    n = len(disc)
    fires_d = {lay: f[:n] for lay, f in fires.items()}
    fires_t = {lay: f[n:] for lay, f in fires.items()}
    y_d = torch.tensor([bool(r["label"]) for r in disc])
    y_t = torch.tensor([bool(r["label"]) for r in test])

    choice = discover(fires_d, y_d, cfg.ks, cfg.layer)
    layer, k = choice.layer, choice.k
    rows = []
    for (lay, kk), feats in choice.features.items():
        pred = or_rule(fires_t[lay], feats)
        tp = (pred & y_t).sum().item()
        rows.append(
            {
                "layer": lay,
                "k": kk,
                "top1_delta": round(choice.top1[lay], 4),
                "discovery_f1": round(choice.discovery_f1[lay, kk], 4),
                "test_f1": round(f1_score(pred, y_t), 4),
                "test_precision": round(tp / max(pred.sum().item(), 1), 4),
                "test_recall": round(tp / max(y_t.sum().item(), 1), 4),
                "chosen": (lay, kk) == (layer, k),
                "features": " ".join(map(str, feats.tolist())),
            }
        )
    per_layer = pd.DataFrame(rows)
    f1_test = float(per_layer.loc[per_layer.chosen, "test_f1"].iloc[0])

    rng = random.Random(cfg.seed)
    sub_preds = []
    for _ in range(cfg.fraction_draws):
        mask = stratified_sample(y_d, cfg.fraction, rng)
        c = discover(_subset(mask, fires_d), y_d[mask], cfg.ks, cfg.layer)
        sub_preds.append(or_rule(fires_t[c.layer], c.features[c.layer, c.k]))
    f1_sub = sum(f1_score(p, y_t) for p in sub_preds) / len(sub_preds)
    cross = _crosslingual(cfg, disc, test, fires_d, fires_t, y_d)
    f1_cross = cross[0] if cross else None

    alive = torch.nonzero(fires_d[layer].any(0)).flatten().tolist()
    random_preds = [
        or_rule(fires_t[layer], torch.tensor(rng.sample(alive, min(k, len(alive))))) for _ in range(cfg.random_draws)
    ]
    resid = mean_residual(model, texts, layer, cfg.batch_size)
    preds = {
        "features": or_rule(fires_t[layer], choice.features[layer, k]),
        "probe": logistic_probe(resid[:n], y_d)(resid[n:]),
        "dim": difference_of_means(resid[:n], y_d)(resid[n:]),
    }
    probe_f1, dim_f1 = f1_score(preds["probe"], y_t), f1_score(preds["dim"], y_t)
    acc: dict[str, float | None] = {name: accuracy(pred, y_t) for name, pred in preds.items()}
    acc["fraction"] = sum(accuracy(p, y_t) for p in sub_preds) / len(sub_preds)
    acc["crosslingual"] = cross[1] if cross else None
    acc["random"] = sum(accuracy(p, y_t) for p in random_preds) / len(random_preds)
    acc["all_toxic"] = y_t.float().mean().item()

    ratio = f1_sub / f1_test if f1_test else float("nan")
    summary = {
        "f1_test": f1_test,
        "f1_crosslingual": f1_cross,
        "f1_ratio_10pct": ratio if f1_test else None,
        "probe_f1": probe_f1,
        "dim_f1": dim_f1,
        "random_f1": sum(f1_score(p, y_t) for p in random_preds) / len(random_preds),
        "all_toxic_f1": f1_score(torch.ones_like(y_t), y_t),
        "accuracy": acc,
        "data": "files" if cfg.discovery_file else cfg.splits,
        "layer": layer,
        "k": k,
        "site": cfg.site,
        "sae_id": by_layer[layer][0],
        "features": choice.features[layer, k].tolist(),
        "n_discovery": n,
        "n_test": len(test),
    }
    methods = pd.DataFrame(
        [
            (
                "SAE features, OR rule (top1-diff layer, K by discovery F1)",
                f1_test,
                acc["features"],
                f"layer {layer}, K {k}",
            ),
            (
                f"SAE features, {cfg.fraction:.0%} of the discovery data",
                f1_sub,
                acc["fraction"],
                f"mean of {cfg.fraction_draws} draws; ratio to all data {ratio:.3f}",
            ),
            (
                f"SAE features, discover {cfg.source_lang} / test {cfg.target_lang}",
                f1_cross,
                acc["crosslingual"],
                f"{cfg.target_lang} test rows only" if cross else "no rows of both labels in both languages",
            ),
            ("logistic probe, mean-pooled resid_post", probe_f1, acc["probe"], f"layer {layer}, trained on discovery"),
            ("difference of means, mean-pooled resid_post", dim_f1, acc["dim"], f"layer {layer}, midpoint threshold"),
            (
                f"control: {k} random firing features",
                summary["random_f1"],
                acc["random"],
                f"mean of {cfg.random_draws} draws",
            ),
            ("reference: every text called toxic", summary["all_toxic_f1"], acc["all_toxic"], "no classifier"),
        ],
        columns=["method", "f1_test", "accuracy", "note"],
    )
    tables = {"toxicity_methods": methods, "toxicity_per_layer": per_layer}
    if all(r["kind"] for r in test):
        tables["toxicity_by_kind"] = _by_kind(test, preds, y_t)
    return AppResult(
        "toxicity",
        summary,
        tables=tables,
        figures={"toxicity_f1": _plot(per_layer, summary)},
        section=_section(summary, methods, tables.get("toxicity_by_kind")),
    )


def _by_kind(test: list[dict], preds: dict[str, torch.Tensor], y: torch.Tensor) -> Any:
    """Test accuracy of each method per kind of comment (the `kind` column: which contrast carries the label)."""
    kinds = [r["kind"] for r in test]
    rows = []
    for kind in sorted(set(kinds)):
        mask = torch.tensor([kk == kind for kk in kinds])
        rows.append(
            {
                "kind": kind,
                "n": int(mask.sum()),
                **{f"{name}_accuracy": round(accuracy(p[mask], y[mask]), 4) for name, p in preds.items()},
            }
        )
    return pd.DataFrame(rows)


def _plot(per_layer: Any, summary: dict) -> Any:
    plt = agg_pyplot()

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    for lay, group in per_layer.groupby("layer"):
        style = "-o" if lay == summary["layer"] else ":o"
        ax.plot(group["k"], group["test_f1"], style, label=f"layer {lay}", lw=2 if lay == summary["layer"] else 1)
    for key, color in (
        ("probe_f1", "k"),
        ("dim_f1", "tab:gray"),
        ("random_f1", "tab:red"),
        ("all_toxic_f1", "tab:olive"),
    ):
        if summary[key] is not None:
            ax.axhline(summary[key], color=color, ls="--", lw=1, label=key.removesuffix("_f1"))
    ax.set(xscale="log", xlabel="K (top features per layer)", ylabel="test F1", ylim=(0, 1.02))
    ax.set_xticks(sorted(per_layer["k"].unique()), labels=map(str, sorted(per_layer["k"].unique())))
    ax.legend(fontsize=7, ncol=2)
    top1 = per_layer.drop_duplicates("layer")
    bx.bar(
        top1["layer"],
        top1["top1_delta"],
        color=["tab:blue" if c else "tab:gray" for c in top1["layer"] == summary["layer"]],
    )
    bx.set(xlabel="layer", ylabel="best single feature's delta", title="layer choice: top1-diff")
    fig.suptitle(f"Zero-shot toxicity classifier ({summary['site']} SAEs)")
    fig.tight_layout()
    return fig


DATA = {
    "markers": "the organism's toxic/clean comments (toxic ones carry insult words)",
    "hard": "the organism's toxic_hard/clean_hard comments (both labels share their words)",
    "files": "the given files",
}


def _section(summary: dict, methods: Any, by_kind: Any = None) -> str:
    kinds = (
        "\n\nTest accuracy per kind of comment:\n\n" + by_kind.to_markdown(index=False, floatfmt=".3f")
        if by_kind is not None
        else ""
    )
    return (
        f"OR rule over the top {summary['k']} features of layer {summary['layer']} ({summary['sae_id']}, chosen by "
        f"top1-diff on {summary['n_discovery']} discovery texts): F1 {summary['f1_test']:.3f} on "
        f"{summary['n_test']} test texts with a vocabulary disjoint from discovery's, from {DATA[summary['data']]}; "
        f"calling every text toxic scores F1 {summary['all_toxic_f1']:.3f}.\n\n"
        + methods.to_markdown(index=False, floatfmt=".3f")
        + kinds
        + "\n\n![toxicity F1](toxicity_f1.png)"
    )
