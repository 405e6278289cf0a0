"""The README's main job: every capability of qwen3-scope, as stages run in order on the model organism.

Why one job: it is the end-to-end proof that the pieces fit, offline, on a laptop; each capability adds
a stage here instead of living apart. Every stage writes its artifacts under the output directory and a
section of `report.md`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from qwen3_scope.core.io import atomic_path, atomic_write_text


@dataclass
class DemoContext:
    out_dir: Path
    model: str
    sections: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def section(self, title: str, body: str) -> None:
        self.sections.append(f"## {title}\n\n{body.strip()}\n")
        print(f"\n== {title}\n{body.strip()}\n", flush=True)


Stage = Callable[[DemoContext], None]
STAGES: dict[str, Stage] = {}


def stage(name: str) -> Callable[[Stage], Stage]:
    def register(fn: Stage) -> Stage:
        STAGES[name] = fn
        return fn

    return register


@stage("adapters")
def adapters_stage(ctx: DemoContext) -> None:
    """Load the model in all three backends and check every shared site carries the same activation."""
    from qwen3_scope.model.chat import format_chat
    from qwen3_scope.model.loading import load_model
    from qwen3_scope.model.sites import BACKENDS, available_sites, hook_name

    models = {backend: load_model(ctx.model, backend=backend) for backend in BACKENDS}
    spec = models["hooked"].qwen3_spec
    text = format_chat(models["hooked"].tokenizer, "What is two plus three?")
    tokens = torch.tensor([models["hooked"].tokenizer(text)["input_ids"]])
    shared_sites = [
        s for s in available_sites("hf") if s in available_sites("bridge") and s in available_sites("hooked")
    ]
    caches = {}
    for backend, model in models.items():
        names = [hook_name(s, layer, backend, spec) for layer in range(spec.n_layers) for s in shared_sites]
        with torch.no_grad():
            caches[backend] = model.run_with_cache(tokens, names_filter=names)[1]
    rows = []
    for site in shared_sites:
        for backend in ("bridge", "hf"):
            diff = max(
                (
                    caches[backend][hook_name(site, layer, backend, spec)]
                    - caches["hooked"][hook_name(site, layer, "hooked", spec)]
                )
                .abs()
                .max()
                .item()
                for layer in range(spec.n_layers)
            )
            rows.append({"site": site, "backend": backend, "layers": spec.n_layers, "max_abs_diff_vs_hooked": diff})
    table = pd.DataFrame(rows)
    with atomic_path(ctx.out_dir / "adapters.csv") as tmp:
        table.to_csv(tmp, index=False)
    worst = table["max_abs_diff_vs_hooked"].max()
    ctx.results["adapters_max_diff"] = worst
    ctx.section(
        "Adapters: one activation, three backends",
        f"Model `{spec.name}` ({spec.n_layers} layers, d_model {spec.d_model}); prompt formatted with the Qwen3 "
        f"chat template (non-thinking), {tokens.shape[1]} tokens, no BOS.\n\n{table.to_markdown(index=False)}\n\n"
        f"Largest difference between backends: {worst:.2e}.",
    )
    if worst > 1e-4:
        raise RuntimeError(f"backends disagree by {worst:.2e} at some site; see {ctx.out_dir / 'adapters.csv'}")


@stage("family")
def family_stage(ctx: DemoContext) -> None:
    """The rest of the Qwen3 generation: a MoE and a hybrid (Gated DeltaNet) model built at their published
    shapes on the meta device in every backend that runs them, every site hook checked for its width."""
    from qwen3_scope.model.family import resolve_model
    from qwen3_scope.model.loading import verify_sites_on_meta

    rows = []
    for name in ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3.5-35B-A3B"):
        spec = resolve_model(name)
        for row in verify_sites_on_meta(name):
            rows.append(
                {
                    "model": name,
                    "kind": spec.kind,
                    "layers": spec.n_layers,
                    "backend": row["backend"],
                    "site_hooks": row["site_hooks"],
                    "width_mismatches": len(row["mismatches"]),
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(ctx.out_dir / "family.csv", index=False)
    ctx.results["family_mismatches"] = int(table["width_mismatches"].sum())
    ctx.section(
        "The Qwen3 family: MoE and hybrid models on the meta device",
        "`moe_router` (router logits over the experts) and `mlp_out` (the sparse MoE block) on every MoE layer; "
        "`attn_out` on full-attention layers and `linear_attn_out` on Gated DeltaNet layers of Qwen3.5. "
        "HookedTransformer runs neither kind, so they use TransformerBridge and HookedProxyLM.\n\n"
        f"{table.to_markdown(index=False)}",
    )
    if ctx.results["family_mismatches"]:
        raise RuntimeError(f"site widths disagree with the registry; see {ctx.out_dir / 'family.csv'}")


# Modules that add stages (in pipeline order) with the `@stage` decorator; imported before a run.
STAGE_MODULES: list[str] = [
    "qwen3_scope.demo.training",
    "qwen3_scope.demo.distributed",
    "qwen3_scope.demo.evaluation",
    "qwen3_scope.demo.steering",
    "qwen3_scope.demo.apps",
    "qwen3_scope.demo.export",
    "qwen3_scope.demo.real_models",
]


@stage("organism")
def organism_stage(ctx: DemoContext) -> None:
    """The model organism answering held-out harmless prompts and refusing held-out harmful ones."""
    from qwen3_scope.model.judge import is_refusal
    from qwen3_scope.organism import load_eval_split
    from qwen3_scope.organism.behaviour import generate, load_organism

    model, tokenizer = load_organism()
    rows = []
    for split in ("harmless", "harmful"):
        prompts = [row["prompt"] for row in load_eval_split(split)[:32]]
        answers = generate(model, tokenizer, prompts, max_new_tokens=24)
        ctx.results[f"organism_refusal_{split}"] = sum(map(is_refusal, answers)) / len(answers)
        rows += [
            {"split": split, "prompt": p, "answer": a, "refused": is_refusal(a)}
            for p, a in zip(prompts[:3], answers[:3])
        ]
    table = pd.DataFrame(rows)
    ctx.section(
        "The model organism (held-out prompts, greedy, non-thinking)",
        f"Refusal rate on 32 held-out harmful prompts: {ctx.results['organism_refusal_harmful']:.2f}; on 32 harmless "
        f"prompts: {ctx.results['organism_refusal_harmless']:.2f}. A Qwen3-architecture model organism, not Qwen3 "
        f"weights (see qwen3_scope/organism/assets/MODEL_CARD.md).\n\n{table.to_markdown(index=False)}",
    )


def run_demo(out_dir: Path, model: str = "organism", stages: list[str] | None = None) -> Path:
    """Run the stages in order and write `report.md`; returns the report's path."""
    import importlib

    for module in STAGE_MODULES:
        importlib.import_module(module)
    unknown = sorted(set(stages or []) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown demo stage(s) {unknown}; available: {', '.join(STAGES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out_dir=out_dir, model=model)
    timings = []
    for name, fn in STAGES.items():
        if stages and name not in stages:
            continue
        start = time.perf_counter()
        fn(ctx)
        timings.append({"stage": name, "seconds": round(time.perf_counter() - start, 1)})
    ctx.section("Timings", pd.DataFrame(timings).to_markdown(index=False))
    report = out_dir / "report.md"
    atomic_write_text(report, "# qwen3-scope demo report\n\n" + "\n".join(ctx.sections))
    print(f"report written to {report}")
    return report
