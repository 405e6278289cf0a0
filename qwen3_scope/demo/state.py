"""`DemoState`: what the demo's stages hand each other, one typed field per result a stage sets or reads.

A stage reads the resolved `config` (sizes of the quick or full demo) and the fields earlier stages set, sets
its own fields, and adds its report section. A field stays None when its stage did not run (`--stages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qwen3_scope.demo.config import ResolvedDemoConfig

SHIPPED = "shipped"
COMPUTED = "computed now"


@dataclass
class SteerSummaries:
    """The steering stage's results the export stage reads: each study's summary table (one row per candidate:
    method, site, layer, feature, ...), the refusal baseline and the files written."""

    refusal: pd.DataFrame
    language: pd.DataFrame
    refusal_base: Any = None
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class ExportSummary:
    out: Path
    neuronpedia_ids: dict[str, str]
    seconds: float


@dataclass
class DemoState:
    """Passed through the stages in order; `config` is resolved (no size left at None but `train_layers`)."""

    config: ResolvedDemoConfig
    sections: list[str] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    # adapters
    adapters_max_diff: float | None = None
    # family
    family_mismatches: int | None = None
    # organism: refusal rate per split ("harmless", "harmful")
    organism_refusal: dict[str, float] = field(default_factory=dict)
    # train: the suite it trained, and whether later stages use it (else the bundled suite)
    trained_suite_dir: Path | None = None
    suite_dir: Path | None = None
    train_variance_explained: dict[str, float] = field(default_factory=dict)
    # distributed
    distributed_identical: bool | None = None
    # eval
    eval_table: pd.DataFrame | None = None
    eval_site_means: pd.DataFrame | None = None
    # steer
    steer: SteerSummaries | None = None
    # apps-<name>: each application's summary.json
    app_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # export
    export: ExportSummary | None = None
    # real-models
    portable_leaks: list[str] | None = None

    @property
    def out_dir(self) -> Path:
        return self.config.out

    @property
    def model(self) -> str:
        return self.config.model

    def section(self, title: str, body: str, numbers: str | None = None) -> None:
        """Add a report section (and print it); `numbers` says where its numbers come from (shipped artifacts or
        computed now, on what)."""
        text = body.strip() if numbers is None else f"*Numbers: {numbers}.*\n\n{body.strip()}"
        self.sections.append(f"## {title}\n\n{text}\n")
        print(f"\n== {title}\n{text}\n", flush=True)

    def suite_source(self) -> str:
        """Where the SAEs of the later stages come from, for the sections' `numbers` lines."""
        if self.suite_dir is not None:
            return f"the suite trained above (`{self.suite_dir}`)"
        return "the shipped organism and its bundled SAE suite (release `qwen3-instruct-sae`)"
