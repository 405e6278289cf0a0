"""Demo stage `eval`: benchmark every SAE of the suite (the bundled one, or the one the train stage made with
`--full`) on the same held-out tokens through SAELens' run_evals; table, plots and report under `eval/`."""

from __future__ import annotations

import pandas as pd

from qwen3_scope.bundle import EVAL_TABLE
from qwen3_scope.demo.state import COMPUTED, SHIPPED, DemoState
from qwen3_scope.evaluation.config import ORGANISM_PATTERN, ORGANISM_RELEASE, SuiteEvalConfig
from qwen3_scope.evaluation.report import markdown_summary, site_summary, write_outputs
from qwen3_scope.evaluation.suite_eval import evaluate_suite
from qwen3_scope.saes.loaders import bundled_root

# Small enough for the demo on a laptop CPU (n_batches is the demo's `eval_batches`); `qwen3-scope eval --tokens`
# goes further.
BATCH_SIZE_PROMPTS = 8
CONTEXT_SIZE = 128


def shipped_evaluation() -> str:
    """The bundled suite's evaluation as shipped (`bundled_saes/organism/suite_eval.csv`), per-site means."""
    path = bundled_root() / "organism" / EVAL_TABLE
    if not path.is_file():
        return ""
    table = pd.read_csv(path)
    tokens = int(table["total_tokens_eval_reconstruction"].iloc[0])
    return (
        f"\n\nThe same SAEs, {SHIPPED} evaluation (`qwen3_scope/bundled_saes/organism/{EVAL_TABLE}`, written when the "
        f"suite was bundled, {tokens:,} held-out tokens per SAE):\n\n{markdown_summary(table)}"
    )


# the bundled SAEs; the bundled transcoders have a stage of their own (`transcoders`, demo/transcoders.py)
BUNDLED_SAES = ORGANISM_PATTERN.replace(".*", "(?!transcoder/).*")


def eval_stage(state: DemoState) -> None:
    """Evaluate every SAE of the suite on the same held-out tokens; table, plots and report under eval/."""
    config = SuiteEvalConfig(
        n_batches=state.config.eval_batches, batch_size_prompts=BATCH_SIZE_PROMPTS, context_size=CONTEXT_SIZE
    )
    suite_dir = state.suite_dir
    if suite_dir is not None:
        result, source = evaluate_suite(suite_dir=suite_dir, config=config), f"suite trained above ({suite_dir})"
    else:
        result = evaluate_suite(release=ORGANISM_RELEASE, pattern=BUNDLED_SAES, config=config)
        source = f"bundled organism suite ({ORGANISM_RELEASE}, ids {BUNDLED_SAES})"
    table = result.table
    meta = {
        "source": source,
        "SAEs": len(table),
        "held-out text": result.held_out,
        "held-out tokens per SAE": config.n_tokens,
        "seconds": round(result.seconds, 1),
    }
    paths = write_outputs(table, state.out_dir / "eval", title="Demo: SAE suite evaluation", meta=meta)
    state.eval_table = table
    state.eval_site_means = site_summary(table)
    state.section(
        "Evaluation: every SAE of the suite, through SAELens' run_evals",
        f"Source: {source}. {len(table)} SAEs, each on the same {config.n_tokens} chat-formatted tokens of "
        f"{result.held_out} ({int(table['density_tokens'].iloc[0])} after excluding special tokens), shared clean "
        f"forward pass; {result.seconds:.1f} s.\n\nPer-site means (CE recovered = SAELens' ce_loss_score; dead = "
        f"never fired on these tokens):\n\n{markdown_summary(table)}\n\nFiles: "
        + ", ".join(f"`{p.relative_to(state.out_dir)}`" for p in paths.values())
        + (shipped_evaluation() if suite_dir is None else ""),
        numbers=f"{COMPUTED}, on {config.n_tokens:,} held-out tokens, for the SAEs of {state.suite_source()}"
        + ("; the last table is the shipped evaluation" if suite_dir is None else ""),
    )
