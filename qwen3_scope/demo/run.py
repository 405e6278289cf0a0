"""The README's main job: every capability of qwen3-scope, as an ordered list of stages on the model organism.

Why one job: it is the end-to-end proof that the pieces fit, offline, on a laptop; each capability adds
a stage here instead of living apart. The stages run in the order of `STAGES`, each a function of the
`DemoState` (the resolved `DemoConfig` and the typed results earlier stages set). Every stage writes its
artifacts under the output directory and a section of `report.md`, which says where its numbers come from
(shipped artifacts or computed now) and ends with each stage's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from qwen3_scope.core.io import atomic_write_text
from qwen3_scope.demo import (
    apps,
    basics,
    bench,
    distributed,
    evaluation,
    export,
    real_models,
    steering,
    training,
    transcoders,
)
from qwen3_scope.demo.config import DemoConfig, UnknownStageError
from qwen3_scope.demo.state import DemoState


class Stage(NamedTuple):
    name: str  # what `qwen3-scope demo --stages` takes
    run: Callable[[DemoState], None]


STAGES: list[Stage] = [
    Stage("adapters", basics.adapters_stage),
    Stage("family", basics.family_stage),
    Stage("organism", basics.organism_stage),
    Stage("train", training.train_stage),
    Stage("distributed", distributed.distributed_stage),
    Stage("eval", evaluation.eval_stage),
    Stage("bench", bench.bench_stage),
    Stage("steer", steering.steer_stage),
    Stage("transcoders", transcoders.transcoders_stage),
    Stage("trace", transcoders.trace_stage),
    *(Stage(name, fn) for name, fn in apps.APP_STAGES),  # apps-<name>, one per registered application
    Stage("export", export.export_stage),
    Stage("real-models", real_models.real_models_stage),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def select_stages(names: list[str] | None) -> list[Stage]:
    """The stages named (all when none are), in the demo's order; an unknown name is an `UnknownStageError`."""
    unknown = [n for n in names or [] if n not in stage_names()]
    if unknown:
        raise UnknownStageError(
            f"unknown demo stage(s) {', '.join(unknown)}; valid stages, in order: {', '.join(stage_names())}."
        )
    return [s for s in STAGES if not names or s.name in names]


def intro(state: DemoState) -> str:
    if state.config.full:
        what = (
            "The full demo (`--full`): the train stage trains the whole organism suite (the bundled recipe) and "
            "every later stage uses it, each at its full size: the README's tables."
        )
    else:
        what = (
            "The quick demo: the train stage trains a small suite to show training; the later stages use the "
            "shipped organism and its bundled SAE suite at sizes that show each capability works. `qwen3-scope demo "
            "--full` reproduces the README's tables."
        )
    return (
        f"{what} Each section's *Numbers* line says which numbers come from shipped artifacts and which were "
        "computed in this run; the timings of every stage are at the end."
    )


def timings_section(state: DemoState) -> str:
    total = sum(t["seconds"] for t in state.timings)
    mode = "full (`--full`)" if state.config.full else "quick (the default; `--full` reproduces the README's tables)"
    return f"Demo: {mode}. Total {total:.1f} s.\n\n{pd.DataFrame(state.timings).to_markdown(index=False)}"


def run_demo(config: DemoConfig | None = None, **changes) -> Path:
    """Run the stages of `config` in order and write `report.md`; returns the report's path. `changes` set
    config fields (`run_demo(out=Path("runs/demo"), stages=["adapters"])`)."""
    config = DemoConfig(**changes) if config is None else replace(config, **changes)
    chosen = select_stages(config.stages)  # before anything runs
    state = DemoState(config=config.resolved())
    state.out_dir.mkdir(parents=True, exist_ok=True)
    for stage in chosen:
        start = time.perf_counter()
        stage.run(state)
        state.timings.append({"stage": stage.name, "seconds": round(time.perf_counter() - start, 1)})
        print(f"[demo] stage {stage.name}: {state.timings[-1]['seconds']} s", flush=True)
    state.section("Timings", timings_section(state))
    report = state.out_dir / "report.md"
    atomic_write_text(report, f"# qwen3-scope demo report\n\n{intro(state)}\n\n" + "\n".join(state.sections))
    print(f"report written to {report}")
    return report
