"""`qwen3-scope trace`: the attribution graph of a prompt through circuit-tracer, with a transcoder set.

The set (the bundled organism transcoders by default) is exported to circuit-tracer's layout
(`export.circuit_tracer`), circuit-tracer runs in its own venv (built on first use), and its `create_graph_files`
writes the graph JSON that Neuronpedia's graph upload accepts. `trace.json` lists the transcoder features with the
most influence on the output logits (circuit-tracer's node influence, as its pruning scores nodes).

Output folder:
    graph/<slug>.json, graph/graph-metadata.json   circuit-tracer's graph files (Neuronpedia's upload format)
    trace.json                                     prompt, tokens, logit targets, top features, versions
    circuit_tracer/                                the exported transcoder set (+ model/ for a local model)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE

from qwen3_scope.core.errors import ConfigError
from qwen3_scope.core.io import atomic_write_json
from qwen3_scope.evaluation.suite_eval import SuiteEntry
from qwen3_scope.export.circuit_tracer import (
    circuit_tracer_python,
    export_transcoder_set,
    run_runner,
    transcoder_entries,
)
from qwen3_scope.export.config import TraceConfig
from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.family import resolve_model
from qwen3_scope.model.judge import refusal_rate
from qwen3_scope.model.loading import load_model, load_tokenizer
from qwen3_scope.model.sites import UnknownHookError, parse_transcoder_hooks, transcoder_hooks
from qwen3_scope.naming import RELEASE
from qwen3_scope.steering.generation import greedy_generate
from qwen3_scope.steering.prompts import organism_split

SET_FOLDER = "circuit_tracer"
TRACE_FILE = "trace.json"


@dataclass
class TraceResult:
    out: Path
    graph: Path | None = None
    top_features: list[dict[str, Any]] = field(default_factory=list)
    logit_targets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    python: Path | None = None
    causal: dict[str, Any] | None = None


def run_trace(cfg: TraceConfig, progress=print) -> TraceResult:
    """Export the set, run circuit-tracer's `attribute` + `create_graph_files` in its venv, summarise the graph."""
    start = time.perf_counter()
    python = circuit_tracer_python(progress)
    if cfg.setup:
        return TraceResult(out=cfg.out, python=python, seconds=time.perf_counter() - start)
    entries = transcoder_entries(cfg.suite, cfg.release, cfg.ids)
    exported = export_transcoder_set(entries, cfg.out / SET_FOLDER, cfg.model)
    spec = resolve_model(cfg.model or exported.model_name)
    tokenizer = load_tokenizer(spec)
    text = format_chat(tokenizer, cfg.prompt)
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    targets = None
    if cfg.target is not None:
        target_ids = tokenizer(cfg.target, add_special_tokens=False)["input_ids"]
        if not target_ids:
            raise ConfigError(f"--target {cfg.target!r} is no token.")
        targets = target_ids[:1]
    job = {
        "tokens": tokens,
        "targets": targets,
        "slug": cfg.slug,
        "max_feature_nodes": cfg.max_feature_nodes,
        "batch_size": cfg.batch_size,
        "node_threshold": cfg.node_threshold,
        "edge_threshold": cfg.edge_threshold,
        "top": cfg.top,
    }
    model = exported.model_folder if exported.model_folder is not None else spec.source
    with tempfile.TemporaryDirectory(prefix="qwen3-scope-trace-") as work:  # the request holds local paths
        result = run_runner(python, {"model": str(model), "transcoders": str(exported.out), "graph": job}, Path(work))
        graph_dir = cfg.out / "graph"
        graph_dir.mkdir(parents=True, exist_ok=True)
        for file in (Path(work) / "graph").iterdir():
            shutil.copy2(file, graph_dir / file.name)
    graph = result["graph"]
    top = []
    for row in graph["top_features"]:
        top.append(
            {
                **row,
                "transcoder": exported.ids[row["layer"]],
                "token": tokenizer.decode([tokens[row["position"]]]),
            }
        )
    logit_targets = [tokenizer.decode([t]) for t in graph["logit_targets"]]
    causal = causal_check(cfg, entries, top, tokens) if cfg.causal else None
    atomic_write_json(
        cfg.out / TRACE_FILE,
        {
            "prompt": cfg.prompt,
            "text": text,
            "tokens": tokens,
            "scan": exported.scan,
            "transcoders": exported.ids,
            "graph": graph["file"],
            "logit_targets": logit_targets,
            "logit_probabilities": graph["logit_probabilities"],
            "n_active_features": graph["n_active_features"],
            "top_features": top,
            "versions": {k: result[k] for k in ("circuit_tracer", "transformers", "torch")},
            "causal": causal,
        },
    )
    return TraceResult(
        out=cfg.out,
        graph=cfg.out / graph["file"],
        top_features=top,
        logit_targets=logit_targets,
        seconds=time.perf_counter() - start,
        python=python,
        causal=causal,
    )


# ---- the causal check, in our environment (HookedSAETransformer, every transcoder spliced with its error term) ------

FeatureSet = dict[int, dict[int, float]]  # layer -> {feature: clamp value}


def _acts_hook(layer: int) -> str:
    return f"{transcoder_hooks(layer, 'hooked')[1]}.hook_sae_acts_post"  # where add_sae puts the transcoder's hooks


def _edit_hooks(features: FeatureSet, clamp: bool) -> list[tuple[str, Any]]:
    """Hooks that zero (or clamp to their value) the given features at every position."""
    hooks = []
    for layer, chosen in features.items():
        index = torch.tensor(sorted(chosen))
        values = torch.tensor([chosen[f] for f in sorted(chosen)])

        def edit(acts: torch.Tensor, hook: Any = None, index=index, values=values) -> torch.Tensor:
            acts[..., index] = values.to(acts.dtype) if clamp else 0.0
            return acts

        hooks.append((_acts_hook(layer), edit))
    return hooks


def _refusal(model: Any, prompts: list[str], hooks: list[tuple[str, Any]], cfg: TraceConfig) -> float:
    with model.hooks(fwd_hooks=hooks):
        return refusal_rate(greedy_generate(model, prompts, max_new_tokens=cfg.max_new_tokens).texts)


def _decoder_comparison(cfg: TraceConfig, entries: list[SuiteEntry], top: FeatureSet) -> dict[str, Any] | None:
    """Cosines between the decoder rows of the top transcoder features and of the steering study's refusal latents
    (an SAE on the same layer's MLP output: both write the same space)."""
    if not cfg.compare_sae:
        return None
    sae = SAE.from_pretrained(cfg.release or RELEASE, cfg.compare_sae)
    layer = int(cfg.compare_sae.rsplit("_", 1)[1])
    if transcoder_hooks(layer, "hooked")[1] != sae.cfg.metadata.hook_name:
        return None
    latents = [int(x) for x in cfg.compare_latents.split(",") if x.strip()]
    tc = next(e.sae for e in entries if e.sae.cfg.metadata.hook_name_out == sae.cfg.metadata.hook_name)
    tc_dirs = torch.nn.functional.normalize(tc.W_dec.detach(), dim=-1)
    sae_dirs = torch.nn.functional.normalize(sae.W_dec.detach()[latents], dim=-1)
    cos = sae_dirs @ tc_dirs.T  # (latents, d_transcoder)
    rows = {}
    for i, latent in enumerate(latents):
        best = int(cos[i].abs().argmax())
        rows[f"f{latent}"] = {
            "best_transcoder_feature": best,
            "best_cosine": round(float(cos[i, best]), 3),
            "best_is_top": best in top.get(layer, {}),
            "top_features_cosine": {str(f): round(float(cos[i, f]), 3) for f in sorted(top.get(layer, {}))},
        }
    return {"sae": cfg.compare_sae, "layer": layer, "latents": rows}


def causal_check(cfg: TraceConfig, entries: list[SuiteEntry], top: list[dict], tokens: list[int]) -> dict[str, Any]:
    """Ablate the top features on harmful prompts (refusal should fall) and clamp them to their activation on the
    traced prompt on harmless prompts (refusal should rise), against `n_random` sets of random features active on
    the traced prompt with the same layer counts; refusal by the judge on greedy completions."""
    spec = resolve_model(cfg.model or str(entries[0].sae.cfg.metadata.model_name))
    for entry in entries:
        meta = entry.sae.cfg.metadata
        try:
            parse_transcoder_hooks(str(meta.hook_name), str(meta.hook_name_out), "hooked")
        except UnknownHookError as err:
            raise ConfigError(
                f"--causal splices the transcoders into HookedSAETransformer; {entry.sae_id} is not a hooked-backend "
                f"transcoder ({err})"
            ) from err
    model = load_model(spec, backend="hooked")
    for entry in entries:
        model.add_sae(entry.sae, use_error_term=True)  # the clean model until a feature is edited
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([tokens]), names_filter=lambda n: n.endswith("hook_sae_acts_post"))
    peak = {layer: cache[_acts_hook(layer)][0, 1:].max(0).values for layer in range(spec.n_layers)}
    chosen: FeatureSet = {}
    for row in top:
        chosen.setdefault(row["layer"], {})[row["feature"]] = float(peak[row["layer"]][row["feature"]])
    generator = torch.Generator().manual_seed(cfg.seed)
    controls: list[FeatureSet] = []
    for _ in range(cfg.n_random):
        control: FeatureSet = {}
        for layer, feats in chosen.items():
            pool = [f for f in (peak[layer] > 0).nonzero().flatten().tolist() if f not in feats]
            picks = torch.randperm(len(pool), generator=generator)[: len(feats)].tolist()
            control[layer] = {pool[i]: float(peak[layer][pool[i]]) for i in picks}
        controls.append(control)
    rows = [r for r in organism_split("harmful") if r.get("lang") == "en"][-cfg.n_prompts :]
    harmful = [format_chat(model.tokenizer, r["prompt"]) for r in rows]
    rows = [r for r in organism_split("harmless") if r.get("lang") == "en"][-cfg.n_prompts :]
    harmless = [format_chat(model.tokenizer, r["prompt"]) for r in rows]
    with torch.no_grad():
        result = {
            "features": {str(layer): sorted(feats) for layer, feats in chosen.items()},
            "n_prompts": len(harmful),
            "harmful_refusal": _refusal(model, harmful, [], cfg),
            "harmful_refusal_top_ablated": _refusal(model, harmful, _edit_hooks(chosen, clamp=False), cfg),
            "harmful_refusal_random_ablated": [_refusal(model, harmful, _edit_hooks(c, False), cfg) for c in controls],
            "harmless_refusal": _refusal(model, harmless, [], cfg),
            "harmless_refusal_top_clamped": _refusal(model, harmless, _edit_hooks(chosen, clamp=True), cfg),
            "harmless_refusal_random_clamped": [_refusal(model, harmless, _edit_hooks(c, True), cfg) for c in controls],
        }
    model.reset_saes()
    result["sae_comparison"] = _decoder_comparison(cfg, entries, chosen)
    return result
