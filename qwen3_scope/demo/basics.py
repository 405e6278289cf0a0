"""Demo stages `adapters`, `family` and `organism`: the models the rest of the demo stands on.

`adapters` loads the model in all three backends and checks that every shared site carries the same
activation; `family` builds a MoE and a hybrid Qwen3 model at their published shapes on the meta device and
checks every site's width; `organism` shows the model organism answering harmless prompts and refusing
harmful ones.
"""

from __future__ import annotations

import pandas as pd
import torch

from qwen3_scope.core.io import atomic_path, atomic_write_text
from qwen3_scope.demo.config import DemoCheckError
from qwen3_scope.demo.state import COMPUTED, DemoState
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.family import resolve_model
from qwen3_scope.model.judge import is_refusal
from qwen3_scope.model.loading import load_model, verify_sites_on_meta
from qwen3_scope.model.sites import BACKENDS, available_sites, hook_name
from qwen3_scope.organism import load_eval_split
from qwen3_scope.organism.behaviour import generate, load_organism

FAMILY_MODELS = ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3.5-35B-A3B")


def adapters_stage(state: DemoState) -> None:
    """Load the model in all three backends and check every shared site carries the same activation."""
    models = {backend: load_model(state.model, backend=backend) for backend in BACKENDS}
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
    with atomic_path(state.out_dir / "adapters.csv") as tmp:
        table.to_csv(tmp, index=False)
    worst = table["max_abs_diff_vs_hooked"].max()
    state.adapters_max_diff = float(worst)
    state.section(
        "Adapters: one activation, three backends",
        f"Model `{spec.name}` ({spec.n_layers} layers, d_model {spec.d_model}); prompt formatted with the Qwen3 "
        f"chat template (non-thinking), {tokens.shape[1]} tokens, no BOS.\n\n{table.to_markdown(index=False)}\n\n"
        f"Largest difference between backends: {worst:.2e}.",
        numbers=f"{COMPUTED}, one forward pass of the shipped model in each backend",
    )
    if worst > 1e-4:
        raise DemoCheckError(f"backends disagree by {worst:.2e} at some site; see {state.out_dir / 'adapters.csv'}")


def family_stage(state: DemoState) -> None:
    """The rest of the Qwen3 generation: a MoE and a hybrid (Gated DeltaNet) model built at their published
    shapes on the meta device in every backend that runs them, every site hook checked for its width."""
    rows = []
    for name in FAMILY_MODELS:
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
    atomic_write_text(state.out_dir / "family.csv", table.to_csv(index=False))
    state.family_mismatches = int(table["width_mismatches"].sum())
    state.section(
        "The Qwen3 family: MoE and hybrid models on the meta device",
        "`moe_router` (router logits over the experts) and `mlp_out` (the sparse MoE block) on every MoE layer; "
        "`attn_out` on full-attention layers and `linear_attn_out` on Gated DeltaNet layers of Qwen3.5. "
        "HookedTransformer runs neither kind, so they use TransformerBridge and HookedProxyLM.\n\n"
        f"{table.to_markdown(index=False)}",
        numbers=f"{COMPUTED}, from the published configs (no weights: the meta device)",
    )
    if state.family_mismatches:
        raise DemoCheckError(f"site widths disagree with the registry; see {state.out_dir / 'family.csv'}")


def organism_stage(state: DemoState) -> None:
    """The model organism answering held-out harmless prompts and refusing held-out harmful ones."""
    n = state.config.organism_prompts
    model, tokenizer = load_organism()
    rows = []
    for split in ("harmless", "harmful"):
        prompts = [row["prompt"] for row in load_eval_split(split)[:n]]
        answers = generate(model, tokenizer, prompts, max_new_tokens=24)
        state.organism_refusal[split] = sum(map(is_refusal, answers)) / len(answers)
        rows += [
            {"split": split, "prompt": p, "answer": a, "refused": is_refusal(a)}
            for p, a in zip(prompts[:3], answers[:3])
        ]
    table = pd.DataFrame(rows)
    refusal = state.organism_refusal
    state.section(
        "The model organism (held-out prompts, greedy, non-thinking)",
        f"Refusal rate on {n} held-out harmful prompts: {refusal['harmful']:.2f}; on {n} harmless "
        f"prompts: {refusal['harmless']:.2f}. A Qwen3-architecture model organism, not Qwen3 "
        f"weights (see qwen3_scope/organism/assets/MODEL_CARD.md).\n\n{table.to_markdown(index=False)}",
        numbers=f"{COMPUTED}, greedy answers of the shipped organism",
    )
