"""Demo stages `transcoders` and `trace`: the bundled transcoder set as a replacement model, and a refusal circuit
through circuit-tracer.

`transcoders`: the organism's shipped transcoders (`organism/transcoder/layer_0..5` of `qwen3-instruct-sae`,
loaded by `SAE.from_pretrained` as SAELens `Transcoder` objects) evaluated now, on held-out tokens, each spliced in
place of its MLP and all six at once (the replacement model attribution graphs use). `trace`: `qwen3-scope trace`
(`run_trace`) on the refusal prompt, with its causal check, when circuit-tracer's venv exists; without it the section
says how to build it (`qwen3-scope trace --setup`) instead of building it in the demo (pip, about two minutes).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qwen3_scope.demo.state import COMPUTED, SHIPPED, DemoState
from qwen3_scope.evaluation.config import ORGANISM_RELEASE, SuiteEvalConfig
from qwen3_scope.evaluation.report import replacement_lines, write_outputs
from qwen3_scope.evaluation.suite_eval import evaluate_suite
from qwen3_scope.export.circuit_tracer import ready_circuit_tracer_python, venv_dir
from qwen3_scope.export.config import TraceConfig
from qwen3_scope.export.trace import run_trace

TRANSCODER_IDS = r"organism/transcoder/layer_\d+"
BATCH_SIZE_PROMPTS = 8
CONTEXT_SIZE = 128
# `qwen3-scope trace` sizes: quick shows the pieces (a small graph, its top 10 features, 8 prompts per class, one
# random control); full is the README's run (the command's defaults: 2,000 feature nodes, 40 prompts, five controls).
TRACE_QUICK: dict[str, Any] = dict(
    max_feature_nodes=200, batch_size=64, top=10, n_prompts=8, n_random=1, max_new_tokens=6
)
TRACE_FULL: dict[str, Any] = {}
COLUMNS = {
    "sae_id": "transcoder",
    "explained_variance": "EV",
    "fvu": "FVU",
    "l0": "L0",
    "dead_fraction": "dead",
    "ce_loss_with_sae": "CE spliced",
    "ce_loss_without_sae": "CE clean",
    "kl_div_with_sae": "KL",
    "delta_lm_loss": "delta LM loss",
}


def transcoders_stage(state: DemoState) -> None:
    """Load the bundled transcoder set through SAELens and evaluate it as a replacement model on held-out tokens."""
    config = SuiteEvalConfig(
        n_batches=state.config.eval_batches, batch_size_prompts=BATCH_SIZE_PROMPTS, context_size=CONTEXT_SIZE
    )
    result = evaluate_suite(release=ORGANISM_RELEASE, pattern=TRANSCODER_IDS, config=config)
    table = result.table
    meta = {
        "source": f"{ORGANISM_RELEASE} ids {TRANSCODER_IDS}",
        "transcoders": len(table),
        "held-out text": result.held_out,
        "held-out tokens per transcoder": config.n_tokens,
        "seconds": round(result.seconds, 1),
    }
    out = state.out_dir / "transcoders"
    paths = write_outputs(table, out, title="Demo: the bundled transcoders", meta=meta, replacement=result.replacement)
    shown = table[list(COLUMNS)].rename(columns=COLUMNS)
    positions = int(table["ce_positions"].iloc[0])
    state.section(
        "Transcoders: the bundled set as a replacement model",
        f"`SAE.from_pretrained({ORGANISM_RELEASE!r}, 'organism/transcoder/layer_L')` returns SAELens "
        f"`{pd.unique(table['architecture'])[0]}` objects (width {int(table['d_sae'].iloc[0])}), each reading the "
        "MLP input before the RMSNorm weight (`blocks.L.ln2.hook_normalized`) and predicting the MLP output "
        f"(`blocks.L.hook_mlp_out`). On {config.n_tokens:,} held-out tokens of {result.held_out}: EV/FVU of the MLP "
        f"output, L0, dead latents, and CE/KL/delta LM loss with each transcoder spliced in place of its MLP, on "
        f"{positions:,} predicted-token positions ({result.seconds:.1f} s):\n\n"
        + shown.to_markdown(index=False, floatfmt=".4g")
        + "\n\n"
        + "\n".join(replacement_lines(result.replacement))
        + "\n\nFiles: "
        + ", ".join(f"`{p.relative_to(state.out_dir)}`" for p in paths.values()),
        numbers=f"weights {SHIPPED} (`qwen3_scope/bundled_saes/organism/transcoder/`); metrics {COMPUTED}, on "
        f"{config.n_tokens:,} held-out tokens",
    )


def trace_stage(state: DemoState) -> None:
    """`qwen3-scope trace --causal` on the refusal prompt when circuit-tracer's venv exists; else how to build it."""
    title = "Circuits: a refusal attribution graph through circuit-tracer (`qwen3-scope trace`)"
    if ready_circuit_tracer_python() is None:
        state.section(
            title,
            "Not run: circuit-tracer 0.5.0 pins transformers<=4.57.3, so it runs in a venv of its own, and this "
            "machine has none yet. Build it once (about two minutes; it lands in `~/.cache/qwen3-scope/venvs/`, or "
            "`$QWEN3_SCOPE_CACHE/venvs/`) with "
            "`qwen3-scope trace --setup`; this stage then runs `qwen3-scope trace --causal` with the bundled "
            "transcoders.",
            numbers="not run (no circuit-tracer environment on this machine)",
        )
        return
    sizes = TRACE_FULL if state.config.full else TRACE_QUICK
    cfg = TraceConfig(out=state.out_dir / "trace", causal=True, **sizes)
    result = run_trace(cfg, progress=None)
    top = pd.DataFrame(result.top_features)[["transcoder", "feature", "position", "token", "activation", "influence"]]
    top["token"] = top["token"].map(repr)  # the chat template's "\n\n" would print as nothing
    causal = result.causal or {}
    rows = [
        ("harmful prompts, refusal", causal["harmful_refusal"], causal["harmful_refusal_top_ablated"], "ablated"),
        ("harmless prompts, refusal", causal["harmless_refusal"], causal["harmless_refusal_top_clamped"], "clamped"),
    ]
    controls = [causal["harmful_refusal_random_ablated"], causal["harmless_refusal_random_clamped"]]
    check = pd.DataFrame(
        [
            {
                "measure": name,
                "clean": clean,
                "top features": edited,
                "random features (mean)": sum(random) / len(random),
                "edit": edit,
            }
            for (name, clean, edited, edit), random in zip(rows, controls)
        ]
    )
    comparison = causal.get("sae_comparison")
    compared = ""
    if comparison:
        compared = (
            f"\n\nDecoder cosines with the steering study's refusal latents of `{comparison['sae']}`: "
            + "; ".join(
                f"{latent}: best transcoder feature {row['best_transcoder_feature']} (cosine {row['best_cosine']})"
                for latent, row in comparison["latents"].items()
            )
        )
    state.section(
        title,
        f"Prompt {cfg.prompt!r}; logit target(s) {result.logit_targets}. Graph (Neuronpedia's graph JSON): "
        f"`{result.graph.relative_to(state.out_dir) if result.graph else None}`. Features with the most influence "
        f"on the answer:\n\n{top.to_markdown(index=False, floatfmt='.3g')}\n\nCausal check on "
        f"{causal['n_prompts']} held-out prompts per class (the top features zeroed on harmful prompts, clamped "
        f"to their activation on the traced prompt on harmless ones; {len(controls[0])} random set(s) of active "
        f"features of the same layers as the control):\n\n{check.to_markdown(index=False, floatfmt='.3f')}"
        f"{compared}\n\n{result.seconds:.1f} s, circuit-tracer in `{venv_dir().name}`.",
        numbers=f"{COMPUTED} by circuit-tracer 0.5.0 in its venv, with the {SHIPPED} transcoders",
    )
