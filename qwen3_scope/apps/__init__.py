"""Qwen-Scope's applications (arXiv 2605.11887) on qwen3-scope SAEs: SAEs as working interfaces.

Each application is one config dataclass (a subclass of `AppConfig`, every field documented, validated in
`__post_init__`, in `apps.config`) and one `run(config) -> AppResult` function (in its own module). `apps.config.APPS`
lists them in order (name, help, config, demo sizes) and `apps.runs.RUNS` maps each name to its `run`: the CLI
(`qwen3-scope apps <name> --out DIR`, options derived from the config) and the demo stages (`apps-<name>`) are
generated from that table, so an application is written once.

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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_scope.apps.config import APPS, AppConfig, AppInputError, AppSpec
from qwen3_scope.core.config_cli import config_to_dict
from qwen3_scope.core.errors import CorruptFileError, MissingFileError
from qwen3_scope.core.io import RowsFileError, atomic_path, atomic_write_json, atomic_write_text, read_rows

# This module and `apps.config` hold what the CLI parser needs (configs, the table of applications); they import no
# torch, transformers, SAELens or pandas, so `import qwen3_scope.apps` stays light. The applications' `run`s are in
# the submodules, reached through `apps.runs`.


def read_data_file(path: str | Path, what: str, expected: str) -> list[Any]:
    """The rows of a user's data file (jsonl/json/csv; `what` names it, `expected` says what a row holds): a missing
    file is a `MissingFileError`, an empty, truncated or corrupt one a `CorruptFileError`, each naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{what} file {path} does not exist; pass a jsonl/json/csv file of {expected}.")
    try:
        rows = read_rows(path)
    except (RowsFileError, ValueError) as err:  # ValueError: UnicodeDecodeError, a CSV parser's error
        detail = str(err).rstrip(".")
        said = f"{what} file {detail}" if str(path) in detail else f"{what} file {path} cannot be read ({detail})"
        raise CorruptFileError(f"{said}; it must be a jsonl/json/csv file of {expected}.") from err
    if not rows:
        raise CorruptFileError(f"{what} file {path} is empty; it needs {expected} (one per line in jsonl).")
    return rows


@dataclass
class AppResult:
    """What an application measured: `summary` (JSON-able scalars), tables, matplotlib figures and a Markdown
    section for reports (it may link the written files by their names)."""

    name: str
    summary: dict[str, Any]
    tables: dict[str, Any] = field(default_factory=dict)  # name -> pandas.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    section: str = ""


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
        import matplotlib.pyplot as plt  # lazy: only with figures; keeps this module (the CLI parser's) light

        plt.close(fig)
    if result.section:
        paths["section"] = atomic_write_text(out / f"{result.name}.md", f"# {result.name}\n\n{result.section}\n")
    return paths


def agg_pyplot() -> Any:
    """`matplotlib.pyplot` with the file-only Agg backend, for the applications' figures."""
    import matplotlib  # lazy: plotting only; choosing Agg at import would change the caller's backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: only after the Agg backend is chosen

    return plt


def summary_line(summary: dict[str, Any]) -> str:
    """`key value` pairs of a summary's scalars, for the CLI and logs."""
    return ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in summary.items()
        if isinstance(v, int | float | str)
    )


__all__ = [
    "APPS",
    "AppConfig",
    "AppInputError",
    "AppResult",
    "AppSpec",
    "agg_pyplot",
    "read_data_file",
    "summary_line",
    "write_outputs",
]
