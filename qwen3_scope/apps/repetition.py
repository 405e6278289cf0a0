"""Repetition features (Qwen-Scope, arXiv 2605.11887): features that track repeated text, and their causal effect.

Why: repetition is a failure mode of generation with its own features. A feature that fires more on a token's later
occurrences than on its first one tracks "this was said before"; if adding it (h' = h + alpha * d) makes generations
repeat themselves, the feature is causal for repetition and a handle to measure or suppress it.

Discovery, on repetitive texts (the organism's `repetition` split by default, or `--text-file` rows with `text`):
for every token id that occurs at least twice in a text, its first occurrence is a "first" position and every other
one a "later" position. For every feature of every SAE at each of `--sites` (studied one by one), score =
P(fires | later) - P(fires | first) ("fires": activation > 0 after JumpReLU/TopK); the `n_features` best features with
a larger mean activation on later positions are that site's repetition features.

Causal tests, both against `n_random` random live features (fired on some discovery token) of the SAEs that hold the
site's repetition features (same layers: at equal alpha a later layer's feature moves the logits more):

- necessity: each feature zero-ablated (SAE error term kept) while the model reads the discovery texts, and the site's
  top `n_joint` features together against as many random ones together (copying can be spread over several); the
  next-token loss on later occurrences (copying) against the loss on first occurrences (which copying cannot help);
- sufficiency: greedy generations from held-out chat prompts (the organism's `harmless` split, or `--prompts-file`),
  steering each feature (unit decoder direction times alpha times the mean norm of the site at that layer, at every
  position), the control features at the same alphas. Measured: the repeat ratio of a generation = share of its
  token bigrams that already occurred earlier in it (0 with fewer than two bigrams), averaged over prompts, and the
  generations' length in tokens. Large alphas break any model into loops, so the claim is a comparison at equal alpha.

On the organism (bundled suite, defaults): copying needs the resid_post repetition features together (ablating the top
10, layers 3-5, takes the later-occurrence loss 0.184 -> 0.398; 10 random live features of the same SAEs 0.186; first
occurrences unchanged) but none alone (at most 0.187): copying is spread over several features. The top mlp_out (0.200)
and attn_out (0.203) features are not needed. Steering does not separate repetition features from random ones at
equal alpha (alpha 0.5: resid_post 0.39 vs 0.60, mlp_out 0.52 vs 0.33, attn_out nothing): at that strength any layer-5
direction loops generations. (The organism trained before `corpus.PEOPLE_TARGETS` had one resid_post feature whose
ablation alone took the loss 0.177 -> 0.614.)
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppInputError, AppResult, agg_pyplot
from qwen3_scope.apps.config import RepetitionConfig
from qwen3_scope.apps.features import encode_texts, load_model_and_saes, saes_by_layer, token_activations
from qwen3_scope.apps.tuning import read_jsonl
from qwen3_scope.model.chat import format_chat
from qwen3_scope.organism import load_eval_split
from qwen3_scope.steering.generation import greedy_generate, right_padded, run_and_cache
from qwen3_scope.steering.interventions import ablate_feature, resolve_hook, sae_target, steer, steer_feature
from qwen3_scope.steering.prompts import load_prompt_file, organism_split


def repeat_ratio(ids: list[int]) -> float:
    """Share of the token bigrams of a generation that already occurred earlier in it (0 with fewer than two)."""
    bigrams = list(zip(ids, ids[1:]))
    if len(bigrams) < 2:
        return 0.0
    return 1 - len(set(bigrams)) / len(bigrams)


def occurrence_positions(ids: list[int]) -> tuple[list[int], list[int]]:
    """(first, later) positions of the token ids that occur at least twice in `ids`."""
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
        texts = [str(r["text"]) for r in read_jsonl(cfg.text_file, "text", "repetitive text")]
    else:
        texts = [r["text"] for r in load_eval_split("repetition")]
    return texts[: cfg.n_texts] if cfg.n_texts else texts


def _prompts(cfg: RepetitionConfig) -> list[str]:
    if cfg.prompts_file:
        prompts = load_prompt_file(cfg.prompts_file)  # a PromptFileError (CorruptFileError) names the file
    else:
        prompts = [r["prompt"] for r in organism_split("harmless") if r.get("task") == "howto"]
    return prompts[: cfg.n_prompts]


def discover(model: Any, saes: dict[str, Any], texts: list[str], batch_size: int) -> pd.DataFrame:
    """One row per feature: firing rate and mean activation on first and later occurrences, and the score."""
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


def run(cfg: RepetitionConfig) -> AppResult:
    texts, prompts = _texts(cfg), _prompts(cfg)
    model, all_saes = load_model_and_saes(cfg)
    per_site = {}
    for site in cfg.sites:  # every site checked before any work
        by_layer = saes_by_layer(all_saes, site, cfg.layers)
        per_site[site] = {i: sae for layer, (i, sae) in by_layer.items() if not cfg.layers or layer in cfg.layers}
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    seqs = encode_texts(model.tokenizer, texts)
    chats = [format_chat(model.tokenizer, p) for p in prompts]

    def measure(interventions: list[Any]) -> tuple[float, float, str]:
        with steer(model, interventions):
            out = greedy_generate(model, chats, cfg.max_new_tokens, cfg.batch_size)
        ratios = [repeat_ratio(ids) for ids in out.completion_ids]
        return sum(ratios) / len(ratios), sum(map(len, out.completion_ids)) / len(ratios), out.texts[0]

    base_ratio, base_tokens, base_example = measure([])
    first_loss, later_loss = copy_losses(model, seqs, [], cfg.batch_size)
    ablation = [{"site": "", "arm": "unablated", "feature": "", "loss_first": first_loss, "loss_later": later_loss}]
    steering = [
        {
            "site": "",
            "arm": "unsteered",
            "feature": "",
            "score": None,
            "alpha": 0.0,
            "repeat_ratio": base_ratio,
            "tokens": base_tokens,
            "example": base_example,
        }
    ]
    saes = {i: sae for site_saes in per_site.values() for i, sae in site_saes.items()}
    all_scores = discover(model, saes, texts, cfg.batch_size)  # one pass over the texts for every site
    found, by_site, tops, joints = [], {}, {}, {}
    for site in per_site:
        scores = all_scores[all_scores["site"] == site]
        ranked = scores[scores["act_later"] > scores["act_first"]].sort_values("score", ascending=False)
        top, joint = ranked.head(cfg.n_features), ranked.head(cfg.n_joint)
        if top.empty:
            raise AppInputError(f"no {site} feature is more active on later occurrences; try another --sites.")
        # the controls come from the same SAEs: a later layer's features move the logits more at equal alpha
        live = scores[(scores["fire_first"] + scores["fire_later"]) > 0]
        pool = live[live["sae_id"].isin(set(top["sae_id"]))].drop(index=top.index, errors="ignore")
        control = pool.loc[rng.sample(list(pool.index), min(cfg.n_random, len(pool)))]
        pool = live[live["sae_id"].isin(set(joint["sae_id"]))].drop(index=joint.index, errors="ignore")
        joint_control = pool.loc[rng.sample(list(pool.index), min(len(joint), len(pool)))]
        tops[site] = (top, control)
        joints[site] = (joint, joint_control)
    steered_saes = {i: saes[i] for top, _ in tops.values() for i in top["sae_id"]}
    norms = site_norms(model, steered_saes, seqs, cfg.batch_size)  # one pass for every steered SAE
    for site, (top, control) in tqdm(tops.items(), desc="site", leave=False):
        points = [("repetition", r) for r in top.itertuples()] + [("random", r) for r in control.itertuples()]
        for arm, row in tqdm(points, desc=f"{site}: ablate and steer", leave=False):
            sae, name = saes[row.sae_id], f"{site}/L{row.layer}/f{row.feature}"
            loss_first, loss_later = copy_losses(model, seqs, [ablate_feature(sae, int(row.feature))], cfg.batch_size)
            ablation.append(
                {"site": site, "arm": arm, "feature": name, "loss_first": loss_first, "loss_later": loss_later}
            )
            for alpha in cfg.alphas:
                ratio, tokens, example = measure(
                    [steer_feature(sae, int(row.feature), alpha * norms[row.sae_id], True)]
                )
                steering.append(
                    {
                        "site": site,
                        "arm": arm,
                        "feature": name,
                        "score": float(row.score),
                        "alpha": alpha,
                        "repeat_ratio": ratio,
                        "tokens": tokens,
                        "example": example,
                    }
                )
        for arm, rows in zip(("repetition_joint", "random_joint"), joints[site]):
            loss_first, loss_later = copy_losses(
                model, seqs, [ablate_feature(saes[r.sae_id], int(r.feature)) for r in rows.itertuples()], cfg.batch_size
            )
            names = " ".join(f"L{r.layer}/f{r.feature}" for r in rows.itertuples())
            ablation.append(
                {"site": site, "arm": arm, "feature": names, "loss_first": loss_first, "loss_later": loss_later}
            )
        found.append(top.drop(columns=["sae_id"]))
        steered = pd.DataFrame([r for r in steering if r["site"] == site and r["alpha"] == cfg.report_alpha])
        ablated = pd.DataFrame([r for r in ablation if r["site"] == site])
        best = f"{site}/L{int(top['layer'].iloc[0])}/f{int(top['feature'].iloc[0])}"
        by_site[site] = {
            "feature": best,
            "score": float(top["score"].iloc[0]),
            "repeat_ratio_steered": float(steered.loc[steered["feature"] == best, "repeat_ratio"].iloc[0]),
            "repeat_ratio_features_mean": float(steered.loc[steered["arm"] == "repetition", "repeat_ratio"].mean()),
            "repeat_ratio_random": float(steered.loc[steered["arm"] == "random", "repeat_ratio"].mean()),
            "repeat_ratio_random_max": float(steered.loc[steered["arm"] == "random", "repeat_ratio"].max()),
            "later_copy_loss_ablated_max": float(ablated.loc[ablated["arm"] == "repetition", "loss_later"].max()),
            "later_copy_loss_ablated_mean": float(ablated.loc[ablated["arm"] == "repetition", "loss_later"].mean()),
            "later_copy_loss_random_max": float(ablated.loc[ablated["arm"] == "random", "loss_later"].max()),
            "first_copy_loss_ablated_max": float(ablated.loc[ablated["arm"] == "repetition", "loss_first"].max()),
            "n_joint": len(joints[site][0]),
            "later_copy_loss_joint": float(ablated.loc[ablated["arm"] == "repetition_joint", "loss_later"].iloc[0]),
            "later_copy_loss_joint_random": float(ablated.loc[ablated["arm"] == "random_joint", "loss_later"].iloc[0]),
            "first_copy_loss_joint": float(ablated.loc[ablated["arm"] == "repetition_joint", "loss_first"].iloc[0]),
        }
    table, ablated = pd.DataFrame(steering), pd.DataFrame(ablation)
    features = pd.concat(found, ignore_index=True).rename(
        columns={"fire_first": "p_fire_first", "fire_later": "p_fire_later"}
    )
    sites = pd.DataFrame.from_dict(by_site, orient="index").rename_axis("site").reset_index()
    summary = {
        "alpha": cfg.report_alpha,
        "repeat_ratio_unsteered": base_ratio,
        "later_copy_loss": later_loss,
        "first_copy_loss": first_loss,
        "sites": by_site,
        "n_texts": len(texts),
        "n_prompts": len(prompts),
    }
    return AppResult(
        "repetition",
        summary,
        tables={"sites": sites, "steering": table, "ablation": ablated, "features": features},
        figures={"repetition": _figure(table, list(by_site))},
        section=(
            f"Repetition features of the {', '.join(by_site)} SAEs, discovered on {len(texts)} repetitive texts (score "
            "= P(fires | later occurrence) - P(fires | first occurrence) of the same token); each zero-ablated on that "
            f"text (necessity; one by one, and the top {cfg.n_joint} together against as many random ones together) and "
            f"steered on {len(prompts)} held-out prompts (sufficiency), against {cfg.n_random} "
            "random live features of the same SAEs per site. Repeat ratio = share of a generation's token bigrams "
            f"seen earlier in it (unsteered {base_ratio:.3f}); copy loss = next-token loss on later occurrences "
            f"(unablated {later_loss:.3f}, first occurrences {first_loss:.3f}). Per site, at alpha "
            f"{cfg.report_alpha}:\n\n{sites.to_markdown(index=False, floatfmt='.3f')}\n\n"
            f"{features.to_markdown(index=False, floatfmt='.3f')}\n\nNecessity (error term kept):\n\n"
            f"{ablated.to_markdown(index=False, floatfmt='.3f')}\n\nSufficiency:\n\n"
            f"{table.drop(columns=['example']).to_markdown(index=False, floatfmt='.3f')}\n\n"
            "Files: `sites.csv`, `features.csv`, `ablation.csv`, `steering.csv`, `repetition.png`."
        ),
    )


def _figure(table: pd.DataFrame, sites: list[str]) -> Any:
    plt = agg_pyplot()

    fig, axes = plt.subplots(1, len(sites), figsize=(4.5 * len(sites), 3.5), squeeze=False)
    base = float(table.loc[table["arm"] == "unsteered", "repeat_ratio"].iloc[0])
    for ax, site in zip(axes[0], sites):
        for (arm, feature), group in table[table["site"] == site].groupby(["arm", "feature"]):
            ax.plot(
                [0.0, *group["alpha"]],
                [base, *group["repeat_ratio"]],
                marker="o",
                color="C3" if arm == "repetition" else "0.6",
                label=feature if arm == "repetition" else None,
            )
        ax.plot([], [], color="0.6", label="random (same SAEs)")
        ax.set(title=site, xlabel="alpha (x mean activation norm)", ylabel="repeat ratio of generations", ylim=(0, 1))
        ax.legend(fontsize=6)
    return fig
