"""`BenchConfig`: how `qwen3-scope bench` runs SAEBench on a suite (kept free of torch, pandas and `sae_bench`).

Defaults are SAEBench 0.6's own (probe sizes 4000 / 1000, k = 1, 2, 5, SCR/TPP ablation sizes up to 500, 1500
meta-structure steps); the organism and tests use smaller sizes through the options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qwen3_scope.core.config_cli import doc
from qwen3_scope.core.devices import PlacementOptions
from qwen3_scope.core.errors import ConfigError

# the evals `qwen3-scope bench` runs, by SAEBench's eval-type ids (its result JSON's `eval_type_id`)
BENCH_EVALS = ("core", "sparse_probing", "scr", "tpp", "absorption", "meta_structure")
SUPERVISED_EVALS = ("sparse_probing", "scr", "tpp")
# SAEBench 0.6 evals that bench does not run, and why
NOT_RUN = {
    "autointerp": "it asks an LLM judge through the OpenAI API",
    "ravel": "its module lookup and entity datasets target Gemma-2 / Pythia and the hub",
    "unlearning": "it needs the WMDP hub datasets and an instruct model's MMLU answers",
    "mdl": "it is marked experimental in SAEBench and has no result schema in 0.6",
    "sparse_probing_sae_probes": "it needs the sae-probes package's hub datasets",
}


class UnknownEvalError(ConfigError):
    """An eval name SAEBench does not have, or one bench does not run."""


def check_evals(evals: list[str]) -> list[str]:
    """`evals` in SAEBench's ids, each once; a clear error for a name SAEBench lacks or bench does not run."""
    out: list[str] = []
    for name in evals:
        key = name.strip().lower().replace("-", "_")
        if key in NOT_RUN:
            raise UnknownEvalError(
                f"SAEBench's {key!r} eval is not run by qwen3-scope bench: {NOT_RUN[key]}. "
                f"Choose from {', '.join(BENCH_EVALS)}."
            )
        if key not in BENCH_EVALS:
            raise UnknownEvalError(
                f"SAEBench 0.6 has no eval {name!r}; qwen3-scope bench runs {', '.join(BENCH_EVALS)} "
                f"(SAEBench also has {', '.join(NOT_RUN)}, which bench does not run)."
            )
        if key not in out:
            out.append(key)
    if not out:
        raise UnknownEvalError(f"no eval chosen; choose from {', '.join(BENCH_EVALS)}.")
    return out


@dataclass
class BenchConfig(PlacementOptions):
    """One `qwen3-scope bench` run: which SAEBench evals, on which data, at which sizes. Every field is an option."""

    evals: list[str] = field(
        default_factory=lambda: list(BENCH_EVALS),
        metadata=doc("SAEBench evals to run (its eval-type ids)", metavar="EVAL"),
    )
    data: str = field(
        default="auto",
        metadata=doc(
            "labelled data of sparse probing / SCR / TPP: auto (the organism's labelled splits for the organism, "
            "SAEBench's hub datasets otherwise), organism, hub, or a jsonl/json/csv file of `text` + `label` rows"
        ),
    )
    scr_column: str | None = field(
        default=None,
        metadata=doc("with a labelled file: a second column (two values) that SCR correlates with `label`"),
    )
    train_size: int = field(default=4000, metadata=doc("probe train-set size (SAEBench: 4000)"))
    test_size: int = field(default=1000, metadata=doc("probe test-set size (SAEBench: 1000)"))
    context_size: int = field(default=128, metadata=doc("tokens per text (SAEBench: 128)"))
    llm_batch_size: int = field(default=32, metadata=doc("texts per forward pass"))
    sae_batch_size: int = field(default=125, metadata=doc("texts per SAE encoding batch (SAEBench: 125)"))
    core_batches: int = field(default=10, metadata=doc("core: held-out batches (SAEBench: 10)"))
    core_batch_size: int = field(default=16, metadata=doc("core: prompts per batch (SAEBench: 16)"))
    k_values: list[int] = field(
        default_factory=lambda: [1, 2, 5], metadata=doc("sparse probing: latents per k-sparse probe", metavar="K")
    )
    n_values: list[int] = field(
        default_factory=lambda: [2, 5, 10, 20, 50, 100, 500],
        metadata=doc("SCR/TPP: numbers of latents ablated (values above an SAE's width are dropped)", metavar="N"),
    )
    probe_epochs: int = field(default=20, metadata=doc("SCR/TPP: probe epochs (SAEBench: 20)"))
    absorption_max_k: int = field(default=10, metadata=doc("absorption: largest k of its k-sparse probes"))
    absorption_min_letters: int = field(
        default=20,
        metadata=doc("absorption: letters whose first-letter probe must reach F1 0.6 before absorption is measured"),
    )
    absorption_probe_epochs: int = field(default=50, metadata=doc("absorption: k-sparse probe epochs (SAEBench: 50)"))
    meta_train_steps: int = field(default=1500, metadata=doc("meta-structure: training steps (SAEBench: 1500)"))
    meta_batch_size: int = field(default=1024, metadata=doc("meta-structure: decoder rows per step"))
    baselines: bool = field(
        default=False,
        metadata=doc("also bench SAEBench's baselines at each hooked site: identity (the residual), PCA, a random SAE"),
    )
    seed: int = field(default=42, metadata=doc("random seed (SAEBench: 42)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.evals = check_evals(list(self.evals))
        for name in (
            "train_size",
            "test_size",
            "context_size",
            "llm_batch_size",
            "sae_batch_size",
            "core_batches",
            "core_batch_size",
            "probe_epochs",
            "absorption_max_k",
            "absorption_min_letters",
            "absorption_probe_epochs",
            "meta_train_steps",
            "meta_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not self.k_values or min(self.k_values) < 1 or not self.n_values or min(self.n_values) < 1:
            raise ConfigError("k_values and n_values need at least one value, each >= 1.")
        if self.scr_column and self.data in ("auto", "organism", "hub"):
            raise ConfigError("scr_column names a column of a labelled file; give the file with --data FILE.")
