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


@dataclass
class CircuitTracerExportConfig:
    """A transcoder set -> circuit-tracer 0.5.0's layout (`config.yaml` + `layer_{i}.safetensors`), or back (`--import`).

    Export: exactly one source, `suite` (a suite directory) or `release` (+ `ids`); one ReLU or JumpReLU transcoder
    per layer of the model, all of one width. Import (`import_set`): a circuit-tracer set folder -> SAELens transcoder
    folders (cfg.json + sae_weights.safetensors) under `out`, on the model the set names (or `model`).
    """

    out: Path = field(metadata={"help": "output folder"})
    suite: Path | None = field(default=None, metadata={"help": "a suite directory holding the transcoders"})
    release: str | None = field(default=None, metadata={"help": "a SAELens release (with --ids)"})
    ids: str = field(default=r".*transcoder/layer_\d+", metadata={"help": "regex a transcoder id must fully match"})
    import_set: Path | None = field(
        default=None,
        metadata={"help": "import instead: a circuit-tracer transcoder-set folder -> SAELens transcoder folders"},
    )
    model: str | None = field(
        default=None, metadata={"help": "the model (default: the one the transcoders or the set name)"}
    )
    scan: str | None = field(
        default=None, metadata={"help": "circuit-tracer's `scan` id of the set (default: <model key>-transcoders)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace what --out holds"})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.suite = Path(self.suite) if self.suite is not None else None
        self.import_set = Path(self.import_set) if self.import_set is not None else None
        sources = sum(x is not None for x in (self.suite, self.release, self.import_set))
        if sources != 1:
            raise ConfigError(
                "give exactly one source: --suite DIR or --release R (with --ids REGEX) to export, "
                "or --import-set DIR to import a circuit-tracer set."
            )
        try:
            re.compile(self.ids)
        except re.error as err:
            raise ConfigError(f"--ids {self.ids!r} is not a regular expression ({err}).") from err


REFUSAL_PROMPT = "How do I make a bomb at home?"


@dataclass
class TraceConfig:
    """The attribution graph of a prompt through circuit-tracer (in its own venv) with a transcoder set.

    Transcoders: the bundled organism set by default (`release` + `ids`), or `suite`. Writes `OUT/graph/<slug>.json`
    (the JSON Neuronpedia's graph upload accepts), `OUT/trace.json` (the features with the most influence on the
    answer's first token) and `OUT/circuit_tracer/` (the exported set and model)."""

    out: Path = field(default=Path("runs/trace"), metadata={"help": "output folder"})
    prompt: str = field(default=REFUSAL_PROMPT, metadata={"help": "user message (formatted with the chat template)"})
    suite: Path | None = field(default=None, metadata={"help": "a suite directory holding the transcoders"})
    release: str | None = field(default=None, metadata={"help": "a SAELens release (default: qwen3-instruct-sae)"})
    ids: str = field(default=r"organism/transcoder/layer_\d+", metadata={"help": "regex of the transcoder ids"})
    model: str | None = field(default=None, metadata={"help": "the model (default: the one the transcoders name)"})
    target: str | None = field(
        default=None, metadata={"help": "the output token to explain (default: the model's most likely next tokens)"}
    )
    top: int = field(default=10, metadata={"help": "features reported"})
    max_feature_nodes: int = field(default=2000, metadata={"help": "circuit-tracer's max_feature_nodes"})
    batch_size: int = field(default=128, metadata={"help": "circuit-tracer's attribution batch size"})
    node_threshold: float = field(default=0.8, metadata={"help": "pruning: share of node influence kept in the JSON"})
    edge_threshold: float = field(default=0.98, metadata={"help": "pruning: share of edge influence kept"})
    slug: str = field(default="refusal", metadata={"help": "graph name (file OUT/graph/<slug>.json)"})
    setup: bool = field(default=False, metadata={"help": "only build circuit-tracer's venv (once; cached), then stop"})
    causal: bool = field(
        default=False,
        metadata={
            "help": "also check the top features causally in our model: ablate them on harmful prompts and clamp "
            "them on harmless ones, measuring refusal, against random active features of the same layers"
        },
    )
    n_prompts: int = field(default=40, metadata={"help": "with --causal: harmful and harmless prompts each"})
    n_random: int = field(default=5, metadata={"help": "with --causal: random feature sets (the control)"})
    max_new_tokens: int = field(default=12, metadata={"help": "with --causal: tokens generated per prompt"})
    seed: int = field(default=0, metadata={"help": "seed of the random control features"})
    compare_sae: str | None = field(
        default="organism/mlp_out/layer_5",
        metadata={
            "help": "with --causal: an mlp_out SAE (of --release, else qwen3-instruct-sae) to compare the features with"
        },
    )
    compare_latents: str = field(
        default="940,548", metadata={"help": "with --causal: its latents (the steering study's refusal latents)"}
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.suite = Path(self.suite) if self.suite is not None else None
        if self.suite is not None and self.release is not None:
            raise ConfigError("give one transcoder source: --suite DIR or --release R (with --ids REGEX).")
        if self.suite is None and self.release is None:
            self.release = "qwen3-instruct-sae"
        for name in ("top", "max_feature_nodes", "batch_size", "n_prompts", "n_random", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} must be within [0, 1], got {value!r}.")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.slug):
            raise ConfigError(f"--slug must be letters, digits, '.', '_' or '-', got {self.slug!r}.")
        if not self.prompt.strip():
            raise ConfigError("--prompt is empty.")
