"""Repetition features (Qwen-Scope, arXiv 2605.11887): features that track repeated text, and their causal effect.

Why: repetition is a failure mode of generation with its own features. A feature that fires more on a token's later
occurrences than on its first one tracks "this was said before"; if adding it (h' = h + alpha * d) makes generations
repeat themselves, the feature is causal for repetition and a handle to measure or suppress it.

Discovery, on repetitive texts (the organism's `repetition` split by default, or `--text-file` rows with `text`):
for every token id that occurs at least twice in a text, its first occurrence is a "first" position and every other
one a "later" position. For every feature of every SAE at `--site`, score = P(fires | later) - P(fires | first)
("fires": activation > 0 after JumpReLU/TopK); the `n_features` best features with a larger mean activation on later
positions are the repetition features.

Causal tests, both against `n_random` random live features of the same SAEs (fired on some discovery token):

- necessity: each feature zero-ablated (SAE error term kept) while the model reads the discovery texts; the
  next-token loss on later occurrences (copying) against the loss on first occurrences (which copying cannot help);
- sufficiency: greedy generations from held-out chat prompts (the organism's `harmless` split, or `--prompts-file`),
steering each feature (unit decoder direction times alpha times the mean norm of the site at that layer, at every
position), the control features at the same alphas. Measured: the
repeat ratio of a generation = share of its token bigrams that already occurred earlier in it (0 with fewer than two
bigrams), averaged over prompts, and the generations' length in tokens. Large alphas break any model into loops
(on the organism a random feature at 4x the mean norm already does), so the claim is a comparison at equal alpha.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppConfig, AppInputError, AppResult, app


@dataclass
class RepetitionConfig(AppConfig):
    """Options of `qwen3-scope apps repetition`."""

    site: str = field(default="resid_post", metadata={"help": "site of the SAEs searched for repetition features"})
    layers: list[int] = field(
        default_factory=list, metadata={"help": "layers searched (default: every layer the suite has at --site)"}
    )
    n_features: int = field(default=3, metadata={"help": "repetition features steered (best discovery scores)"})
    n_random: int = field(default=10, metadata={"help": "random live features steered as the control"})
    alphas: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0],
        metadata={"help": "steering strengths, in units of the site's mean activation norm at the feature's layer"},
    )
    report_alpha: float = field(default=0.5, metadata={"help": "the alpha (one of --alphas) summary.json reports"})
    text_file: str | None = field(
        default=None,
        metadata={"help": "repetitive texts to discover on (jsonl/json/csv rows with `text`; default: the organism's)"},
    )
    prompts_file: str | None = field(
        default=None,
        metadata={"help": "prompts to generate from (rows with `prompt`; default: the organism's held-out harmless)"},
    )
    n_texts: int = field(default=100, metadata={"help": "discovery texts used (0: all)"})
    n_prompts: int = field(default=32, metadata={"help": "prompts generated from at every steering point"})
    max_new_tokens: int = field(default=40, metadata={"help": "greedy tokens generated per prompt"})

    def __post_init__(self) -> None:
        super().__post_init__()
        from qwen3_scope.sites import check_site

        try:
            check_site(self.site)
        except ValueError as err:
            raise AppInputError(str(err)) from err
        for name in ("n_features", "n_random", "n_prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise AppInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_texts < 0:
            raise AppInputError(f"n_texts must be >= 0 (0: every text), got {self.n_texts}.")
        if not self.alphas or any(not 0 < a <= 100 for a in self.alphas):
            raise AppInputError(f"alphas must be values in (0, 100], got {self.alphas}; try --alphas 0.25 0.5 1.")
        self.alphas = sorted(set(self.alphas))
        if self.report_alpha not in self.alphas:
            raise AppInputError(f"report_alpha {self.report_alpha} is not one of the alphas {self.alphas}; add it.")
        for what, path in (("text", self.text_file), ("prompts", self.prompts_file)):
            if path and not Path(path).expanduser().is_file():
                raise AppInputError(f"{what} file {path} does not exist; give a jsonl/json/csv file path.")
        if self.model != "organism" and not (self.text_file and self.prompts_file):
            raise AppInputError(
                f"model {self.model!r} has no bundled repetition data; pass --text-file (rows with `text`, "
                "repetitive text) and --prompts-file (rows with `prompt`)."
            )


def repeat_ratio(ids: list[int]) -> float:
    """Share of the token bigrams of a generation that already occurred earlier in it (0 with fewer than two)."""
    bigrams = list(zip(ids, ids[1:]))
    if len(bigrams) < 2:
        return 0.0
    return 1 - len(set(bigrams)) / len(bigrams)


def occurrence_positions(ids: list[int]) -> tuple[list[int], list[int]]:
    """(first, later) positions of the token ids that occur at least twice in `ids`."""
    from collections import Counter

    count = Counter(ids)
    seen: set[int] = set()
    first: list[int] = []
    later: list[int] = []
    for i, t in enumerate(ids):
        if count[t] < 2:
            continue
        (later if t in seen else first).append(i)
        seen.add(t)
    return first, later


def _texts(cfg: RepetitionConfig) -> list[str]:
    if cfg.text_file:
        from qwen3_scope.apps.tuning import read_jsonl

        texts = [str(r["text"]) for r in read_jsonl(cfg.text_file, "text", "repetitive text")]
    else:
        from qwen3_scope.organism import load_eval_split

        texts = [r["text"] for r in load_eval_split("repetition")]
    return texts[: cfg.n_texts] if cfg.n_texts else texts


def _prompts(cfg: RepetitionConfig) -> list[str]:
    from qwen3_scope.steering.prompts import PromptFileError, load_prompt_file, organism_split

    if cfg.prompts_file:
        try:
            prompts = load_prompt_file(cfg.prompts_file)
        except PromptFileError as err:
            raise AppInputError(str(err)) from err
    else:
        prompts = [r["prompt"] for r in organism_split("harmless") if r.get("task") == "howto"]
    return prompts[: cfg.n_prompts]


def discover(model: Any, saes: dict[str, Any], texts: list[str], batch_size: int) -> pd.DataFrame:
    """One row per feature: firing rate and mean activation on first and later occurrences, and the score."""
    from qwen3_scope.apps.features import token_activations
    from qwen3_scope.steering.interventions import sae_target

    sums = {
        sae_id: {k: torch.zeros(sae.cfg.d_sae) for k in ("fire_first", "fire_later", "act_first", "act_later")}
        for sae_id, sae in saes.items()
    }
    counts = {"first": 0, "later": 0}
    for _, ids, acts in token_activations(model, saes, texts, batch_size):
        first, later = occurrence_positions(ids)
        counts["first"] += len(first)
        counts["later"] += len(later)
        for sae_id, z in acts.items():
            for name, pos in (("first", first), ("later", later)):
                zz = z[pos]
                sums[sae_id][f"fire_{name}"] += (zz > 0).float().sum(0).cpu()
                sums[sae_id][f"act_{name}"] += zz.sum(0).cpu()
    if not counts["later"]:
        raise AppInputError("no token occurs twice in any discovery text; give texts that repeat themselves.")
    rows = []
    for sae_id, s in sums.items():
        layer, site = sae_target(saes[sae_id])
        df = pd.DataFrame({k: (v / counts[k.split("_")[1]]).numpy() for k, v in s.items()})
        df.insert(0, "feature", range(len(df)))
        df.insert(0, "layer", layer)
        df.insert(0, "site", site)
        df.insert(0, "sae_id", sae_id)
        df["score"] = df["fire_later"] - df["fire_first"]
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


@torch.no_grad()
def copy_losses(
    model: Any, seqs: list[list[int]], interventions: list[Any], batch_size: int = 16
) -> tuple[float, float]:
    """Mean next-token loss (nats) on first and on later occurrences of repeated tokens, under `interventions`
    (right-padded batches: exact for a causal model, real tokens never attend to the padding after them)."""
    from qwen3_scope.steering.generation import right_padded
    from qwen3_scope.steering.interventions import steer

    device = next(model.parameters()).device
    sums = {"first": [0.0, 0], "later": [0.0, 0]}
    with steer(model, interventions):
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            logprobs = model(right_padded(chunk, pad=0).to(device), return_type="logits").float().log_softmax(-1)
            for row, ids in enumerate(chunk):
                for name, positions in zip(("first", "later"), occurrence_positions(ids)):
                    positions = [i for i in positions if i > 0]
                    if positions:
                        targets = torch.tensor([ids[i] for i in positions], device=device)
                        before = torch.tensor(positions, device=device) - 1
                        sums[name][0] -= float(logprobs[row, before].gather(-1, targets[:, None]).sum())
                        sums[name][1] += len(positions)
    return sums["first"][0] / max(sums["first"][1], 1), sums["later"][0] / max(sums["later"][1], 1)


@torch.no_grad()
def site_norms(model: Any, saes: dict[str, Any], seqs: list[list[int]], batch_size: int) -> dict[str, float]:
    """{sae_id: mean L2 norm of the SAE's input activations over the tokens} (the unit of alpha), from one pass."""
    from qwen3_scope.steering.generation import run_and_cache
    from qwen3_scope.steering.interventions import resolve_hook, sae_target

    hooks = {sae_id: resolve_hook(model, *sae_target(sae)) for sae_id, sae in saes.items()}
    totals = dict.fromkeys(saes, 0.0)
    for rows, cache in run_and_cache(model, seqs, sorted(set(hooks.values())), batch_size):
        for sae_id, hook in hooks.items():
            acts = cache[hook]
            acts = acts.flatten(2) if acts.ndim > 3 else acts
            for i in rows:
                totals[sae_id] += float(acts[i - rows.start, : len(seqs[i])].float().norm(dim=-1).sum())
    n = sum(map(len, seqs))
    return {sae_id: total / n for sae_id, total in totals.items()}


@app(
    "repetition",
    "repetition features: found on repeated text; ablated (does copying need them?) and steered (do they add repetition?)",
    RepetitionConfig,
    demo={"n_prompts": 24, "max_new_tokens": 32},
)
def run(cfg: RepetitionConfig) -> AppResult:
    from qwen3_scope.apps.features import encode_texts, load_model_and_saes, saes_by_layer
    from qwen3_scope.chat import format_chat
    from qwen3_scope.steering.generation import greedy_generate
    from qwen3_scope.steering.interventions import ablate_feature, sae_target, steer, steer_feature

    texts, prompts = _texts(cfg), _prompts(cfg)
    model, all_saes = load_model_and_saes(cfg)
    by_layer = saes_by_layer(all_saes, cfg.site, cfg.layers)
    saes = {sae_id: sae for layer, (sae_id, sae) in by_layer.items() if not cfg.layers or layer in cfg.layers}
    torch.manual_seed(cfg.seed)
    scores = discover(model, saes, texts, cfg.batch_size)
    grows = scores[scores["act_later"] > scores["act_first"]]
    top = grows.sort_values("score", ascending=False).head(cfg.n_features)
    live = scores[(scores["fire_first"] + scores["fire_later"]) > 0].drop(index=top.index)
    rng = random.Random(cfg.seed)
    control = live.loc[rng.sample(list(live.index), min(cfg.n_random, len(live)))]
    seqs = encode_texts(model.tokenizer, texts)
    points = [("repetition", r) for r in top.itertuples()] + [("random", r) for r in control.itertuples()]
    ablation = []
    for arm, row in [("unablated", None), *points]:
        ivs = [] if row is None else [ablate_feature(saes[row.sae_id], int(row.feature))]
        first_loss, later_loss = copy_losses(model, seqs, ivs, cfg.batch_size)
        name = "" if row is None else f"{row.site}/L{row.layer}/f{row.feature}"
        ablation.append({"arm": arm, "feature": name, "loss_first": first_loss, "loss_later": later_loss})
    ablated = pd.DataFrame(ablation)
    chats = [format_chat(model.tokenizer, p) for p in prompts]
    norms = site_norms(model, saes, seqs, cfg.batch_size)

    def measure(interventions: list[Any]) -> tuple[float, float, str]:
        with steer(model, interventions):
            out = greedy_generate(model, chats, cfg.max_new_tokens, cfg.batch_size)
        ratios = [repeat_ratio(ids) for ids in out.completion_ids]
        return sum(ratios) / len(ratios), sum(map(len, out.completion_ids)) / len(ratios), out.texts[0]

    base_ratio, base_tokens, base_example = measure([])
    results = [
        {
            "arm": "unsteered",
            "feature": "",
            "score": None,
            "alpha": 0.0,
            "repeat_ratio": base_ratio,
            "tokens": base_tokens,
            "example": base_example,
        }
    ]
    for arm, row in tqdm(points, desc="steer", leave=False):
        sae = saes[row.sae_id]
        layer, site = sae_target(sae)
        for alpha in cfg.alphas:
            ratio, tokens, example = measure([steer_feature(sae, int(row.feature), alpha * norms[row.sae_id], True)])
            results.append(
                {
                    "arm": arm,
                    "feature": f"{site}/L{layer}/f{row.feature}",
                    "score": float(row.score),
                    "alpha": alpha,
                    "repeat_ratio": ratio,
                    "tokens": tokens,
                    "example": example,
                }
            )
    table = pd.DataFrame(results)
    at_alpha = table[table["alpha"] == cfg.report_alpha]
    best = top.iloc[0]
    best_name = f"{best['site']}/L{int(best['layer'])}/f{int(best['feature'])}"
    summary = {
        "feature": best_name,
        "score": float(best["score"]),
        "alpha": cfg.report_alpha,
        "repeat_ratio_unsteered": base_ratio,
        "repeat_ratio_steered": float(at_alpha.loc[at_alpha["feature"] == best_name, "repeat_ratio"].iloc[0]),
        "repeat_ratio_features_mean": float(at_alpha.loc[at_alpha["arm"] == "repetition", "repeat_ratio"].mean()),
        "repeat_ratio_random": float(at_alpha.loc[at_alpha["arm"] == "random", "repeat_ratio"].mean()),
        "later_copy_loss": float(ablated["loss_later"].iloc[0]),
        "later_copy_loss_ablated_max": float(ablated.loc[ablated["arm"] == "repetition", "loss_later"].max()),
        "later_copy_loss_ablated_mean": float(ablated.loc[ablated["arm"] == "repetition", "loss_later"].mean()),
        "later_copy_loss_random_max": float(ablated.loc[ablated["arm"] == "random", "loss_later"].max()),
        "first_copy_loss": float(ablated["loss_first"].iloc[0]),
        "first_copy_loss_ablated_max": float(ablated.loc[ablated["arm"] == "repetition", "loss_first"].max()),
        "n_texts": len(texts),
        "n_prompts": len(prompts),
    }
    features = top.drop(columns=["sae_id"]).rename(columns={"fire_first": "p_fire_first", "fire_later": "p_fire_later"})
    return AppResult(
        "repetition",
        summary,
        tables={"steering": table, "ablation": ablated, "features": features},
        figures={"repetition": _figure(table)},
        section=(
            f"Repetition features of the {cfg.site} SAEs, discovered on {len(texts)} repetitive texts (score = "
            "P(fires | later occurrence) - P(fires | first occurrence) of the same token), steered on "
            f"{len(prompts)} held-out prompts against {len(control)} random live features. Repeat ratio = share of a "
            "generation's token bigrams seen earlier in it.\n\n"
            f"{features.to_markdown(index=False, floatfmt='.3f')}\n\n"
            "Necessity: next-token loss on first and later occurrences with each feature zero-ablated (error term "
            f"kept):\n\n{ablated.to_markdown(index=False, floatfmt='.3f')}\n\nSufficiency: steering.\n\n"
            f"{table.drop(columns=['example']).to_markdown(index=False, floatfmt='.3f')}\n\n"
            "Files: `features.csv`, `ablation.csv`, `steering.csv`, `repetition.png`."
        ),
    )


def _figure(table: pd.DataFrame) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    base = float(table.loc[table["arm"] == "unsteered", "repeat_ratio"].iloc[0])
    for (arm, feature), group in table[table["arm"] != "unsteered"].groupby(["arm", "feature"]):
        ax.plot(
            [0.0, *group["alpha"]],
            [base, *group["repeat_ratio"]],
            marker="o",
            color="C3" if arm == "repetition" else "0.6",
            label=f"{feature} ({arm})",
        )
    ax.set(xlabel="alpha (x mean activation norm)", ylabel="repeat ratio of generations", ylim=(0, 1))
    ax.legend(fontsize=6)
    return fig
