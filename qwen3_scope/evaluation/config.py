"""`SuiteEvalConfig` and the default SAE source of `qwen3-scope eval`, kept free of SAELens, pandas and the models.

Why a module of its own: the CLI builds its parser from these fields before it knows which subcommand runs, so
importing them must not pull in the evaluation machinery (`suite_eval` imports SAELens, pandas, the models).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qwen3_scope.core.config_cli import doc
from qwen3_scope.core.devices import PlacementOptions, dtype_name
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.naming import RELEASE

ORGANISM_RELEASE = RELEASE  # the default source of `qwen3-scope eval`: the organism's SAEs of the bundled release
ORGANISM_PATTERN = "organism/.*"


@dataclass
class SuiteEvalConfig(PlacementOptions):
    """How a suite is evaluated: held-out batches (every SAE sees the same n_batches batches), placement and
    precision, memory bounds. Every field is a `qwen3-scope eval` option.

    Reconstruction (CE/KL) and sparsity/variance metrics both run over all n_batches, so feature density
    is measured over n_batches x batch_size_prompts x context_size tokens minus the special tokens.
    """

    n_batches: int = field(default=8, metadata=doc("number of token batches (ignored with --tokens)", flag="--batches"))
    batch_size_prompts: int = field(default=8, metadata=doc("prompts per batch", flag="--batch-size"))
    context_size: int = field(default=128, metadata=doc("tokens per prompt"))
    dense_threshold: float = field(
        default=0.1, metadata=doc("a latent firing on more than this share of tokens counts as dense")
    )
    share_forward: bool = field(
        default=True,
        metadata=doc(
            "one clean pass per batch shared by every SAE, spliced passes from each SAE's layer; --no-share-forward "
            "(or --plain) runs SAELens' plain run_evals per SAE on the bare model (the baseline)"
        ),
    )
    memory_budget_gb: float = field(
        default=4.0,
        metadata=doc(
            "memory for the cached clean activations; larger suites are evaluated in layer groups", flag="--memory-gb"
        ),
    )
    max_logits_gb: float = field(
        default=0.5,
        metadata=doc(
            "largest block of logits alive at once (batches are cut into chunks of sequences to stay under it)"
        ),
    )
    logits_dtype: str = field(default="float32", metadata=doc("dtype of the log-softmax / CE / KL arithmetic"))
    exclude_special_tokens: bool = field(default=True, metadata=doc("leave Qwen3's control tokens out of every metric"))
    predicted_tokens_only: bool = field(
        default=True,
        metadata=doc(
            "CE, KL and delta LM loss only where a deployed model predicts the next token (assistant turns, plain "
            "text; qwen3_scope.model.loss_mask), never on user-prompt or control tokens; --no-predicted-tokens-only scores "
            "every non-special token (SAELens' default). Needs the shared forward pass."
        ),
    )
    bench: str | None = field(
        default=None,
        metadata=doc(
            "the --out directory of a `qwen3-scope bench` run of the same suite: SAEBench's headline metrics (sparse "
            "probing top-1/top-k, SCR, TPP, absorption, meta-structure, its core numbers) join the table on sae_id "
            "as saebench_* columns, and the report and plots show its table with the baselines (identity, PCA, random)",
            metavar="DIR",
        ),
    )
    progress: bool = field(default=True, metadata=doc("progress bars", cli=False))

    def __post_init__(self) -> None:
        super().__post_init__()  # device and dtype, checked before anything loads
        for name in ("n_batches", "batch_size_prompts", "context_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0 < self.dense_threshold <= 1:
            raise ConfigError(f"dense_threshold must be in (0, 1], got {self.dense_threshold}.")
        if self.memory_budget_gb <= 0 or self.max_logits_gb <= 0:
            raise ConfigError("memory_budget_gb and max_logits_gb must be positive.")
        self.logits_dtype = dtype_name(self.logits_dtype)

    @property
    def n_tokens(self) -> int:
        return self.n_batches * self.batch_size_prompts * self.context_size

    def eval_config(self, reconstruction: bool = True):
        """SAELens' eval config; without `reconstruction` the CE/KL metrics are left to `SuiteReconstruction`."""
        from sae_lens.evals import get_eval_everything_config  # lazy: keeps this CLI config module free of SAELens

        config = get_eval_everything_config(
            batch_size_prompts=self.batch_size_prompts,
            n_eval_reconstruction_batches=self.n_batches,
            n_eval_sparsity_variance_batches=self.n_batches,
        )
        if not reconstruction:
            config = replace(config, compute_kl=False, compute_ce_loss=False)
        return config
