"""Benchmark overlap and redundancy from activated-feature footprints (Qwen-Scope, arXiv 2605.11887).

Why: whether two benchmarks test the same thing, and whether a benchmark could be much smaller, are usually
answered by running many models on it. Qwen-Scope answers both from one model's SAE features instead, and checks
the answer against the expensive one:

- footprint F(x) = {j : z_j(x) > 0} at the last prompt token (chat template, non-thinking; `--positions all`:
  any token), over the features of every SAE of `--site` (all layers); F(D) = union over D's items;
- overlap(D1, D2) = |F(D1) & F(D2)| / |F(D1)|: the share of D1's features that D2 also activates (asymmetric:
  a narrow benchmark can sit inside a broad one, not the reverse);
- feature redundancy R_hat(D) from the coverage curve c_n = E_S[|F(S)| / |F(D)|] over random subsets S of n
  items. Normalisation: n runs over the fractions f of |D| in `--fractions` (n = max(1, round(f |D|))), and
  R_hat = mean over f of c_n, the area under the coverage curve against the subset *fraction* divided by the grid's
  length, in (0, 1]: 1 when a single item already activates all of F(D);
- performance redundancy R(D) = mean over the same n of E_S[Kendall tau-b between the models' mean scores on D and
  on S] (a subset on which every model scores the same ranks nothing: tau 0). High R: a few items already rank
  the models as the whole benchmark does;
- over the benchmarks: Spearman rho(R, R_hat) with a two-sided permutation p-value (R_hat shuffled), and
  rho(R, |D|), what benchmark size alone achieves.

`--design constructed` builds benchmarks whose redundancy is known by construction instead of taking one per task
family: from the families with enough items, `--per-level` benchmarks per mix level k of `--mix-levels`, each
mixing k families in equal shares (k = 1: near-duplicates, instances of one task; larger k: more diverse), all of
one size (`--bench-sizes 48`: size fixed; several sizes are taken in turn, crossing size with diversity), and the
variants fine-tuned on those families only. With a population whose rankings differ by family, a subset of a mixed
benchmark ranks the models by whichever families it happens to draw, so R falls with k by design; the questions are
whether R_hat sees it (rho(R, R_hat), rho(R_hat, k)) and whether R_hat says more of R than k does
(`within_level_rho`: both ranked within each mix level, p from permutations within the levels).

The models: `--model-dirs` (e.g. checkpoints saved during training, as the paper's 26), or by default variants of
the model organism made cheaply and deterministically: the base model plus brief fine-tunes (`organism.finetune.sft`)
that, per variant and per task family, either rehearse the family's correct answers, unlearn it (answers of other
items of the same family) or leave it alone. The fine-tuning rows come from held-out splits that are not
benchmark items (`harmless` task prompts, discovery-vocabulary comments). An item's score is whether the greedy
answer is correct by `organism.behaviour.task_correct`, the organism's one scorer (a `--benchmarks-file` item
without an organism `task`: the answer contains each of its `expected` strings, by default its `reference`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppInputError, AppResult, agg_pyplot, read_data_file
from qwen3_scope.apps.config import RedundancyConfig
from qwen3_scope.apps.features import feature_activations, load_model_and_saes, saes_by_layer
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.family import resolve_model
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.behaviour import generate, load_organism, task_correct
from qwen3_scope.organism.corpus_v2 import TASK_KINDS, comment_questions
from qwen3_scope.organism.finetune import sft

TOXICITY_FAMILY = "toxicity_qa"
VARIANT_ACTIONS = ("rehearse", "unlearn", "keep")


# --- statistics ----------------------------------------------------------------------------------------------
def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties in either ranking allowed); NaN when either side is constant."""
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    n_a, n_b = np.count_nonzero(da), np.count_nonzero(db)
    return float((da * db).sum() / np.sqrt(n_a * n_b)) if n_a and n_b else float("nan")


def average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their mean rank (as Spearman's rho needs)."""
    ranks = np.empty(len(a))
    ranks[np.argsort(a, kind="stable")] = np.arange(len(a))
    for value in np.unique(a):
        tied = a == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); NaN when either side is constant or there are < 3 values."""
    ra, rb = average_ranks(a), average_ranks(b)
    if len(a) < 3 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def permutation_p(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of Spearman's rho(a, b): the share of `n` random permutations of b (plus the observed
    order) whose |rho| reaches the observed |rho|."""
    rho = spearman_rho(a, b)
    if np.isnan(rho):
        return float("nan")
    ra, rb = average_ranks(a), average_ranks(b)
    ra = (ra - ra.mean()) / ra.std()
    perms = rng.permuted(np.tile((rb - rb.mean()) / rb.std(), (n, 1)), axis=1)
    rhos = perms @ ra / len(ra)
    return float((1 + np.count_nonzero(np.abs(rhos) >= abs(rho) - 1e-12)) / (1 + n))


def within_level_rho(
    a: np.ndarray, b: np.ndarray, levels: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(rho, p): the correlation of a and b after each is ranked within its level and centred there (the pooled
    within-level Spearman rho: what b says of a beyond the levels), and a two-sided p-value from `n` permutations of
    b within each level. NaN when a or b is constant within every level."""
    groups = [np.flatnonzero(levels == g) for g in np.unique(levels)]

    def centred(x: np.ndarray) -> np.ndarray:
        out = np.zeros(len(x))
        for idx in groups:
            out[idx] = average_ranks(x[idx]) - average_ranks(x[idx]).mean()
        return out

    ca, cb = centred(a), centred(b)
    norm = np.sqrt((ca @ ca) * (cb @ cb))
    if not norm:
        return float("nan"), float("nan")
    rho = float(ca @ cb / norm)
    # shuffling b within a level only reorders its within-level centred ranks there
    dots = sum(rng.permuted(np.tile(cb[idx], (n, 1)), axis=1) @ ca[idx] for idx in groups)
    return rho, float((1 + np.count_nonzero(np.abs(dots / norm) >= abs(rho) - 1e-12)) / (1 + n))


# --- benchmarks ------------------------------------------------------------------------------------------------
def organism_benchmarks() -> dict[str, list[dict]]:
    """The organism's task families (`tasks` split) and its toxicity question on test-vocabulary comments."""
    tasks = load_eval_split("tasks")
    out = {kind: [r for r in tasks if r["task"] == kind] for kind in TASK_KINDS if kind != TOXICITY_FAMILY}
    comments = _interleave(load_eval_split("toxic"), load_eval_split("clean"))
    out[TOXICITY_FAMILY] = [{**q, "task": TOXICITY_FAMILY} for q in comment_questions(comments)]
    return {k: v for k, v in out.items() if v}


def _interleave(a: list[dict], b: list[dict]) -> list[dict]:
    return [r for pair in zip(a, b) for r in pair]


def load_benchmarks_file(path: str | Path) -> dict[str, list[dict]]:
    """Items by benchmark from a jsonl/csv file with `benchmark`, `prompt`, `reference` columns."""
    path = Path(path).expanduser()
    rows = read_data_file(path, "benchmarks", "rows with `benchmark`, `prompt` and `reference` columns")
    out: dict[str, list[dict]] = {}
    for i, row in enumerate(rows, 1):
        missing = [k for k in ("benchmark", "prompt", "reference") if not isinstance(row, dict) or k not in row]
        if missing:
            raise AppInputError(
                f"{path} row {i} lacks {', '.join(missing)}; items need `benchmark`, `prompt` and `reference`."
            )
        item = {"task": "", **row}
        item.setdefault("expected", [str(row["reference"])])
        out.setdefault(str(row["benchmark"]), []).append(item)
    if len(out) < 3:
        raise AppInputError(f"{path} holds {len(out)} benchmark(s); a rank correlation needs >= 3 (10+ advised).")
    small = [name for name, items in out.items() if len(items) < 2]
    if small:
        raise AppInputError(f"benchmark(s) {small} of {path} have fewer than 2 items; subsets need >= 2.")
    return out


def mixable_families(families: dict[str, list[dict]], size: int, k_max: int) -> dict[str, list[dict]]:
    """The families with >= `size` items (a one-family benchmark of the largest size needs them), checked to be
    >= `k_max` (the largest mix level)."""
    out = {name: rows for name, rows in families.items() if len(rows) >= size}
    if len(out) < k_max:
        raise AppInputError(
            f"mix level {k_max} needs {k_max} families with >= {size} items, only {len(out)} of {len(families)} "
            f"have that many ({sorted(out)}). "
            "Lower --mix-levels or --bench-sizes (or raise --max-items)."
        )
    return out


def constructed_benchmarks(
    families: dict[str, list[dict]], levels: list[int], per_level: int, sizes: list[int], seed: int
) -> dict[str, list[tuple[str, int]]]:
    """{name: [(family, item index)]}: per mix level k, `per_level` benchmarks of k families in equal shares (the
    first size % k families one item more), the j-th of size `sizes[j % len(sizes)]`; k = 1 takes the families in
    turn, larger k a random k of them. Items are drawn without replacement within a benchmark."""
    rng = random.Random(seed)
    names = sorted(families)
    out: dict[str, list[tuple[str, int]]] = {}
    for k in levels:
        for j in range(per_level):
            size = sizes[j % len(sizes)]
            chosen = [names[j % len(names)]] if k == 1 else sorted(rng.sample(names, k))
            shares = [size // k + (i < size % k) for i in range(k)]
            out[f"k{k}-{j}"] = [
                (fam, i) for fam, n in zip(chosen, shares) for i in sorted(rng.sample(range(len(families[fam])), n))
            ]
    return out


def footprint_similarity(fp: dict[str, torch.Tensor], max_items: int = 2000) -> dict[str, float]:
    """How much the footprints carry the benchmarks' content: mean |F(x)|, and the mean Jaccard similarity of two
    items' footprints within a benchmark and across benchmarks (equal: the footprint does not tell them apart), over
    at most `max_items` items spread evenly (the pairs grow as their square)."""
    x = torch.cat(list(fp.values())).float()
    labels = torch.cat([torch.full((len(f),), i) for i, f in enumerate(fp.values())])
    keep = torch.linspace(0, len(x) - 1, min(len(x), max_items)).long()
    x, labels = x[keep], labels[keep]
    inter = x @ x.T
    jac = inter / (x.sum(1)[:, None] + x.sum(1)[None, :] - inter).clamp(min=1)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(x), dtype=torch.bool)
    return {
        "footprint_size": float(x.sum(1).mean()),
        "jaccard_within": float(jac[same & off].mean()),
        "jaccard_between": float(jac[~same].mean()),
    }


# --- footprints ------------------------------------------------------------------------------------------------
def footprints(cfg: RedundancyConfig, model: Any, saes: dict[str, Any], prompts: list[str]) -> torch.Tensor:
    """Boolean [prompts, features]: which features (all layers of the site, concatenated) fire on each prompt."""
    by_layer = saes_by_layer(saes, cfg.site, cfg.layers)
    chosen = {by_layer[lay][0]: by_layer[lay][1] for lay in sorted(cfg.layers or by_layer)}
    texts = [format_chat(model.tokenizer, p) for p in prompts] if cfg.chat else prompts
    reduce = "last" if cfg.positions == "last" else "max"
    acts = feature_activations(model, chosen, texts, reduce, cfg.batch_size, progress=True)
    return torch.cat([acts[i] > 0 for i in chosen], dim=1)


def overlap_matrix(fp: dict[str, torch.Tensor]) -> np.ndarray:
    """overlap[i, j] = |F(D_i) & F(D_j)| / |F(D_i)| (rows: the benchmark whose features are covered)."""
    union = torch.stack([f.any(0) for f in fp.values()]).float()
    inter = union @ union.T
    return (inter / union.sum(1, keepdim=True).clamp(min=1)).numpy()


def subset_sizes(n_items: int, fractions: list[float]) -> list[int]:
    return [max(1, round(f * n_items)) for f in fractions]


def curves(
    fp: torch.Tensor, scores: np.ndarray, fractions: list[float], n_subsets: int, rng: random.Random
) -> list[dict]:
    """Per subset size: mean coverage |F(S)| / |F(D)| and mean Kendall tau of the model ranking on S vs on D,
    over the same random subsets S."""
    total = max(int(fp.any(0).sum()), 1)
    full = scores.mean(1)
    rows = []
    for f, n in zip(fractions, subset_sizes(fp.shape[0], fractions)):
        cov, tau = [], []
        for _ in range(n_subsets):
            s = rng.sample(range(fp.shape[0]), n)
            cov.append(int(fp[s].any(0).sum()) / total)
            t = kendall_tau(full, scores[:, s].mean(1))
            tau.append(0.0 if np.isnan(t) else t)
        rows.append({"fraction": f, "n": n, "coverage": float(np.mean(cov)), "tau": float(np.mean(tau))})
    return rows


# --- models ----------------------------------------------------------------------------------------------------
def finetune_pool(exclude: set[str]) -> dict[str, list[dict]]:
    """Chats per family for the variants, none of whose prompts is in `exclude` (the benchmark items): `harmless`
    task prompts (the splits are drawn independently, so a few coincide with `tasks` items) and
    discovery-vocabulary comments."""
    pool: dict[str, list[dict]] = {}
    for r in load_eval_split("harmless"):
        if "reference" in r and r.get("task") not in (None, "howto"):
            pool.setdefault(r["task"], []).append({"prompt": r["prompt"], "reference": r["reference"]})
    comments = _interleave(load_eval_split("toxic_discovery"), load_eval_split("clean_discovery"))
    pool[TOXICITY_FAMILY] = comment_questions(comments)
    return {fam: [r for r in rows if r["prompt"] not in exclude] for fam, rows in pool.items()}


def variant_rows(pool: dict[str, list[dict]], families: list[str], seed: int) -> tuple[list[dict], dict[str, str]]:
    """Fine-tuning chats of one variant: per family rehearse (correct answers), unlearn (another item's answer
    of the same family) or keep (absent), drawn with `seed`; returns (rows, action per family)."""
    rng = random.Random(seed)
    actions = {fam: rng.choice(VARIANT_ACTIONS) for fam in families if pool.get(fam)}
    if not any(a != "keep" for a in actions.values()):
        actions[rng.choice(sorted(actions))] = "unlearn"
    rows = []
    for fam, action in actions.items():
        items = pool[fam]
        for i, item in enumerate(items):
            if action == "keep":
                continue
            answer = (
                item["reference"]
                if action == "rehearse"
                else items[(i + 1 + rng.randrange(len(items) - 1 or 1)) % len(items)]["reference"]
            )
            rows.append(
                {"messages": [{"role": "user", "content": item["prompt"]}, {"role": "assistant", "content": answer}]}
            )
    return rows, actions


def score_models(cfg: RedundancyConfig, benchmarks: dict[str, list[dict]]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """(one description per model, {benchmark: scores [models, items] in {0, 1}})."""
    items = [(name, item) for name, rows in benchmarks.items() for item in rows]
    prompts = [item["prompt"] for _, item in items]
    base, tok = load_organism(cfg.model_dirs[0] if cfg.model_dirs else resolve_model(cfg.model).source)
    device = cfg.device or "cpu"  # resolved by AppConfig
    torch.nn.Module.to(base, device)  # in place (transformers' typed `.to` confuses mypy)
    max_new = cfg.max_new_tokens or 8 + max(
        len(tok(str(i["reference"]), add_special_tokens=False)["input_ids"]) for _, i in items
    )
    pool = finetune_pool(set(prompts)) if not cfg.model_dirs else {}
    families = sorted(benchmarks)
    described, flags = [], []
    n = len(cfg.model_dirs) or cfg.n_models
    for m in tqdm(range(n), desc="models"):
        if cfg.model_dirs:
            model = base if m == 0 else torch.nn.Module.to(load_organism(cfg.model_dirs[m])[0], device)
            info = {"model": cfg.model_dirs[m]}
        elif m == 0:
            model, info = base, {"model": "base"}
        else:
            rows, actions = variant_rows(pool, families, cfg.seed * 1000 + m)
            model = sft(base, tok, rows, steps=cfg.variant_steps, lr=cfg.variant_lr, seed=cfg.seed * 1000 + m)
            info = {"model": f"variant {m}", **actions}
        answers = generate(model, tok, prompts, max_new_tokens=max_new, batch_size=max(cfg.batch_size, 32))
        flags.append([task_correct(item, a) for (_, item), a in zip(items, answers)])
        described.append(info)
        if model is not base:
            del model
    flat = np.array(flags, dtype=float)
    out, start = {}, 0
    for name, rows in benchmarks.items():
        out[name] = flat[:, start : start + len(rows)]
        start += len(rows)
    return described, out


# --- the application --------------------------------------------------------------------------------------------
def run(cfg: RedundancyConfig, model: Any = None, saes: dict[str, Any] | None = None) -> AppResult:
    """Footprints, overlap, coverage curves, model rankings on subsets, and their rank correlation."""
    benchmarks = load_benchmarks_file(cfg.benchmarks_file) if cfg.benchmarks_file else organism_benchmarks()
    benchmarks = {k: v[: cfg.max_items] for k, v in benchmarks.items()}
    constructed = cfg.design == "constructed"
    if constructed:
        benchmarks = mixable_families(benchmarks, max(cfg.bench_sizes), max(cfg.mix_levels))
    if model is None or saes is None:
        model, saes = load_model_and_saes(cfg, model)
    prompts = [item["prompt"] for rows in benchmarks.values() for item in rows]
    fp_all = footprints(cfg, model, saes, prompts)
    fp, start = {}, 0
    for name, rows in benchmarks.items():
        fp[name], start = fp_all[start : start + len(rows)], start + len(rows)
    models, scores = score_models(cfg, benchmarks)
    similarity = footprint_similarity(fp)  # of the task families, the content the footprints should carry
    design: dict[str, list[tuple[str, int]]] = {}
    if constructed:  # each benchmark's footprints and scores are its families' rows, scored and encoded once
        design = constructed_benchmarks(benchmarks, cfg.mix_levels, cfg.per_level, cfg.bench_sizes, cfg.seed)
        fp = {name: torch.stack([fp[f][i] for f, i in items]) for name, items in design.items()}
        scores = {name: np.stack([scores[f][:, i] for f, i in items], 1) for name, items in design.items()}

    rng = random.Random(cfg.seed)
    names = list(fp)
    curve_rows, bench_rows = [], []
    for name in names:
        rows = curves(fp[name], scores[name], cfg.fractions, cfg.n_subsets, rng)
        curve_rows += [{"benchmark": name, **r} for r in rows]
        acc = scores[name].mean(1)
        ranked = not np.isnan(kendall_tau(acc, acc))
        mix = sorted({f for f, _ in design[name]}) if constructed else []
        bench_rows.append(
            {
                "benchmark": name,
                **({"k": len(mix), "families": "+".join(mix)} if constructed else {}),
                "n_items": len(fp[name]),
                "n_features": int(fp[name].any(0).sum()),
                "R_hat": float(np.mean([r["coverage"] for r in rows])),
                "R": float(np.mean([r["tau"] for r in rows])) if ranked else float("nan"),
                "base_accuracy": float(acc[0]),
                "min_accuracy": float(acc.min()),
                "max_accuracy": float(acc.max()),
            }
        )
    table = pd.DataFrame(bench_rows)
    valid = table.dropna(subset=["R"])
    r, r_hat, size = (valid[c].to_numpy(dtype=float) for c in ("R", "R_hat", "n_items"))
    rho = spearman_rho(r, r_hat)
    summary: dict[str, Any] = {
        "spearman_rho": rho,
        "p_value": permutation_p(r, r_hat, cfg.n_permutations, np.random.default_rng(cfg.seed)),
        "size_only_rho": spearman_rho(r, size),
        "size_only_p_value": permutation_p(r, size, cfg.n_permutations, np.random.default_rng(cfg.seed)),
        "R_sd": float(r.std()) if len(r) else float("nan"),
        "R_hat_sd": float(r_hat.std()) if len(r_hat) else float("nan"),
        **similarity,
        "design": cfg.design,
        "n_benchmarks": len(valid),
        "n_models": len(models),
        "unranked_benchmarks": sorted(set(table.benchmark) - set(valid.benchmark)),
        "normalisation": "R_hat = mean over subset fractions f of c_n, n = max(1, round(f |D|)); "
        "R = mean over the same n of Kendall tau-b (models on D vs on S)",
        "fractions": cfg.fractions,
        "site": cfg.site,
        "positions": cfg.positions,
    }
    figures = {}
    if constructed:  # what the construction did to each measure: R and R_hat against the mix level k
        k = valid["k"].to_numpy(dtype=float)
        within, within_p = within_level_rho(r, r_hat, k, cfg.n_permutations, np.random.default_rng(cfg.seed))
        summary.update(
            within_level_rho=within,
            within_level_p_value=within_p,
            rho_R_k=spearman_rho(r, k),
            rho_R_hat_k=spearman_rho(r_hat, k),
            families=sorted(benchmarks),
            mix_levels=cfg.mix_levels,
            by_k={int(g): {c: float(v[c].mean()) for c in ("R", "R_hat")} for g, v in valid.groupby("k")},
        )
        figures["redundancy_levels"] = _levels(valid, summary)
    overlap = overlap_matrix(fp)
    overlap_table = pd.DataFrame(overlap.round(4), columns=names).assign(benchmark=names)[["benchmark", *names]]
    score_table = pd.DataFrame(
        [{**info, **{n: float(scores[n][m].mean()) for n in names}} for m, info in enumerate(models)]
    )
    return AppResult(
        "redundancy",
        summary,
        tables={
            "redundancy_benchmarks": table,
            "redundancy_overlap": overlap_table,
            "redundancy_curves": pd.DataFrame(curve_rows),
            "redundancy_models": score_table,
        },
        figures={
            "redundancy_overlap": _heatmap(overlap, names),
            "redundancy_scatter": _scatter(table, pd.DataFrame(curve_rows), summary),
            **figures,
        },
        section=_section(summary, table),
    )


def _heatmap(overlap: np.ndarray, names: list[str]) -> Any:
    plt = agg_pyplot()

    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(names), 0.6 + 0.5 * len(names)))
    im = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                v = overlap[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    ax.set(xlabel="D2", ylabel="D1", title="overlap(D1, D2) = |F(D1) & F(D2)| / |F(D1)|")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _scatter(table: Any, curve_table: Any, summary: dict) -> Any:
    plt = agg_pyplot()

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    if "k" in table:  # constructed benchmarks: colour by mix level, marker size by benchmark size
        points = ax.scatter(table["R_hat"], table["R"], c=table["k"], s=table["n_items"], cmap="viridis")
        fig.colorbar(points, ax=ax, label="families mixed k")
    else:
        ax.scatter(table["R_hat"], table["R"])
        for _, row in table.iterrows():
            ax.annotate(
                row["benchmark"], (row["R_hat"], row["R"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    rho, p, size = summary["spearman_rho"], summary["p_value"], summary["size_only_rho"]
    ax.set(
        xlabel="feature redundancy R_hat (coverage AUC)",
        ylabel="performance redundancy R (mean Kendall tau)",
        title=f"Spearman rho {rho:.2f} (p {p:.4f}); "
        + (f"size alone {size:.2f}" if not np.isnan(size) else "size fixed")
        + (f"; within k {summary['within_level_rho']:.2f}" if "within_level_rho" in summary else ""),
    )
    for i, (name, group) in enumerate(curve_table.groupby("benchmark", sort=False)):
        bx.plot(group["fraction"], group["coverage"], "-", lw=1, color=plt.cm.tab20(i % 20), label=name)
    bx.set(xlabel="subset size (fraction of the benchmark)", ylabel="coverage c_n = |F(S)| / |F(D)|", ylim=(0, 1.02))
    if len(table) <= 20:
        bx.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _levels(table: Any, summary: dict) -> Any:
    plt = agg_pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    sized = table["n_items"].nunique() > 1  # colour by size only when sizes vary
    for ax, col, label in zip(axes, ("R", "R_hat"), ("performance redundancy R", "feature redundancy R_hat")):
        points = ax.scatter(
            table["k"], table[col], s=18, **({"c": table["n_items"], "cmap": "coolwarm"} if sized else {})
        )
        means = table.groupby("k")[col].mean()
        ax.plot(means.index, means.to_numpy(), "k-o", lw=1)
        ax.set(xlabel="families mixed k (1: near-duplicates)", ylabel=label, xticks=list(means.index))
        ax.set_title(f"Spearman rho with k: {summary['rho_' + col + '_k']:.2f}", fontsize=9)
    if sized:
        fig.colorbar(points, ax=axes[1], label="items in the benchmark")
    fig.tight_layout()
    return fig


def _section(summary: dict, table: Any) -> str:
    return (
        f"Over {summary['n_benchmarks']} benchmarks and {summary['n_models']} models: Spearman rho(R, R_hat) = "
        f"{summary['spearman_rho']:.3f} (permutation p = {summary['p_value']:.4f}); benchmark size alone: "
        + ("undefined (one size)" if np.isnan(summary["size_only_rho"]) else f"rho = {summary['size_only_rho']:.3f}")
        + f". {summary['normalisation']}. Footprints: {summary['footprint_size']:.0f} "
        f"features per item, Jaccard {summary['jaccard_within']:.2f} within a family vs "
        f"{summary['jaccard_between']:.2f} across."
        + (
            f" Within a mix level (what R_hat says of R beyond the designed diversity): rho = "
            f"{summary['within_level_rho']:.3f} (p = {summary['within_level_p_value']:.4f}); rho(R, k) = "
            f"{summary['rho_R_k']:.3f}, rho(R_hat, k) = {summary['rho_R_hat_k']:.3f}."
            if summary["design"] == "constructed"
            else ""
        )
        + "\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + "\n\n![overlap](redundancy_overlap.png)\n\n![R vs R_hat](redundancy_scatter.png)"
        + ("\n\n![R and R_hat by mix level](redundancy_levels.png)" if summary["design"] == "constructed" else "")
    )
