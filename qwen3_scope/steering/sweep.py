"""Candidate selection and alpha sweeps: steer, generate, score the behaviour and the coherence cost.

Why one engine for refusal and language: both studies are "push a direction up on the set that lacks
the behaviour (induce), push it down on the set that has it (suppress), count how often the behaviour
shows, and check the model still talks sense". Only the prompt sets and the text scorer differ.

Selection: the discovery ranking is correlational, and many latents that separate the sets do not
steer (they read the request rather than write the decision). So the top `screen` latents are screened
causally, one alpha on the *discovery* prompts, and the `top_k` that induce the behaviour best are
swept on the held-out evaluation prompts. The baseline, Arditi et al.'s difference-in-means direction,
is selected the same way among the residual-stream layers of the suite.

Alpha is relative: the added vector is alpha * resid_norm * unit(direction), resid_norm being the mean
residual-stream norm at that layer on the discovery prompts, so alpha = 1 adds a vector as long as a
typical residual activation there, whatever the site or candidate. By default it is added only at the
post-instruction template tokens (`positions="post_instruction"`); `positions="all"` is Arditi's
every-position addition. Ablation rows zero the latent with the SAE error term kept (or, for the
baseline, project the direction out of every layer's input and writes) at every position.

Coherence, two numbers per point: `harmless_ce_delta`, how much the steering raises the cross-entropy of
the model's own unsteered greedy completions of the reference prompts (nats/token; the cost of steering
where nothing should change; for "induce" it also includes the intended change of answer), and
`fluency_ce`, the unsteered model's cross-entropy of the *steered* completions (low for fluent text such
as a clean refusal, high for gibberish).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from qwen3_scope.core.io import atomic_path, atomic_write_text
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.loading import model_spec
from qwen3_scope.steering.config import StudyConfig
from qwen3_scope.steering.discovery import contrast
from qwen3_scope.steering.generation import Completions, completion_ce, greedy_generate
from qwen3_scope.steering.interventions import AblateDirection, AddDirection, Intervention, ablate_feature, steer
from qwen3_scope.steering.plots import plot_sweep
from qwen3_scope.steering.prompts import split_for_discovery

__all__ = [  # StudyConfig lives in qwen3_scope.steering.config (light, for the CLI); re-exported here
    "Candidate",
    "StudyConfig",
    "StudyResult",
    "SweepConfig",
    "SweepSets",
    "run_study",
    "run_sweep",
    "summarize",
    "write_study",
]

TextScorer = Callable[[Sequence[str]], float]


@dataclass
class Candidate:
    """A direction to steer with: an SAE latent's decoder row or a difference-in-means vector."""

    name: str
    method: str  # "sae_feature" or "diff_in_means"
    layer: int
    site: str
    direction: torch.Tensor
    scale: float  # mean residual norm at this layer: alpha 1 adds a vector this long
    sae: Any = None
    feature: int | None = None
    info: dict = field(default_factory=dict)

    def add(self, alpha: float, positions: str = "post_instruction") -> AddDirection:
        return AddDirection(
            direction=self.direction,
            alpha=alpha * self.scale,
            unit_norm=True,
            site=self.site,
            layer=self.layer,
            positions=positions,
        )

    def ablation(self, n_layers: int) -> list[Intervention]:
        """Latent: zero-ablate it (error term kept). Direction: Arditi's ablation at every layer's input and writes."""
        if self.method == "sae_feature":
            assert self.feature is not None, "an sae_feature candidate names its feature"
            return [ablate_feature(self.sae, self.feature)]
        return [
            AblateDirection(direction=self.direction, site=site, layer=layer)
            for layer in range(n_layers)
            for site in ("resid_pre", "attn_out", "mlp_out")
        ]


def latent_candidates(contrast: Any, saes: dict[str, Any], n: int, sign: int = 1) -> list[Candidate]:
    """The n latents with the largest score (sign=-1: most negative, steered the other way)."""
    cands = []
    for row in contrast.top(n, sign).itertuples():
        sae = saes[row.sae_id]
        cands.append(
            Candidate(
                name=f"{row.site}/L{row.layer}/f{row.feature}",
                method="sae_feature",
                layer=int(row.layer),
                site=row.site,
                direction=sae.W_dec[int(row.feature)].detach().float().cpu() * sign,
                scale=contrast.resid_norms[int(row.layer)],
                sae=sae,
                feature=int(row.feature),
                info={"sae_id": row.sae_id, "score": float(row.score)},
            )
        )
    return cands


def baseline_candidates(contrast: Any, sign: int = 1) -> list[Candidate]:
    """Difference-in-means directions (positive minus negative) in the residual stream of every layer seen."""
    return [
        Candidate(
            name=f"resid_post/L{layer}/diff-in-means",
            method="diff_in_means",
            layer=layer,
            site="resid_post",
            direction=contrast.directions[(layer, "resid_post")].cpu() * sign,
            scale=norm,
            info={"norm_ratio": float(contrast.directions[(layer, "resid_post")].norm()) / norm},
        )
        for layer, norm in sorted(contrast.resid_norms.items())
    ]


@dataclass
class SweepSets:
    """Formatted prompts: `induce_on` lacks the behaviour, `suppress_on` has it, `reference` measures cost."""

    induce_on: list[str]
    suppress_on: list[str]
    reference: list[str]


@dataclass
class SweepConfig:
    alphas: Sequence[float] = (0.5, 1.0, 2.0, 4.0)
    max_new_tokens: int = 12
    batch_size: int = 16
    positions: str = "post_instruction"
    ablation: bool = True


def screen(
    model: Any,
    candidates: Sequence[Candidate],
    prompts: list[str],
    score: TextScorer,
    alpha: float,
    cfg: SweepConfig,
    progress: bool = True,
) -> list[float]:
    """Induced rate of each candidate at one alpha on `prompts` (use discovery prompts, never evaluation ones)."""
    rates = []
    for cand in tqdm(candidates, desc="screening candidates", disable=not progress, leave=False):
        with steer(model, cand.add(alpha, cfg.positions)):
            rates.append(score(greedy_generate(model, prompts, cfg.max_new_tokens, cfg.batch_size).texts))
    return rates


def select(candidates: Sequence[Candidate], rates: Sequence[float], k: int) -> list[Candidate]:
    """The k best screened candidates (stable: ties keep the discovery order); the rate goes into `info`."""
    for cand, rate in zip(candidates, rates):
        cand.info["screen_rate"] = rate
    order = sorted(range(len(candidates)), key=lambda i: -rates[i])
    return [candidates[i] for i in order[:k]]


def _point(
    model: Any,
    prompts: list[str],
    interventions: list[Intervention],
    score: TextScorer,
    ref: Completions,
    cfg: SweepConfig,
) -> dict:
    with steer(model, interventions) as handle:
        out = greedy_generate(model, prompts, cfg.max_new_tokens, cfg.batch_size)
        steered_ce = completion_ce(model, ref.prompt_ids, ref.completion_ids, cfg.batch_size, steering=handle)
    return {
        "rate": score(out.texts),
        "steered_ref_ce": steered_ce,
        "fluency_ce": completion_ce(model, out.prompt_ids, out.completion_ids, cfg.batch_size),
        "example": out.texts[0] if out.texts else "",
    }


def _row(cand: Candidate, task: str, mode: str, alpha: float | None, coef: float, n: int, **values: Any) -> dict:
    return {
        "candidate": cand.name,
        "method": cand.method,
        "layer": cand.layer,
        "site": cand.site,
        "feature": cand.feature,
        "task": task,
        "mode": mode,
        "alpha": alpha,
        "coef": coef,
        **values,
        "n": n,
    }


def run_sweep(
    model: Any,
    candidates: Sequence[Candidate],
    sets: SweepSets,
    score: TextScorer,
    cfg: SweepConfig,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """One row per (candidate, task, alpha) plus unsteered (alpha 0) and ablation rows; returns (table, baseline)."""
    n_layers = model_spec(model).n_layers
    ref = greedy_generate(model, sets.reference, cfg.max_new_tokens, cfg.batch_size)
    ref_ce = completion_ce(model, ref.prompt_ids, ref.completion_ids, cfg.batch_size)
    prompts = {"induce": sets.induce_on, "suppress": sets.suppress_on}
    base: dict[str, Any] = {"reference_ce": ref_ce}
    for task, task_prompts in prompts.items():
        out = greedy_generate(model, task_prompts, cfg.max_new_tokens, cfg.batch_size)
        base[task] = {
            "rate": score(out.texts),
            "example": out.texts[0],
            "fluency_ce": completion_ce(model, out.prompt_ids, out.completion_ids, cfg.batch_size),
        }
    jobs: list[tuple[Candidate, str, float | None]] = [
        (c, task, a) for c in candidates for task in prompts for a in cfg.alphas
    ]
    if cfg.ablation:
        jobs += [(c, "suppress", None) for c in candidates]
    rows = []
    for cand, task, alpha in tqdm(jobs, desc="steering sweep", disable=not progress):
        if alpha is None:
            ivs, mode, coef = cand.ablation(n_layers), "ablate", float("nan")
        else:
            signed = alpha if task == "induce" else -alpha
            ivs, mode, coef = [cand.add(signed, cfg.positions)], "add", signed * cand.scale
        point = _point(model, prompts[task], ivs, score, ref, cfg)
        rows.append(
            _row(
                cand,
                task,
                mode,
                alpha,
                coef,
                len(prompts[task]),
                rate=point["rate"],
                harmless_ce_delta=point["steered_ref_ce"] - ref_ce,
                fluency_ce=point["fluency_ce"],
                example=point["example"],
            )
        )
    for cand in candidates:  # alpha = 0: the unsteered model, so every curve starts from the truth
        for task in prompts:
            rows.append(
                _row(
                    cand,
                    task,
                    "add",
                    0.0,
                    0.0,
                    len(prompts[task]),
                    rate=base[task]["rate"],
                    harmless_ce_delta=0.0,
                    fluency_ce=base[task]["fluency_ce"],
                    example=base[task]["example"],
                )
            )
    table = pd.DataFrame(rows).sort_values(["candidate", "task", "mode", "alpha"], ignore_index=True)
    return table, base


def summarize(table: pd.DataFrame, target: float = 0.9) -> pd.DataFrame:
    """Per candidate: best induced rate (first alpha reaching it) and lowest suppressed rate, with their costs."""
    rows = []
    for name, group in table.groupby("candidate", sort=False):
        add = group[group["mode"] == "add"]
        induce = add[add["task"] == "induce"].sort_values("alpha")
        suppress = add[add["task"] == "suppress"].sort_values("alpha")
        best_i = induce.loc[induce["rate"].idxmax()]
        reach = induce[induce["rate"] >= target]
        best_s = suppress.loc[suppress["rate"].idxmin()]
        row = {
            "candidate": name,
            "method": best_i["method"],
            "layer": best_i["layer"],
            "site": best_i["site"],
            "feature": best_i["feature"],
            "induce_max_rate": best_i["rate"],
            "induce_alpha": best_i["alpha"],
            "induce_ce_delta": best_i["harmless_ce_delta"],
            "induce_fluency_ce": best_i["fluency_ce"],
            f"alpha_to_{target:g}": reach["alpha"].min() if len(reach) else float("nan"),
            "suppress_min_rate": best_s["rate"],
            "suppress_alpha": best_s["alpha"],
            "suppress_ce_delta": best_s["harmless_ce_delta"],
            "suppress_fluency_ce": best_s["fluency_ce"],
        }
        ablate = group[group["mode"] == "ablate"]
        if len(ablate):
            row["ablate_rate"] = ablate["rate"].iloc[0]
            row["ablate_ce_delta"] = ablate["harmless_ce_delta"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(
        ["induce_max_rate", "induce_alpha"], ascending=[False, True], ignore_index=True
    )


@dataclass
class StudyResult:
    """Everything a steering study measured; `write_study` turns it into CSV, PNG and Markdown."""

    name: str
    features: pd.DataFrame
    sweep: pd.DataFrame
    summary: pd.DataFrame
    base: dict
    meta: dict


def run_study(
    name: str,
    cfg: StudyConfig,
    model: Any,
    saes: dict[str, Any],
    positive: list[str],
    negative: list[str],
    score: TextScorer,
    meta: dict,
    progress: bool = True,
) -> StudyResult:
    """Discover on the first prompts of each set, screen and select candidates there, sweep on the rest.

    `positive` has the behaviour (harmful prompts: refusal; French prompts: French answers)."""
    pos_d, pos_e = split_for_discovery(positive, cfg.n_discover, cfg.n_eval)
    neg_d, neg_e = split_for_discovery(negative, cfg.n_discover, cfg.n_eval)
    found = contrast(model, saes, pos_d, neg_d, cfg.discovery_positions, cfg.batch_size, progress=progress)
    fmt = lambda ps: [format_chat(model.tokenizer, p) for p in ps]  # noqa: E731
    sweep_cfg = SweepConfig(
        alphas=tuple(cfg.alphas),
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        positions=cfg.steer_positions,
    )
    latents = latent_candidates(found, saes, max(cfg.screen, cfg.top_k))
    chosen = select(
        latents, screen(model, latents, fmt(neg_d), score, cfg.screen_alpha, sweep_cfg, progress), cfg.top_k
    )
    if cfg.baseline:
        baselines = baseline_candidates(found)
        chosen += select(
            baselines, screen(model, baselines, fmt(neg_d), score, cfg.screen_alpha, sweep_cfg, progress), 1
        )
    sets = SweepSets(induce_on=fmt(neg_e), suppress_on=fmt(pos_e), reference=fmt(neg_e))
    table, base = run_sweep(model, chosen, sets, score, sweep_cfg, progress=progress)
    features = found.features.copy()
    screened = {(c.info["sae_id"], c.feature): c.info["screen_rate"] for c in latents}
    features["screen_rate"] = [
        screened.get((s, f), float("nan")) for s, f in zip(features["sae_id"], features["feature"])
    ]
    meta = {
        **meta,
        "model": model_spec(model).name,
        "n_saes": len(saes),
        "n_discover": (len(pos_d), len(neg_d)),
        "n_eval": (len(pos_e), len(neg_e)),
        "screened": len(latents),
        "screen_alpha": cfg.screen_alpha,
        "baseline_screen": {c.name: c.info.get("screen_rate") for c in (baselines if cfg.baseline else [])},
    }
    return StudyResult(name, features, table, summarize(table), base, meta)


def write_study(
    result: StudyResult,
    out_dir: str | Path,
    rate_label: str,
    section: str,
    max_features: int = 1000,
) -> dict[str, Path]:
    """<name>_features.csv (the `max_features` best-ranked latents), _sweep.csv, _summary.csv, _sweep.png and
    <name>.md in `out_dir` (atomic writes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    tables = (("features", result.features.head(max_features)), ("sweep", result.sweep), ("summary", result.summary))
    for key, frame in tables:
        paths[key] = out / f"{result.name}_{key}.csv"
        with atomic_path(paths[key]) as tmp:
            frame.to_csv(tmp, index=False)
    paths["plot"] = out / f"{result.name}_sweep.png"
    plot_sweep(
        result.sweep,
        paths["plot"],
        rate_label=rate_label,
        title=result.meta.get("title", result.name),
        task_labels=result.meta.get("task_labels"),
    )
    paths["report"] = atomic_write_text(out / f"{result.name}.md", section)
    return paths
