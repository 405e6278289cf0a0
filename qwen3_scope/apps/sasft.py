"""SAE-guided supervised fine-tuning (SASFT, Qwen-Scope, arXiv 2605.11887) against code-switching.

Why: fine-tuning on data with a bad habit (here English answers sprinkled with French words, the organism's
`codeswitch_sft` split) teaches the habit; SASFT keeps the model's representation out of the unwanted language while
it learns the rest. Loss = CE + lambda * sum over target features s of ReLU(pre_act_s(x) - alpha_s), where

- target features of language L = the `n_features` features per SAE with the largest mean activation on L's chats
  minus the other language's (chats from the organism's grammar, control tokens excluded), in every SAE of the suite
  (`contrast=codeswitch` ranks the French ones by the smaller of code-switched SFT chats minus English chats and
  French chats minus English chats instead: French features the habit's text uses);
- they are penalised on the examples not in L (the paper's rule): French features on the English code-switched chats
  and, with `symmetric` and the `mix_french` clean French chats every run gets, English features on French ones;
- alpha_s = the feature's pre-activation on the other language (`alpha`: the mean over chats of the per-chat maximum by
  default, the paper's token mean as an option);
- x = the site's activation (a forward hook on the HF model's module) at the positions that produce an answer token,
  rescaled to the base model's mean norm, without the positions of French words with `positions=english`.

What this organism showed (and why the defaults): a penalty read at raw norm is escaped by shrinking the residual
stream; one at the French words of the data (or with a high learning rate, or for long) is escaped by routing the
switch through directions no penalised feature reads (the penalty falls to ~0 while the habit stays). A gentle
fine-tune (lr 2e-4, 80 steps) with a few French features per SAE in every SAE keeps most of the habit out. On the
shipped organism (150 held-out prompts per language, means of the 3 repeats; relative reduction of code-switching /
French quality change, both against plain SFT): lambda 1 with 2,400 clean French chats (the defaults) 0.76 / -4.0 %;
with 1,600 chats 0.50 / -4.2 %, with 800 0.23 / -6.6 %; lambda 1.5 with 1,600 0.68 / -6.4 %; lambda 2 with 800, 1,600
and 3,200 chats 0.40 / -8.5 %, 0.74 / -6.8 % and 0.88 / -11.7 %; lambda 3 with 3,200 0.91 / -14.9 %; lambda 4 with
800 0.72 / -13.9 %; 2 features per SAE (lambda 2, 800) 0.29 / -6.8 %. The defaults were picked on those prompts: of
the ten settings only lambda 1 with 1,600 or 2,400 chats is within both targets (reduction >= 0.5, French quality
within 5 %). Every penalty costs some French quality, the random-feature
control's too (-5.6 % at lambda 2), because the French features pushed down on English answers are also the ones
French answers use (the lost answers switch to English: "1 plus 1 is 10"); clean French chats in the data buy
reduction, and at lambda 1 quality too. How much quality a run loses varies with the seed (-8.0 %, -1.5 % and -2.3 %
for seeds 0, 1, 2 with the defaults), so the app repeats every
run (`repeats`, 3 by default) and reports the means. On the previous v2 organism (trained before
`corpus.PEOPLE_TARGETS`), seed 0 only, lambda 2 with 800 chats gave 0.19 / 0.77 in absolute terms (plain 0.69 / 0.84),
`--symmetric` 0.36 / 0.72, the paper's positions and alpha (`--positions all --alpha mean`, symmetric) 0.10 / 0.10.
The control fine-tunes with the same loss on random features.

The margin across suites (issue 29; 150 prompts per language, 3 repeats, relative reduction / French quality change):
the bundled suite 0.76 / -4.0 %, two suites trained with `qwen3-scope train` (every layer x the three sites, 200k
tokens, `--seed` 1 and 2) 0.59 / -3.7 % and 0.59 / -3.5 %: the defaults meet both targets on all three, with seed 2
the weakest repeat (0.35-0.61). Choices that spare French answers did not do better on the bundled suite: features of
code-switched SFT chats minus the larger of the English and French means (the habit alone, sparing French)
0.01 / -3.0 %: the penalty falls to 0 within the run while the habit stays, presumably as those features fire on
the French words themselves, which the penalty skips; `contrast=codeswitch` 0.47 / -3.0 % (0.45 / -4.2 % and
0.11 / -3.0 % on the trained suites); a floor keeping the French features at their mean on French chats in French
answers (the seed-1 suite) 0.81 / -7.7 %, which also made the random control cut code-switching (0.25): the French
features that gate the habit are the same ones French answers use.

Measured: the code-switching rate (answers to held-out English prompts holding French-only words,
`qwen3_scope.organism.language.has_french_words`, the one language detector) and French quality (held-out French prompts
answered in French and correctly) after plain SFT, SASFT and the control.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.apps import AppInputError, AppResult, agg_pyplot
from qwen3_scope.apps.config import SasftConfig
from qwen3_scope.apps.features import feature_statistics, load_model_and_saes, pre_activation
from qwen3_scope.apps.tuning import load_trainable, read_chats, read_jsonl, select_saes
from qwen3_scope.model.chat import special_token_ids
from qwen3_scope.model.sites import hook_name
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.behaviour import generate, task_correct
from qwen3_scope.organism.corpus_v2 import EN, FR, CorpusConfig, Generator
from qwen3_scope.organism.finetune import sft
from qwen3_scope.organism.language import detect_language, has_french_words, organism_detector
from qwen3_scope.organism.train import render_chat
from qwen3_scope.steering.interventions import sae_target

DISCOVERY_KINDS = (
    "howto",
    "howto",
    "fact",
    "arith",
    "list",
    "compare",
    "next",
    "count",
    "opposite",
    "plural",
    "polite",
)


class SaePenalty:
    """lambda * sum_s ReLU(pre_act_s(x) - alpha_s), read through forward hooks on the HF model's SAE sites; call it
    with a batch's (ids, loss mask) after the forward pass (`sft(extra_loss=...)`). `features[lang]` (with
    `alphas[lang]`) are the features of language `lang`, penalised on the examples whose prompt is in the other one."""

    def __init__(
        self,
        model: Any,
        saes: dict[str, Any],
        features: dict[str, dict[str, torch.Tensor]],
        alphas: dict[str, dict[str, torch.Tensor]],
        lam: float,
        skip: dict[str, set[int]],
        tok: Any,
    ):
        self.saes, self.features, self.alphas, self.lam, self.tok = saes, features, alphas, lam, tok
        self.skip = {lang: torch.tensor(sorted(ids)) for lang, ids in skip.items()}
        self.acts: dict[str, torch.Tensor] = {}
        self.handles = []
        spec = getattr(model, "qwen3_spec", None)
        for sae_id, sae in saes.items():
            for p in sae.parameters():
                p.requires_grad_(False)
            layer, site = sae_target(sae)
            module = model.get_submodule(hook_name(site, layer, "hf", spec))
            self.handles.append(module.register_forward_hook(self._keeper(sae_id)))
        self.history: list[float] = []  # the unweighted penalty of every step
        # Every site is read at the base model's mean norm: the layers after it see it through RMSNorm, so without
        # this the model escapes the penalty by shrinking the residual stream instead of leaving French
        self.norms: dict[str, torch.Tensor] = {}

    def _keeper(self, sae_id: str):
        def keep(module: Any, args: Any, output: Any) -> None:
            self.acts[sae_id] = output[0] if isinstance(output, tuple) else output

        return keep

    def penalty(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The unweighted penalty of the last forward pass (of `ids`) at the positions that produce answer tokens."""
        starts = mask.int().argmax(1).tolist()  # the prompt (all before the answer) gives the example's language
        french = torch.tensor([detect_language(self.tok.decode(r[:k])) == "fr" for r, k in zip(ids.tolist(), starts)])
        produce = mask[:, 1:]
        rows = {"fr": ~french, "en": french}  # French features on English examples, English ones on French examples
        pos = {
            lang: produce & rows[lang][:, None] & ~torch.isin(ids[:, :-1], self.skip[lang]) for lang in self.features
        }
        total = torch.zeros(())
        for sae_id, sae in self.saes.items():
            acts = self.acts.pop(sae_id)[:, :-1]
            if sae_id not in self.norms:  # the first batch runs the model before any update: the base model's norm
                self.norms[sae_id] = acts[produce].detach().norm(dim=-1).mean()
            for lang, features in self.features.items():
                x = acts[pos[lang]]
                if len(x):
                    x = x * (self.norms[sae_id] / x.norm(dim=-1, keepdim=True).clamp_min(1e-6))
                    pre = pre_activation(sae, x.to(sae.dtype))[:, features[sae_id]]
                    total = total + torch.relu(pre - self.alphas[lang][sae_id]).sum(-1).mean()
        return total

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = self.penalty(ids, mask)
        self.history.append(float(total.detach()))
        return self.lam * total

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def french_token_ids(tok: Any, rows: list[dict]) -> set[int]:
    """Token ids that the chats of `rows` hold inside French-only words (by the shared detector) more often than
    outside: the tokens where a switch has already happened, left out of the penalty with `positions=english`."""
    inside: Counter[int] = Counter()
    outside: Counter[int] = Counter()
    detector = organism_detector()
    for row in rows:
        text = render_chat(tok, row["messages"])
        spans = detector.french_spans(text)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        for t, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]):
            (inside if any(a < e and b > s for s, e in spans) else outside)[t] += 1
    return {t for t in inside if inside[t] > outside[t]}


def _chats(gen: Any, lang: str, n: int, rng: random.Random) -> list[list[dict]]:
    out = []
    for i in range(n):
        prompt, answer, _ = gen.framed_item(DISCOVERY_KINDS[i % len(DISCOVERY_KINDS)], lang, False, rng)
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return out


def french_quality(rows: list[dict], answers: list[str]) -> float:
    """Share of French prompts answered in French and correctly: the task's expected answer where the row has one
    (`behaviour.task_correct`), else the request's target named in the answer, else the language alone."""

    def good(row: dict, answer: str) -> bool:
        if detect_language(answer) != "fr":
            return False
        if "expected" in row and "task" in row:
            return task_correct(row, answer)
        if "expected" in row:
            return all(str(e).lower() in answer.lower() for e in row["expected"])
        return str(row.get("target", "")).lower() in answer.lower()

    return sum(good(r, a) for r, a in zip(rows, answers)) / len(rows)


def _data(cfg: SasftConfig) -> tuple[list[dict], list[dict], list[dict]]:
    train = read_chats(cfg.sft_file) if cfg.sft_file else load_eval_split("codeswitch_sft")
    en = read_jsonl(cfg.english_file, "prompt", "English prompt") if cfg.english_file else load_eval_split("lang_en")
    fr = read_jsonl(cfg.french_file, "prompt", "French prompt") if cfg.french_file else load_eval_split("lang_fr")
    cut = lambda rows, n: rows[:n] if n else rows
    return cut(train, cfg.n_train), cut(en, cfg.n_eval), cut(fr, cfg.n_eval)


def _language_features(
    cfg: SasftConfig,
    model: Any,
    saes: dict[str, Any],
    tok: Any,
    gen: Any,
    rng: random.Random,
    seed: int,
    train: list[dict],
) -> tuple[dict, dict, list[dict]]:
    """Per arm (`sasft`: the language features, `random`: the control) and penalised language: {sae_id: feature ids}
    and their alpha_s, plus one table row per chosen language feature. Language features = mean activation on that
    language's chats minus the other's, or for French with `contrast=codeswitch`, mean activation on chats of the SFT
    data (`train`) minus the larger of the English and French means; alpha = the feature's mean pre-activation (or
    mean per-chat maximum, `alpha`) on the other language, where it is penalised."""
    texts = {lang: [render_chat(tok, m) for m in _chats(gen, lang, cfg.n_discovery, rng)] for lang in (EN, FR)}
    stats = {
        lang: feature_statistics(model, saes, texts[lang], [("mean", False), (cfg.alpha, True)], cfg.batch_size)
        for lang in (EN, FR)
    }
    mean = {lang: stats[lang][0] for lang in (EN, FR)}
    pre = {lang: stats[lang][1] for lang in (EN, FR)}
    switched = None
    if cfg.contrast == "codeswitch":  # own generator: the runs' other draws stay those of `french` (paired arms)
        sample = random.Random(seed).sample(train, min(cfg.n_discovery, len(train)))
        texts_cs = [render_chat(tok, r["messages"]) for r in sample]
        switched = feature_statistics(model, saes, texts_cs, [("mean", False)], cfg.batch_size)[0]
    other = {FR: EN, EN: FR}
    chosen: dict[str, dict[str, dict[str, torch.Tensor]]] = {"sasft": {}, "random": {}}
    alphas: dict[str, dict[str, dict[str, torch.Tensor]]] = {"sasft": {}, "random": {}}
    rows = []
    gen_t = torch.Generator().manual_seed(seed)
    for lang in (FR, EN) if cfg.symmetric else (FR,):
        for arm in chosen:
            chosen[arm][lang], alphas[arm][lang] = {}, {}
        for sae_id, sae in sorted(saes.items()):
            if cfg.n_features > sae.cfg.d_sae:
                raise AppInputError(f"n_features {cfg.n_features} exceeds {sae_id}'s width {sae.cfg.d_sae}.")
            if lang == FR and switched is not None:
                base = mean[EN][sae_id].mean(0)
                diff = torch.minimum(switched[sae_id].mean(0) - base, mean[FR][sae_id].mean(0) - base)
            else:
                diff = (mean[lang][sae_id] - mean[other[lang]][sae_id]).mean(0)
            alpha = pre[other[lang]][sae_id].mean(0)
            chosen["sasft"][lang][sae_id] = torch.argsort(diff, descending=True)[: cfg.n_features]
            chosen["random"][lang][sae_id] = torch.randperm(sae.cfg.d_sae, generator=gen_t)[: cfg.n_features]
            for arm in chosen:
                alphas[arm][lang][sae_id] = alpha[chosen[arm][lang][sae_id]]
            rows += [
                {
                    "seed": seed,
                    "language": lang,
                    "contrast": cfg.contrast if lang == FR else "english",
                    "sae_id": sae_id,
                    "feature": f,
                    "diff": float(diff[f]),
                    "alpha": float(alpha[f]),
                }
                for f in chosen["sasft"][lang][sae_id].tolist()
            ]
    return chosen, alphas, rows


def run(cfg: SasftConfig) -> AppResult:
    train, en_rows, fr_rows = _data(cfg)
    hf_model, tok = load_trainable(cfg)
    model, saes = load_model_and_saes(cfg)
    saes = select_saes(saes, cfg.layers, cfg.sites)
    special = set(special_token_ids(tok))

    def evaluate(name: str, seed: int | None, m: Any, penalty: list[float] | None) -> dict:
        en_out = generate(m, tok, [r["prompt"] for r in en_rows], cfg.max_new_tokens, cfg.batch_size)
        fr_out = generate(m, tok, [r["prompt"] for r in fr_rows], cfg.max_new_tokens, cfg.batch_size)
        return {
            "model": name,
            "seed": seed,
            "code_switch": sum(map(has_french_words, en_out)) / len(en_out),
            "french_quality": french_quality(fr_rows, fr_out),
            "english_answers_in_english": sum(detect_language(a) == "en" for a in en_out) / len(en_out),
            "penalty_first": penalty[0] if penalty else None,
            "penalty_last": penalty[-1] if penalty else None,
            "example_en": en_out[0],
            "example_fr": fr_out[0],
        }

    results = [evaluate("organism", None, hf_model, None)]
    feature_rows: list[dict] = []
    penalties: dict[str, list[float]] = {}  # the first repeat's, for the figure
    seeds = range(cfg.seed, cfg.seed + cfg.repeats)
    for seed in tqdm(seeds, desc="repeat", leave=False, disable=cfg.repeats == 1):
        torch.manual_seed(seed)
        rng = random.Random(seed)
        gen = Generator(CorpusConfig(seed=seed, n_train_docs=1))
        chosen, alphas, rows = _language_features(cfg, model, saes, tok, gen, rng, seed, train)
        feature_rows += rows
        # clean French chats: the language the penalty protects, as in the paper's multilingual data
        data = train + [{"messages": m} for m in _chats(gen, FR, cfg.mix_french, rng)]
        skip = {FR: special | (french_token_ids(tok, data) if cfg.positions == "english" else set()), EN: special}
        for name in tqdm(("plain", "sasft", "random"), desc="fine-tune", leave=False):
            tuned = copy.deepcopy(hf_model)
            penalty = None
            if name != "plain":
                penalty = SaePenalty(tuned, saes, chosen[name], alphas[name], cfg.lam, skip, tok)
            sft(tuned, tok, data, cfg.steps, cfg.lr, cfg.sft_batch, seed, inplace=True, extra_loss=penalty)
            if penalty is not None:
                penalty.remove()
                penalties.setdefault(name, penalty.history)
            results.append(evaluate(name, seed, tuned, penalty.history if penalty else None))
            del tuned

    table = pd.DataFrame(results)
    means = table.groupby("model", sort=False)[["code_switch", "french_quality"]].mean()
    plain, sasft_rate = means.loc["plain", "code_switch"], means.loc["sasft", "code_switch"]
    q_plain, q_sasft = means.loc["plain", "french_quality"], means.loc["sasft", "french_quality"]
    per_seed = table[table["seed"].notna()].pivot(
        index="seed", columns="model", values=["code_switch", "french_quality"]
    )
    summary = {
        "code_switch_plain": plain,
        "code_switch_sasft": sasft_rate,
        "code_switch_random": means.loc["random", "code_switch"],
        "relative_reduction": (plain - sasft_rate) / plain if plain > 0 else float("nan"),
        "french_quality_plain": q_plain,
        "french_quality_sasft": q_sasft,
        "french_quality_change": q_sasft / q_plain - 1 if q_plain > 0 else float("nan"),
        "code_switch_organism": means.loc["organism", "code_switch"],
        "french_quality_organism": means.loc["organism", "french_quality"],
        "relative_reduction_by_seed": [
            (p - s) / p if p > 0 else float("nan")
            for p, s in zip(per_seed["code_switch", "plain"], per_seed["code_switch", "sasft"])
        ],
        "french_quality_change_by_seed": [
            s / p - 1 if p > 0 else float("nan")
            for p, s in zip(per_seed["french_quality", "plain"], per_seed["french_quality", "sasft"])
        ],
        "seeds": list(seeds),
        "n_saes": len(saes),
        "n_features": cfg.n_features * len(saes) * (2 if cfg.symmetric else 1),
    }
    shown = table.drop(columns=["example_en", "example_fr"])
    return AppResult(
        "sasft",
        summary,
        tables={"runs": table, "features": pd.DataFrame(feature_rows)},
        figures={"sasft": _figure(table, penalties)},
        section=(
            f"{cfg.steps} fine-tuning steps on {len(train)} code-switched chats (+ {cfg.mix_french} clean French ones); "
            f"SASFT penalises {cfg.n_features} French features in each of {len(saes)} SAEs (lambda {cfg.lam}), the "
            f"control as many random ones; {cfg.repeats} repeats (seeds {seeds.start}-{seeds.stop - 1}: discovery "
            f"chats, control features and SFT order re-drawn). Code-switching = share of {len(en_rows)} held-out "
            f"English answers holding French-only words; French quality = share of {len(fr_rows)} held-out French "
            f"prompts answered in French and correctly.\n\n"
            f"{shown.to_markdown(index=False, floatfmt='.3f')}\n\n"
            f"Means over the repeats: code-switching plain {plain:.3f}, SASFT {sasft_rate:.3f}, random "
            f"{summary['code_switch_random']:.3f}; relative reduction {summary['relative_reduction']:.3f}. French "
            f"quality plain {q_plain:.3f}, SASFT {q_sasft:.3f} ({summary['french_quality_change']:+.1%}). "
            "Files: `runs.csv`, `features.csv`, `sasft.png`."
        ),
    )


def _figure(table: pd.DataFrame, penalties: dict[str, list[float]]) -> Any:
    plt = agg_pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    stats = table.groupby("model", sort=False)[["code_switch", "french_quality"]].agg(["mean", "min", "max"])
    x = range(len(stats))
    for shift, column, label in (
        (-0.2, "code_switch", "code-switching (English prompts)"),
        (0.2, "french_quality", "French quality"),
    ):
        s = stats[column]
        err = [s["mean"] - s["min"], s["max"] - s["mean"]]
        ax1.bar([i + shift for i in x], s["mean"], 0.4, yerr=err, capsize=3, label=label)
    ax1.set_xticks(list(x), list(stats.index))
    ax1.set(ylim=(0, 1), title="after fine-tuning (mean, min-max over repeats)")
    ax1.legend(fontsize=7)
    for name, values in penalties.items():
        ax2.plot(range(1, len(values) + 1), values, label=name)
    ax2.set(xlabel="step", ylabel="penalty (unweighted)", yscale="symlog", title="SAE penalty (first repeat)")
    ax2.legend()
    return fig
