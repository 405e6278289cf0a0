"""`ExportConfig` and `UploadConfig`: the configurations of a dashboard export and of a Hub upload (the CLI is
derived from their fields). Kept free of torch, SAELens and the models, so the CLI parser imports them cheaply."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from qwen3_scope.core.errors import ConfigError


@dataclass
class ExportConfig:
    """Feature dashboards for every SAE of a suite, from one pass of the model over the token dataset.

    Exactly one source: `suite` (a suite directory) or `release` (+ `ids`, a regex an SAE id must fully match).
    """

    out: Path = field(
        default=Path("runs/export"), metadata={"help": "output folder (saedashboard/, neuronpedia/, viewer/)"}
    )
    suite: Path | None = field(
        default=None, metadata={"help": "a suite directory (SAE folders with cfg.json + sae_weights.safetensors)"}
    )
    release: str | None = field(default=None, metadata={"help": "a SAELens release (with --ids)"})
    ids: str = field(default=".*", metadata={"help": "regex an SAE id must fully match"})
    model: str | None = field(default=None, metadata={"help": "model to run (default: the one the SAEs name)"})
    texts: Path | None = field(
        default=None,
        metadata={
            "help": "token dataset: .jsonl/.json/.parquet/.txt as training reads it "
            "(default: the organism's held-out text, or the suite's held-out documents)"
        },
    )
    n_prompts: int = field(default=256, metadata={"help": "prompts (windows of --context tokens) in the dataset"})
    context: int = field(default=128, metadata={"help": "tokens per prompt"})
    batch_prompts: int = field(
        default=32, metadata={"help": "prompts per forward pass (lowered automatically for very wide SAEs)"}
    )
    n_top: int = field(default=20, metadata={"help": "top activating contexts per feature"})
    n_intervals: int = field(default=5, metadata={"help": "equal-width activation intervals of (0, max]"})
    n_per_interval: int = field(default=5, metadata={"help": "contexts sampled per interval"})
    n_bins: int = field(default=50, metadata={"help": "histogram bins (activations and logit effects)"})
    n_logits: int = field(default=10, metadata={"help": "top and bottom logit effects listed per feature"})
    n_rows: int = field(default=3, metadata={"help": "rows of the neuron-alignment / correlation tables"})
    window_before: int | None = field(
        default=24, metadata={"help": "tokens kept before the qualifying token in a record (None: whole prompt)"}
    )
    window_after: int | None = field(
        default=8, metadata={"help": "tokens kept after the qualifying token in a record (None: whole prompt)"}
    )
    features_per_batch: int = field(default=128, metadata={"help": "features per batch-{i}.json file"})
    seed: int = field(default=0, metadata={"help": "seed of the interval sampling"})
    device: str = field(default="cpu", metadata={"help": "torch device for the model and SAEs"})
    dtype: str = field(default="float32", metadata={"help": "model/SAE dtype for the pass (float32, bfloat16)"})
    dataset_name: str | None = field(
        default=None, metadata={"help": "dataset name written into the export (default: where the tokens came from)"}
    )
    html: bool = field(default=False, metadata={"help": "also write the offline viewer (viewer/index.html)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an export of another suite in --out"})
    progress: bool = field(default=True, metadata={"help": "progress bars", "cli": False})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.suite = Path(self.suite) if self.suite is not None else None
        self.texts = Path(self.texts) if self.texts is not None else None
        if (self.suite is None) == (self.release is None):
            raise ConfigError("give exactly one SAE source: --suite DIR, or --release R (with --ids REGEX).")
        try:
            re.compile(self.ids)
        except re.error as err:
            raise ConfigError(f"--ids {self.ids!r} is not a regular expression ({err}).") from err
        positive = (
            "n_prompts",
            "context",
            "batch_prompts",
            "n_top",
            "n_intervals",
            "n_per_interval",
            "n_bins",
            "n_logits",
            "n_rows",
            "features_per_batch",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("window_before", "window_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name} must be a non-negative integer or None, got {value!r}.")
        if self.context < 2:
            raise ConfigError(f"--context must be at least 2 tokens, got {self.context}.")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"--dtype must be float32, bfloat16 or float16, got {self.dtype!r}.")

    def settings(self) -> dict:
        """The settings that define the export's content (what a resumed run must match)."""
        keep = (
            "n_prompts",
            "context",
            "n_top",
            "n_intervals",
            "n_per_interval",
            "n_bins",
            "n_logits",
            "n_rows",
            "window_before",
            "window_after",
            "features_per_batch",
            "seed",
            "dtype",
        )
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in keep}


_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass
class UploadConfig:
    """Upload one suite (a suite directory, or a release + id regex) to a Hub model repo."""

    repo: str = field(metadata={"help": "Hub repo id USER/NAME"})
    suite: Path | None = field(
        default=None, metadata={"help": "suite directory (the positional SUITE_DIR)", "cli": False}
    )
    release: str | None = field(default=None, metadata={"help": "SAELens release (with --ids)"})
    ids: str = field(default=".*", metadata={"help": "regex an SAE id must fully match"})
    revision: str | None = field(default=None, metadata={"help": "branch to commit to (default: main)"})
    dry_run: Path | None = field(
        default=None, metadata={"help": "write the exact tree (and API payloads) here instead of pushing"}
    )
    release_name: str | None = field(
        default=None, metadata={"help": "release name in the entry (default: the repo name)"}
    )
    neuronpedia_api: Path | None = field(
        default=None,
        metadata={"help": "a dashboard export folder: build Neuronpedia feature/upload-batch payloads from it"},
    )
    eval_batches: int = field(default=4, metadata={"help": "held-out batches of the evaluation behind the model card"})
    model: str | None = field(default=None, metadata={"help": "model to evaluate on (default: the one the SAEs name)"})
    device: str = field(default="cpu", metadata={"help": "torch device"})

    def __post_init__(self) -> None:
        if (
            not isinstance(self.repo, str)
            or not _REPO.match(self.repo)
            or ".." in self.repo
            or self.repo.endswith((".git", "."))
        ):
            raise ConfigError(
                f"--repo {self.repo!r} is not a Hub repo id; it must look like USER/NAME (letters, digits, '-', '_', '.')."
            )
        if (self.suite is None) == (self.release is None):
            raise ConfigError("give exactly one SAE source: SUITE_DIR, or --release R (with --ids REGEX).")
        self.suite = Path(self.suite) if self.suite is not None else None
        self.dry_run = Path(self.dry_run) if self.dry_run is not None else None
        self.neuronpedia_api = Path(self.neuronpedia_api) if self.neuronpedia_api is not None else None
        if self.eval_batches < 1:
            raise ConfigError(f"--eval-batches must be positive, got {self.eval_batches}.")
        self.release_name = self.release_name or self.repo.split("/")[1]
