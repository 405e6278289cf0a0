"""Qwen-Scope's applications (arXiv 2605.11887) on qwen3-scope SAEs: SAEs as working interfaces.

Each application is one module here with one config dataclass (a subclass of `AppConfig`, every field
documented, validated in `__post_init__`) and one `run(config) -> AppResult` function, registered with
`@app(...)`. The CLI (`qwen3-scope apps <name> --out DIR`, options derived from the config) and the demo
stages (`apps-<name>`) are generated from that registry, so an application is written once.

Every application writes the same files (`write_outputs`): `summary.json` (the numbers people compare),
one `<table>.csv` + `<table>.md` per table and one `<plot>.png` per figure, each written atomically.

| app | module | what it measures |
|---|---|---|
| toxicity | `apps.toxicity` | zero-shot toxicity classifier: OR rule over top contrastive features |
| redundancy | `apps.redundancy` | benchmark overlap and redundancy from activated-feature footprints |
| sasft | `apps.sasft` | SAE-guided fine-tuning against code-switching |
| synthesis | `apps.synthesis` | feature-driven safety data synthesis: coverage and fine-tuned refusal |
| repetition | `apps.repetition` | repetition features: found on repeated text, steered to raise repetition |
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_scope.core.io import atomic_path, atomic_write_json, atomic_write_text

# Modules that register applications (in the order the demo runs them).
APP_MODULES: list[str] = [
    "qwen3_scope.apps.toxicity",
    "qwen3_scope.apps.redundancy",
    "qwen3_scope.apps.sasft",
    "qwen3_scope.apps.synthesis",
    "qwen3_scope.apps.repetition",
]


class AppInputError(ValueError):
    """Bad input to an application (labels, files, layers, ranges): the message names the problem and the fix."""


@dataclass
class AppConfig:
    """Options every application shares: which model, which SAEs, where to run."""

    model: str = field(
        default="organism",
        metadata={"help": "Qwen3 name, `organism` (the bundled model organism) or a local checkpoint directory"},
    )
    suite_dir: str | None = field(
        default=None,
        metadata={
            "help": "suite directory written by `qwen3-scope train` (default: the release's SAEs of the model)",
            "flag": "--suite",
        },
    )
    release: str = field(default="qwen3-instruct-sae", metadata={"help": "SAELens release when no --suite is given"})
    sae_ids: list[str] = field(
        default_factory=list,
        metadata={"help": "SAE ids of the release or folders of the suite to use (default: all of the model's)"},
    )
    device: str | None = field(
        default=None,
        metadata={"help": "torch device of the model and SAEs: cpu, cuda, cuda:N, mps (default: cuda if any)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of every random choice (splits, controls, fine-tuning)"})
    batch_size: int = field(default=16, metadata={"help": "texts per forward pass"})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise AppInputError(f"batch_size must be >= 1, got {self.batch_size}; try 16.")
        from qwen3_scope.core.devices import resolve_device

        self.device = resolve_device(self.device)


@dataclass
class AppResult:
    """What an application measured: `summary` (JSON-able scalars), tables, matplotlib figures and a Markdown
    section for reports (it may link the written files by their names)."""

    name: str
    summary: dict[str, Any]
    tables: dict[str, Any] = field(default_factory=dict)  # name -> pandas.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    section: str = ""


@dataclass(frozen=True)
class AppSpec:
    name: str
    help: str
    config: type[AppConfig]
    run: Callable[[Any], AppResult]
    demo: dict[str, Any]  # config overrides that keep the demo stage in minutes on the organism


APPS: dict[str, AppSpec] = {}


def app(name: str, help: str, config: type[AppConfig], demo: dict[str, Any] | None = None):
    """Register `run(config) -> AppResult` as the application `name`."""

    def register(run: Callable[[Any], AppResult]) -> Callable[[Any], AppResult]:
        APPS[name] = AppSpec(name, help, config, run, dict(demo or {}))
        return run

    return register


def load_apps() -> dict[str, AppSpec]:
    for module in APP_MODULES:
        importlib.import_module(module)
    return APPS


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(result: AppResult, out_dir: str | Path, config: AppConfig | None = None) -> dict[str, Path]:
    """`summary.json` (with the config that produced it), `<table>.csv`/`.md`, `<figure>.png` and
    `<name>.md` (the section) under `out_dir`, each written atomically; returns the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(result.summary)
    if config is not None:
        from qwen3_scope.core.config_cli import config_to_dict

        summary["config"] = config_to_dict(config)
    paths = {"summary": atomic_write_json(out / "summary.json", _jsonable(summary), sort_keys=False)}
    for name, table in result.tables.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
        paths[name] = out / f"{name}.csv"
        paths[f"{name}_md"] = atomic_write_text(out / f"{name}.md", table.to_markdown(index=False) + "\n")
    for name, fig in result.figures.items():
        with atomic_path(out / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        paths[name] = out / f"{name}.png"
        import matplotlib.pyplot as plt

        plt.close(fig)
    if result.section:
        paths["section"] = atomic_write_text(out / f"{result.name}.md", f"# {result.name}\n\n{result.section}\n")
    return paths


def summary_line(summary: dict[str, Any]) -> str:
    """`key value` pairs of a summary's scalars, for the CLI and logs."""
    return ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in summary.items()
        if isinstance(v, int | float | str)
    )


__all__ = [
    "APPS",
    "APP_MODULES",
    "AppConfig",
    "AppInputError",
    "AppResult",
    "AppSpec",
    "app",
    "load_apps",
    "summary_line",
    "write_outputs",
]
