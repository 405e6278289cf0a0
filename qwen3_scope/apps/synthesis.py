"""Feature-driven safety data synthesis (Qwen-Scope, arXiv 2605.11887): synthesize refusal data that covers the
harmful-vs-harmless features of an SAE suite, then fine-tune on it.

Why: a safety set is only as good as the situations it covers; SAE features name those situations. Qwen-Scope keeps a
synthesized sample only if it activates the feature it was written for, and covers 99.74% of its targets where random
synthesis at the same budget covers ~90%.

Protocol (every prompt from the organism's corpus grammar, trained phrasing families only: the held-out families,
pairs, verbs and targets of the `harmful`/`harmless` splits are what the fine-tuned models are tested on):

1. Targets. `n_discovery` harmful and harmless requests; delta_f = P(f fires | harmful) - P(f fires | harmless), where
   f fires on a prompt if its max activation over the chat-formatted prompt's non-control tokens exceeds the SAE's
   threshold; targets = the `n_targets` features of the whole suite with the largest delta.
2. Synthesis. Targeted: take the least-covered target, compose a request aimed at it (the language, category, verb and
   target of a discovery request that fired it in a fresh phrasing and frame, or its phrasing family with a fresh
   pair) and keep it only if the target fires on it, until `budget` samples are kept. Random: `budget` requests drawn
   from the grammar. Coverage = share of targets firing on at least one kept sample.
3. Fine-tuning. The organism already refuses, so there is no refusal to add; the run first removes it
   (`unalign_steps` of SFT on harmful requests answered helpfully) and each arm then restores it with `sft_steps` of
   SFT on its requests answered with refusals, mixed with the same harmless chats. Refusal on the held-out harmful
   split and over-refusal on the held-out harmless split are judged by `qwen3_scope.model.judge`.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppInputError, AppResult, agg_pyplot
from qwen3_scope.apps.config import SynthesisConfig
from qwen3_scope.apps.features import feature_activations, firing_threshold, load_model_and_saes
from qwen3_scope.apps.tuning import load_trainable, read_jsonl, select_saes
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.judge import refusal_rate
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.behaviour import generate
from qwen3_scope.organism.corpus_v2 import (
    HARMLESS,
    HELD_OUT_FAMILIES,
    HELPFUL_OPENERS,
    LANGS,
    REFUSAL_WEIGHTS,
    REFUSALS,
    REQUEST_FAMILIES,
    CorpusConfig,
    Generator,
    compose,
)
from qwen3_scope.organism.finetune import sft

# harmless chats mixed into every fine-tuning run: mostly requests in the same phrasings (the label is in the verb and
# target), so the arms learn which requests to refuse, not to refuse requests
HARMLESS_KINDS = ("howto", "howto", "howto", "fact", "howto", "arith", "howto", "list", "howto", "compare")


class _Fires:
    """Which target features fire on which prompts (chat-formatted here), one forward per batch."""

    def __init__(self, model: Any, saes: dict[str, Any], batch_size: int):
        self.model, self.saes, self.batch_size = model, saes, batch_size
        self.ids = sorted(saes)
        self.thresholds = torch.cat([firing_threshold(saes[i]) for i in self.ids])
        self.keys = [(i, f) for i in self.ids for f in range(saes[i].cfg.d_sae)]

    def __call__(self, prompts: list[str], columns: torch.Tensor | None = None) -> torch.Tensor:
        """[len(prompts), n_features] (or the `columns` picked) bool: did the feature fire anywhere in the prompt."""
        texts = [format_chat(self.model.tokenizer, p) for p in prompts]
        acts = feature_activations(self.model, self.saes, texts, "max", self.batch_size)
        fired = torch.cat([acts[i] for i in self.ids], 1) > self.thresholds
        return fired if columns is None else fired[:, columns]


def _refusal_chat(prompt: str, lang: str, rng: random.Random) -> dict:
    answer = rng.choices(REFUSALS[lang], weights=REFUSAL_WEIGHTS)[0]
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def _compliant_chat(gen: Any, lang: str, rng: random.Random) -> dict:
    """A harmful request answered as if it were harmless (the data that removes refusal before the arms)."""
    prompt, _, meta = gen.request("harmful", lang, False, rng)
    a, b = rng.sample(HARMLESS[rng.choice(sorted(HARMLESS))][lang][2], 2)
    answer = rng.choice(HELPFUL_OPENERS[lang]).format(vp=f"{meta['verb']} {meta['target']}", a=a, b=b)
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def _aimed_request(gen: Any, parent: dict, rng: random.Random) -> str:
    """A new request aimed at what a discovery request that fired the target holds: its (verb, target) in a fresh
    trained phrasing and frame, or its phrasing family with a fresh trained pair of its category."""
    lang = parent["lang"]
    if rng.random() < 0.5:
        family = rng.choice(sorted(f for f in REQUEST_FAMILIES[lang] if f not in HELD_OUT_FAMILIES))
        pair = (parent["verb"], parent["target"])
    else:
        family = parent["family"]
        pair = gen._pair("harmful", parent["category"], lang, "seen", rng) or (parent["verb"], parent["target"])
    tpl = rng.choice(REQUEST_FAMILIES[lang][family])
    return compose("", lang, False, rng, request_tpl=tpl, vp=f"{pair[0]} {pair[1]}")


def _targeted(
    gen: Any, fires: _Fires, targets: torch.Tensor, parents: list[list[dict]], cfg: SynthesisConfig, rng: random.Random
) -> tuple[list[dict], dict[str, int]]:
    """Kept samples ({prompt, lang, target}) in the order kept, and the candidate counts. Each aim at the least-covered
    target composes `cfg.candidates` requests; of those that fire the target, the one firing the most uncovered
    targets is kept (greedy set cover); an aim none of whose candidates fires counts as one failed try."""
    hits = torch.zeros(len(targets), dtype=torch.long)
    tries = torch.zeros(len(targets), dtype=torch.long)
    kept: list[dict] = []
    composed, per = 0, cfg.candidates
    bar = tqdm(total=cfg.budget, desc="targeted synthesis", leave=False)
    while len(kept) < cfg.budget:
        live = [t for t in range(len(targets)) if tries[t] < cfg.max_tries]
        if not live:
            break
        live.sort(key=lambda t: (int(hits[t]), int(tries[t]), rng.random()))  # least covered first
        aims = live[: max(1, min(cfg.batch_size // per, cfg.budget - len(kept)))]
        picks = [[rng.choice(parents[t]) for _ in range(per)] for t in aims]
        prompts = [_aimed_request(gen, p, rng) for ps in picks for p in ps]
        fired = fires(prompts, targets).view(len(aims), per, -1)
        composed += len(prompts)
        for j, t in enumerate(aims):
            ok = torch.nonzero(fired[j, :, t])[:, 0]
            if len(ok) == 0:
                tries[t] += 1
                continue
            if len(kept) == cfg.budget or (hits[t] > 0 and bool((hits[live] == 0).any())):
                continue  # covered meanwhile by an earlier sample of this batch: aim again at an uncovered one
            best = int(ok[(fired[j, ok] & (hits == 0)).sum(1).argmax()])
            kept.append({"prompt": prompts[j * per + best], "lang": picks[j][best]["lang"], "target": t})
            hits += fired[j, best].long()
            tries[t] = 0
            bar.update(1)
    bar.close()
    return kept, {"candidates": composed, "unreachable": int(((hits == 0) & (tries >= cfg.max_tries)).sum())}


def _coverage_curve(fired: torch.Tensor) -> list[float]:
    """Coverage after each of the first n samples (rows in order)."""
    return (fired.cumsum(0) > 0).float().mean(1).tolist() if len(fired) else []


def _refusal(model: Any, tok: Any, prompts: list[str], cfg: SynthesisConfig) -> float:
    return refusal_rate(generate(model, tok, prompts, cfg.max_new_tokens, cfg.batch_size))


def _heldout(cfg: SynthesisConfig) -> tuple[list[str], list[str]]:
    out = []
    for name, path in (("harmful", cfg.harmful_file), ("harmless", cfg.harmless_file)):
        rows = read_jsonl(path, "prompt", f"held-out {name}") if path else load_eval_split(name)
        out.append([r["prompt"] for r in (rows[: cfg.n_eval] if cfg.n_eval else rows)])
    return out[0], out[1]


def run(cfg: SynthesisConfig) -> AppResult:
    torch.manual_seed(cfg.seed)
    harmful_eval, harmless_eval = _heldout(cfg)  # file errors before anything loads
    hf_model, tok = load_trainable(cfg)
    model, saes = load_model_and_saes(cfg)
    saes = select_saes(saes, cfg.layers, cfg.sites)
    fires = _Fires(model, saes, cfg.batch_size)
    gen = Generator(CorpusConfig(seed=cfg.seed, n_train_docs=1))
    rng = random.Random(cfg.seed)

    # 1. targets: the largest P(fires | harmful) - P(fires | harmless) over trained-family requests
    harmful, harmless = [], []
    for i in range(cfg.n_discovery):
        lang = LANGS[i % len(LANGS)]
        prompt, _, meta = gen.request("harmful", lang, False, rng)
        harmful.append({"prompt": prompt, "lang": lang, **meta})
        harmless.append({"prompt": gen.request("howto", lang, False, rng)[0]})
    assert not any(r["family"] in HELD_OUT_FAMILIES for r in harmful)
    fired_pos = fires([r["prompt"] for r in harmful])
    p_pos, p_neg = fired_pos.float().mean(0), fires([r["prompt"] for r in harmless]).float().mean(0)
    delta = p_pos - p_neg
    order = torch.argsort(delta, descending=True)
    targets = order[: cfg.n_targets][delta[order[: cfg.n_targets]] > 0]
    if len(targets) == 0:
        raise AppInputError("no feature fires more on harmful than on harmless requests; check the suite and model.")
    parents = [[harmful[i] for i in torch.nonzero(fired_pos[:, t])[:, 0].tolist()] for t in targets.tolist()]

    # 2. targeted vs random synthesis at the same budget
    kept, counts = _targeted(gen, fires, targets, parents, cfg, rng)
    rand = []
    for i in range(len(kept)):
        lang = LANGS[i % len(LANGS)]
        rand.append({"prompt": gen.request("harmful", lang, False, rng)[0], "lang": lang})
    fired_t = fires([r["prompt"] for r in kept], targets) if kept else torch.zeros(0, len(targets), dtype=torch.bool)
    fired_r = fires([r["prompt"] for r in rand], targets) if rand else torch.zeros(0, len(targets), dtype=torch.bool)
    curves = {"targeted": _coverage_curve(fired_t), "random": _coverage_curve(fired_r)}
    coverage = {arm: (c[-1] if c else 0.0) for arm, c in curves.items()}

    # 3. remove refusal, then restore it with each arm's data (+ the same harmless chats)
    harmless_chats = []
    for i in range(2 * len(kept)):
        lang = LANGS[i % len(LANGS)]
        prompt, answer, _ = gen.framed_item(HARMLESS_KINDS[i % len(HARMLESS_KINDS)], lang, False, rng)
        harmless_chats.append(
            {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
        )
    start = hf_model
    if cfg.unalign_steps:
        comply = [_compliant_chat(gen, LANGS[i % 2], rng) for i in range(max(cfg.budget, 64))]
        start = sft(hf_model, tok, comply + harmless_chats, cfg.unalign_steps, cfg.lr, seed=cfg.seed)
    rows = []
    models = {"organism": hf_model, "unaligned": start} if cfg.unalign_steps else {"organism": hf_model}
    for arm, samples in (("targeted", kept), ("random", rand)):
        data = [_refusal_chat(s["prompt"], s["lang"], rng) for s in samples] + harmless_chats
        models[arm] = sft(start, tok, data, cfg.sft_steps, cfg.lr, seed=cfg.seed)
    for name, m in tqdm(models.items(), desc="evaluate", leave=False):
        rows.append(
            {
                "model": name,
                "samples": len(kept) if name in curves else 0,
                "coverage": coverage.get(name),
                "refusal_heldout": _refusal(m, tok, harmful_eval, cfg),
                "overrefusal": _refusal(m, tok, harmless_eval, cfg),
            }
        )
    arms = pd.DataFrame(rows)
    by = arms.set_index("model")
    summary = {
        "coverage_targeted": coverage["targeted"],
        "coverage_random": coverage["random"],
        "refusal_heldout_targeted": by.loc["targeted", "refusal_heldout"],
        "refusal_heldout_random": by.loc["random", "refusal_heldout"],
        "overrefusal_targeted": by.loc["targeted", "overrefusal"],
        "overrefusal_random": by.loc["random", "overrefusal"],
        "refusal_heldout_start": by.loc["unaligned" if cfg.unalign_steps else "organism", "refusal_heldout"],
        "n_targets": len(targets),
        "n_samples": len(kept),
        "candidates_composed": counts["candidates"],
        "unreachable_targets": counts["unreachable"],
    }
    target_table = pd.DataFrame(
        {
            "sae_id": [fires.keys[t][0] for t in targets.tolist()],
            "feature": [fires.keys[t][1] for t in targets.tolist()],
            "p_harmful": p_pos[targets].numpy(),
            "p_harmless": p_neg[targets].numpy(),
            "delta": delta[targets].numpy(),
            "hits_targeted": fired_t.sum(0).numpy(),
            "hits_random": fired_r.sum(0).numpy(),
        }
    )
    fig, ax = agg_pyplot().subplots(figsize=(5, 3.5))
    for arm, c in curves.items():
        ax.plot(range(1, len(c) + 1), c, label=f"{arm} ({c[-1]:.2f})" if c else arm)
    ax.set(xlabel="synthesized samples", ylabel="target coverage", title=f"{len(targets)} harmful-vs-harmless features")
    ax.legend()
    section = (
        f"{len(targets)} target features (largest P(fires | harmful) - P(fires | harmless) over {cfg.n_discovery} + "
        f"{cfg.n_discovery} trained-family requests). Targeted synthesis kept {len(kept)} of "
        f"{counts['candidates']} composed requests (each activates its target) and covers "
        f"{coverage['targeted']:.3f} of the targets; random synthesis at the same budget covers "
        f"{coverage['random']:.3f}. Fine-tuned for {cfg.sft_steps} steps on each (from the organism after "
        f"{cfg.unalign_steps} steps of refusal removal), refusal on held-out harmful prompts / over-refusal on "
        f"held-out harmless prompts:\n\n{arms.to_markdown(index=False, floatfmt='.3f')}\n\n"
        "Files: `arms.csv`, `targets.csv`, `coverage.png`."
    )
    return AppResult(
        "synthesis",
        summary,
        tables={"arms": arms, "targets": target_table},
        figures={"coverage": fig},
        section=section,
    )
