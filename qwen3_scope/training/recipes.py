"""Training recipes: every hyperparameter of a suite of SAEs, with where it comes from, as SAELens configs.

Why recipes: reproducing "an SAE at every layer and site" means hundreds of SAELens configs that must
agree with each other and with the source paper. A recipe is the one place that says which values are
used, and why; `build_suite` turns it, a model and a layer/site subset into SAELens' own config objects
(`LanguageModelSAERunnerConfig` per SAE, `MultiSAETrainingRunnerConfig` per group of SAEs), which
SAELens' runners accept unchanged.

Recipes:
- ``paper``: JumpReLU SAEs in the Gemma Scope style, as the Qwen3-Instruct SAE paper trains them:
  1.7B and 4B at every layer x {resid_post, mlp_out, attn_out}; 8B resid_post at layers 0-8 at width
  65,536 with L0 about 160. Width 16 x d_in everywhere (so 32,768 for 1.7B, 40,960 for 4B, 65,536 for
  8B) and the target L0 160 everywhere, the only width/L0 pair the paper reports; JumpReLU trained with
  the quadratic L0 penalty around a target (Gemma Scope 2's way of hitting a given L0).
- ``qwen-scope``: TopK (k = 50 or 100), width 16 x d_model, AuxK dead-latent loss with weight 1/32,
  extreme-norm activations filtered out, residual stream (Qwen-Scope, arXiv 2605.11887).

Every value carries a source: a paper, "SAELens default", or "ours" with the reason. Source papers were
read through the project's FIELD_NOTES and our knowledge of the Gemma Scope report (arXiv 2408.05147);
values marked with it are as we know them from that report. Models with d_model < 1024 (the model
organism, test models) use the ``small`` scale: same method, sizes that train in minutes on a laptop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pandas as pd
from sae_lens import (
    LanguageModelSAERunnerConfig,
    LoggingConfig,
    MultiSAETrainingRunnerConfig,
)
from sae_lens.registry import SAE_TRAINING_CLASS_REGISTRY, get_sae_training_class

from qwen3_scope.core.portable import portable_model_name
from qwen3_scope.model.family import Qwen3ModelSpec, resolve_model
from qwen3_scope.model.sites import (
    PAPER_SITES,
    available_sites,
    check_site,
    hook_name,
    layer_sites,
    site_d_in,
    transcoder_hooks,
)
from qwen3_scope.naming import TRANSCODER, sae_id, sparsity_variant, suite_name
from qwen3_scope.saes.transcoders import TRANSCODER_KINDS, transcoder_architecture
from qwen3_scope.training.config import (
    ARCHITECTURE_SPARSITY,
    RECIPE_NAMES,
    RecipeConfigError,
    SuiteTrainingConfig,
    UnknownRecipeError,
)
from qwen3_scope.training.config import (
    TRANSCODER_KINDS as CONFIG_TRANSCODER_KINDS,
)
from qwen3_scope.training.stream import pair_key

GEMMA_SCOPE = "Gemma Scope report (Lieberum et al. 2024, arXiv 2408.05147)"
GEMMA_SCOPE_2 = "Gemma Scope 2 (SAELens: jumprelu_sparsity_loss_mode='quadratic' with a target L0)"
QWEN3_SAE_PAPER = "Qwen3-Instruct SAE paper (arXiv 2606.26620)"
QWEN_SCOPE = "Qwen-Scope (arXiv 2605.11887)"
TOPK_PAPER = "Gao et al. 2024, Scaling and evaluating sparse autoencoders (TopK, AuxK)"
SAELENS = "SAELens 6.54 default"
OURS = "ours"

# Qwen3's control tokens, identical in every released Qwen3 tokenizer.json; used when a recipe is built
# without a tokenizer (e.g. to plan an 8B suite offline). Training always reads them from the tokenizer.
QWEN3_CONTROL_TOKEN_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<think>": 151667,
    "</think>": 151668,
}
SMALL_MODEL_D_MODEL = 1024  # below this, the `small` scale applies


class UnknownJobError(RecipeConfigError, KeyError):
    """An SAE id that is not in the suite."""


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter value and where it comes from."""

    value: Any
    source: str


@dataclass(frozen=True)
class Recipe:
    """A training method: SAE architecture fields, runner fields and data filtering, each with a source.

    `sae` holds fields of the SAELens training-SAE config, `runner` fields of LanguageModelSAERunnerConfig;
    `small` overrides either (keys "sae.<field>" / "runner.<field>") for models with d_model < 1024.
    """

    name: str
    summary: str
    architecture: str
    sites: tuple[str, ...]
    width_multiplier: Hyper
    sae: Mapping[str, Hyper]
    runner: Mapping[str, Hyper]
    outlier_norm_factor: Hyper
    small: Mapping[str, Hyper] = field(default_factory=dict)
    layouts: Mapping[str, tuple[tuple[str, ...], tuple[int, ...] | None, str]] = field(default_factory=dict)

    def hyperparameters(self, small: bool = False, architecture: str | None = None) -> pd.DataFrame:
        """Every value of the recipe with its source (the documentation users read with --describe); `architecture`
        (--architecture) replaces the recipe's SAE fields with that architecture's (`architecture_fields`)."""
        arch = architecture or self.architecture
        source = QWEN3_SAE_PAPER if self.name == "paper" else QWEN_SCOPE
        rows = [
            ("width", f"{self.width_multiplier.value} x d_in", self.width_multiplier.source),
            ("architecture", arch, source if arch == self.architecture else "--architecture"),
            ("sites", ", ".join(self.sites), source),
            ("outlier_norm_factor", self.outlier_norm_factor.value, self.outlier_norm_factor.source),
        ]
        sae = architecture_fields(self, arch, small)
        merged = {**{f"sae.{k}": v for k, v in sae.items()}, **{f"runner.{k}": v for k, v in self.runner.items()}}
        if small:
            merged.update({k: v for k, v in self.small.items() if k.startswith("runner.")})
        rows += [(key, hyper.value, hyper.source) for key, hyper in merged.items()]
        rows += [
            (
                f"layout[{model}]",
                f"sites={','.join(s)} layers={'all' if layer is None else f'{layer[0]}-{layer[-1]}'}",
                src,
            )
            for model, (s, layer, src) in self.layouts.items()
        ]
        return pd.DataFrame(rows, columns=["hyperparameter", "value", "source"])


# Run settings shared by both recipes (data, batching, optimiser plumbing).
_COMMON_RUNNER: dict[str, Hyper] = {
    "context_size": Hyper(1024, GEMMA_SCOPE + "; Qwen-Scope's is not in our notes"),
    "train_batch_size_tokens": Hyper(4096, GEMMA_SCOPE),
    "store_batch_size_prompts": Hyper(8, OURS + ": 8 x 1024 tokens per model forward keeps CPU/GPU memory modest"),
    "n_batches_in_buffer": Hyper(16, OURS + ": 16 x 1023 tokens of shuffle buffer (>= one 4096-token batch)"),
    "activations_mixing_fraction": Hyper(0.5, SAELENS),
    "prepend_bos": Hyper(False, "Qwen3 has no BOS token (Qwen3 tokenizer config)"),
    "sequence_separator_token": Hyper(None, OURS + ": documents already end in <|im_end|> or <|endoftext|>"),
    "seqpos_slice": Hyper(
        (1, None),
        OURS + ": drop position 0 of each context, Qwen3's attention sink "
        "(Gemma Scope drops BOS, its sink; Qwen3 has no BOS)",
    ),
    "exclude_special_tokens": Hyper(
        "qwen3 control tokens",
        "Gemma Scope excludes BOS/EOS/pad; we exclude <|endoftext|> <|im_start|> <|im_end|> <think> </think>",
    ),
    "n_batches_for_norm_estimate": Hyper(
        10,
        OURS + ": 40k tokens fix a mean norm to <1%; SAELens' 1000 "
        "batches would cache 4M tokens x every hook of a group",
    ),
    "dead_feature_window": Hyper(1000, SAELENS),
    "feature_sampling_window": Hyper(2000, SAELENS),
    "dtype": Hyper("float32", SAELENS),
}

_SMALL_COMMON: dict[str, Hyper] = {
    "runner.context_size": Hyper(128, OURS + ": the organism's documents are short chats"),
    "runner.train_batch_size_tokens": Hyper(1024, OURS + ": more steps in a short run"),
    "runner.store_batch_size_prompts": Hyper(32, OURS),
    "runner.n_batches_in_buffer": Hyper(32, OURS + ": 32 x 127 tokens >= one 1024-token batch"),
    "runner.n_batches_for_norm_estimate": Hyper(10, OURS),
    "runner.dead_feature_window": Hyper(100, OURS + ": short runs; AuxK needs latents marked dead early"),
    "runner.feature_sampling_window": Hyper(200, OURS),
}

PAPER = Recipe(
    name="paper",
    summary="JumpReLU, Gemma Scope style; 1.7B/4B every layer x resid_post/mlp_out/attn_out, 8B resid_post 0-8",
    architecture="jumprelu",
    sites=PAPER_SITES,
    width_multiplier=Hyper(16, QWEN3_SAE_PAPER + ": 8B width 65,536 = 16 x 4096; same ratio for 1.7B/4B (ours)"),
    sae={
        "jumprelu_sparsity_loss_mode": Hyper("quadratic", GEMMA_SCOPE_2 + ": trains to a target L0"),
        "target_l0": Hyper(160, QWEN3_SAE_PAPER + ": L0 about 160 (8B); same target for 1.7B/4B (ours)"),
        "l0_coefficient": Hyper(1.0, SAELENS),
        "l0_warm_up_steps": Hyper(10_000, GEMMA_SCOPE + ": sparsity coefficient warmed up over 10k steps"),
        "jumprelu_bandwidth": Hyper(0.05, SAELENS + " (Gemma Scope's 0.001 is for its input scale, not SAELens')"),
        "jumprelu_init_threshold": Hyper(0.01, SAELENS + " (same reason)"),
        "normalize_activations": Hyper(
            "expected_average_only_in",
            GEMMA_SCOPE + ": inputs scaled by one fixed scalar; SAELens folds it into the weights after training",
        ),
        "apply_b_dec_to_input": Hyper(False, GEMMA_SCOPE + ": encoder sees x, not x - b_dec"),
        "decoder_init_norm": Hyper(0.1, SAELENS),
        "reopen_window": Hyper(
            1_000,
            OURS + ": a latent silent for SAELens' dead_feature_window (4M tokens) gets its b_enc raised until it "
            "fires again (fast JumpReLU class only; JumpReLU has no AuxK, and a latent below its STE band gets no "
            "gradient)",
        ),
        "reopen_until": Hyper(0.95, OURS + ": share of the run during which latents are reopened"),
        "reopen_resample_after": Hyper(
            0,
            OURS
            + " (the resampling of Bricken et al. 2023 as an option of the fast class): on the organism suite, new "
            "directions took attn_out L3 (width 192) from 2.6% to 0.0% dead held-out latents and its L0-20 sweep SAE "
            "from 8.3% to 0.5%, but raised the width-1,280 SAEs' (mlp_out L2 0.6% -> 6.6% resampling at every "
            "reopening, 0.8% -> 5.5% from the second) and cost EV (mlp_out L5 0.943 -> 0.897), so it stays off except at the sites a suite names in resample_sites "
            "(the organism suite: attn_out)",
        ),
    },
    runner={
        **_COMMON_RUNNER,
        "training_tokens": Hyper(4_000_000_000, GEMMA_SCOPE + ": 4B tokens per SAE"),
        "lr": Hyper(7e-5, GEMMA_SCOPE),
        "adam_beta1": Hyper(0.0, GEMMA_SCOPE),
        "adam_beta2": Hyper(0.999, GEMMA_SCOPE),
        "lr_scheduler_name": Hyper("constant", GEMMA_SCOPE + " (after the warm-up)"),
        "lr_warm_up_steps": Hyper(1_000, GEMMA_SCOPE),
    },
    outlier_norm_factor=Hyper(None, GEMMA_SCOPE + ": no norm filter (the sink position is dropped instead)"),
    small={
        **_SMALL_COMMON,
        "sae.target_l0": Hyper(
            24,
            OURS + ": ~1% of a 16 x d_model dictionary, like 160 of 65,536 scaled to "
            "the organism's few, simple features",
        ),
        "sae.l0_warm_up_steps": Hyper(25, OURS + ": short runs"),
        "sae.jumprelu_ste_to_input": Hyper(
            True,
            OURS + ": Anthropic's STE variant; the L0 penalty also reaches the "
            "encoder, so L0 meets its target within ~100 steps (measured: with the "
            "threshold-only STE, L0 stays 2-4x the target at this budget)",
        ),
        "sae.jumprelu_init_threshold": Hyper(
            0.5, OURS + ": starts near the target L0 on the organism; a threshold moves at most ~lr per Adam step"
        ),
        "sae.reopen_window": Hyper(
            8,
            OURS + ": 8 batches (8k tokens, ~200 expected firings of an average latent); measured on the organism: "
            "without reopening 10-40% of mlp_out/attn_out latents die, most in the last third of the run",
        ),
        "runner.training_tokens": Hyper(
            150_000, OURS + ": a suite in ~1-3 minutes on 2 CPU cores (EV 0.89 at 100k, 0.92 at 200k)"
        ),
        "runner.lr": Hyper(3e-3, OURS + ": ~100 steps; measured best of 1e-3 / 3e-3 on the organism"),
        "runner.adam_beta1": Hyper(0.9, SAELENS + " (beta1=0 is too noisy for ~100 steps)"),
        "runner.lr_warm_up_steps": Hyper(10, OURS),
    },
    layouts={"Qwen/Qwen3-8B": (("resid_post",), tuple(range(9)), QWEN3_SAE_PAPER + ": 8B residual layers 0-8")},
)

QWEN_SCOPE_RECIPE = Recipe(
    name="qwen-scope",
    summary="TopK k=50/100, width 16 x d_model, AuxK 1/32, extreme-norm filtering, residual stream",
    architecture="topk",
    sites=("resid_post",),
    width_multiplier=Hyper(16, QWEN_SCOPE + ": 16 x d_model (1.7B: 32K, 8B: 64K)"),
    sae={
        "k": Hyper(50, QWEN_SCOPE + ": k = 50 or 100 (choose with k=100)"),
        "aux_loss_coefficient": Hyper(1 / 32, QWEN_SCOPE + " and " + TOPK_PAPER + ": AuxK weight 1/32"),
        "rescale_acts_by_decoder_norm": Hyper(True, SAELENS),
        "normalize_activations": Hyper(
            "expected_average_only_in", OURS + ": one fixed input scalar, folded into the weights after training"
        ),
        "decoder_init_norm": Hyper(0.1, SAELENS),
    },
    runner={
        **_COMMON_RUNNER,
        "training_tokens": Hyper(1_000_000_000, OURS + ": Qwen-Scope's token count is not in our notes"),
        "lr": Hyper(3e-4, SAELENS + " (Qwen-Scope's is not in our notes)"),
        "adam_beta1": Hyper(0.9, SAELENS),
        "adam_beta2": Hyper(0.999, SAELENS),
        "lr_scheduler_name": Hyper("constant", SAELENS),
        "lr_warm_up_steps": Hyper(1_000, OURS),
    },
    outlier_norm_factor=Hyper(
        10.0,
        QWEN_SCOPE + " filters extreme-norm (first-token) activations; the "
        "threshold, 10 x the batch median norm, is ours",
    ),
    small={
        **_SMALL_COMMON,
        "sae.k": Hyper(50, QWEN_SCOPE),
        "runner.training_tokens": Hyper(150_000, OURS + ": the paper recipe's small-scale budget"),
        "runner.lr": Hyper(3e-3, OURS + ": ~100 steps"),
        "runner.lr_warm_up_steps": Hyper(10, OURS),
    },
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (PAPER, QWEN_SCOPE_RECIPE)}
assert tuple(RECIPES) == RECIPE_NAMES, "training.config.RECIPE_NAMES must list the recipes"
assert CONFIG_TRANSCODER_KINDS == TRANSCODER_KINDS, "training.config.TRANSCODER_KINDS must list the transcoder kinds"

# Transcoders train with the SAE recipe of their activation kind (its sae fields, small-scale overrides included):
# JumpReLU as the paper recipe's SAEs, TopK as Qwen-Scope's; ReLU with SAELens' L1 penalty.
_TRANSCODER_RECIPE = {"jumprelu": PAPER, "topk": QWEN_SCOPE_RECIPE, "relu": None}
TRANSCODER_L1 = Hyper(1.0, SAELENS + " (StandardTrainingSAEConfig.l1_coefficient)")


# The SAE fields of an architecture a suite trains with --architecture, when it is not its recipe's own: the recipe of
# that kind where one exists (its small-scale overrides included), else this table; everything else is SAELens'
# default. The recipe's input scaling (normalize_activations) applies to every architecture, so that sparsity
# coefficients mean the same thing across them.
BATCHTOPK_PAPER = "Bussmann et al. 2024, BatchTopK Sparse Autoencoders (arXiv 2412.06410)"
MATRYOSHKA_PAPER = "Bussmann et al. 2025, Learning Multi-Level Features with Matryoshka SAEs (arXiv 2503.17547)"
MP_PAPER = "Costa et al. 2025, From Flat to Hierarchical: matching pursuit SAEs (SAELens' matching_pursuit)"
_TOPK_FAMILY_SAE = {
    "k": QWEN_SCOPE_RECIPE.sae["k"],
    "aux_loss_coefficient": QWEN_SCOPE_RECIPE.sae["aux_loss_coefficient"],
    "decoder_init_norm": Hyper(0.1, SAELENS),
}
_L1_SAE = {
    "l1_coefficient": Hyper(
        5.0,
        "SAELens-trained GPT-2 small SAEs (l1_coefficient 5 on expected_average_only_in inputs; SAELens' config "
        "default is 1.0); on the organism L1 1 / 2 / 4 gave L0 ~65 / 33 / 20 at resid_post L3 "
        "(benchmarks/compare_architectures.py)",
    ),
    "l1_warm_up_steps": Hyper(
        1_000, "Anthropic, Towards Monosemanticity April 2024 update: L1 warmed up over the first ~5% of steps"
    ),
}
ARCHITECTURE_SAE: dict[str, tuple[dict[str, Hyper], dict[str, Hyper]]] = {
    "standard": (_L1_SAE, {"sae.l1_warm_up_steps": Hyper(25, OURS + ": short runs (as l0_warm_up_steps)")}),
    "gated": (_L1_SAE, {"sae.l1_warm_up_steps": Hyper(25, OURS + ": short runs (as l0_warm_up_steps)")}),
    "topk": (dict(QWEN_SCOPE_RECIPE.sae), {}),
    "abstopk": (_TOPK_FAMILY_SAE, {}),
    "batchtopk": (
        {**_TOPK_FAMILY_SAE, "topk_threshold_lr": Hyper(0.01, SAELENS + " (" + BATCHTOPK_PAPER + ")")},
        {},
    ),
    "matryoshka_batchtopk": (
        {
            **_TOPK_FAMILY_SAE,
            "matryoshka_widths": Hyper(
                "width/8, width/4, width/2, width",
                OURS + ": four nested levels, each twice the last (" + MATRYOSHKA_PAPER + " nests dictionaries alike)",
            ),
        },
        {},
    ),
    "jumprelu": (dict(PAPER.sae), {k: v for k, v in PAPER.small.items() if k.startswith("sae.")}),
    "matching_pursuit": (
        {
            "residual_threshold": Hyper(0.01, SAELENS),
            "decoder_init_norm": Hyper(1.0, SAELENS + ": matching pursuit needs unit-norm atoms (it forces 1.0)"),
            "max_iterations": Hyper(
                50, OURS + ": bounds L0 like TopK's k (Qwen-Scope's 50); SAELens' None runs up to d_in iterations"
            ),
        },
        {"sae.max_iterations": Hyper(24, OURS + ": the small scale's target L0")},
    ),
}
ARCHITECTURE_SOURCES = {
    "batchtopk": BATCHTOPK_PAPER,
    "matryoshka_batchtopk": MATRYOSHKA_PAPER,
    "matching_pursuit": MP_PAPER,
}
# Settings only the suite's CLI fields may set (sweeps and checks read them), and fields no SAE may take from a user.
_OWN_FIELDS = {"d_in", "d_sae", "d_out", "device", "dtype", "metadata", "reshape_activations"}
assert set(ARCHITECTURE_SAE) == set(ARCHITECTURE_SPARSITY), "training.config.ARCHITECTURE_SPARSITY must match"
assert set(ARCHITECTURE_SAE) <= set(SAE_TRAINING_CLASS_REGISTRY), "an architecture SAELens does not train"


def architecture_fields(rec: Recipe, architecture: str, small: bool) -> dict[str, Hyper]:
    """The SAE fields (with sources) of `architecture` trained under recipe `rec` at the small or family scale: the
    recipe's own when it is of that kind, else `ARCHITECTURE_SAE`'s, plus the recipe's input scaling."""
    if architecture == rec.architecture:
        base, overrides = dict(rec.sae), {k: v for k, v in rec.small.items() if k.startswith("sae.")}
    else:
        base, overrides = ARCHITECTURE_SAE[architecture]
        base = {**base, "normalize_activations": rec.sae["normalize_activations"]}
    merged = dict(base)
    if small:
        merged.update({k.split(".", 1)[1]: v for k, v in overrides.items()})
    return merged


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UnknownRecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]


# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SAEJob:
    """One SAE of a suite: where it reads (site, layer, hook) and its SAELens training config."""

    sae_id: str
    site: str
    layer: int
    hook_name: str
    d_in: int
    d_sae: int
    sae_cfg: Any  # a TrainingSAEConfig subclass instance
    hook_name_out: str | None = None  # a transcoder's target hook (hook_name is its input)
    d_out: int | None = None  # a transcoder's target width

    @property
    def architecture(self) -> str:
        return self.sae_cfg.architecture()

    @property
    def is_transcoder(self) -> bool:
        return self.hook_name_out is not None

    @property
    def stream_key(self) -> str:
        """The key of this job's batches in the group's stream: its hook, or a transcoder's (input, target) pair."""
        return pair_key(self.hook_name, self.hook_name_out) if self.hook_name_out is not None else self.hook_name

    def describe(self) -> dict[str, Any]:
        """The job as the manifest and the tables list it (hook_name_out / d_out for transcoders only)."""
        out = dict(
            sae_id=self.sae_id,
            site=self.site,
            layer=self.layer,
            hook_name=self.hook_name,
            d_in=self.d_in,
            d_sae=self.d_sae,
            architecture=self.architecture,
        )
        if self.is_transcoder:
            out.update(hook_name_out=self.hook_name_out, d_out=self.d_out)
        return out


@dataclass
class SuiteJobs:
    """A model + recipe + layer/site subset, resolved into SAELens configs (no weights needed)."""

    spec: Qwen3ModelSpec
    recipe: Recipe
    label: str
    name: str
    backend: str
    scale: str
    jobs: list[SAEJob]
    runner_kwargs: dict[str, Any]
    outlier_norm_factor: float | None
    fast: bool
    notes: list[str] = field(default_factory=list)
    wandb_project: str | None = None  # logging only: not part of what a resume compares

    @property
    def training_tokens(self) -> int:
        return int(self.runner_kwargs["training_tokens"])

    @property
    def total_steps(self) -> int:
        return self.training_tokens // self.runner_kwargs["train_batch_size_tokens"]

    def job(self, sae_id_: str) -> SAEJob:
        for job in self.jobs:
            if job.sae_id == sae_id_:
                return job
        raise UnknownJobError(
            f"{sae_id_!r} is not in suite {self.name}; it has {', '.join(j.sae_id for j in self.jobs)}."
        )

    def _common(self, **extra: Any) -> dict[str, Any]:
        kwargs = dict(self.runner_kwargs)
        kwargs.update(
            model_name=portable_model_name(self.spec),
            model_class_name=_MODEL_CLASS[self.backend],
            model_from_pretrained_kwargs={"default_prepend_bos": False} if self.backend == "hooked" else {},
            is_dataset_tokenized=True,
            use_chat_formatting=False,
            streaming=False,
            dataset_trust_remote_code=False,
            logger=self.logging_config(),
            checkpoint_path=None,
            n_checkpoints=0,
        )
        kwargs.update(extra)
        return kwargs

    def logging_config(self):
        """SAELens' own LoggingConfig: wandb only when a project is given (off by default)."""
        if self.wandb_project is None:
            return LoggingConfig(log_to_wandb=False)
        return LoggingConfig(log_to_wandb=True, wandb_project=self.wandb_project, run_name=self.name)

    def runner_config(self, job: SAEJob, **extra: Any):
        """SAELens' single-SAE runner config for one job (LanguageModelSAETrainingRunner accepts it)."""
        return LanguageModelSAERunnerConfig(
            sae=replace(job.sae_cfg), hook_name=job.hook_name, verbose=False, **self._common(**extra)
        )

    def multi_config(self, jobs: Iterable[SAEJob], **extra: Any):
        """SAELens' multi-SAE runner config: these jobs trained from one shared forward pass."""
        jobs = list(jobs)
        kwargs = self._common(**extra)
        kwargs.pop("is_dataset_tokenized")
        return MultiSAETrainingRunnerConfig(
            saes={j.sae_id: replace(j.sae_cfg) for j in jobs},
            hook_names={j.sae_id: j.hook_name for j in jobs},
            **kwargs,
        )

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                dict(
                    sae_id=j.sae_id,
                    layer=j.layer,
                    site=j.site,
                    hook_name=j.hook_name,
                    d_in=j.d_in,
                    d_sae=j.d_sae,
                    architecture=j.architecture,
                    **_sparsity_of(j.sae_cfg),
                )
                for j in self.jobs
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """What the manifest records (and what `resume` compares)."""
        runner = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.runner_kwargs.items()}
        return dict(
            name=self.name,
            recipe=self.recipe.name,
            label=self.label,
            scale=self.scale,
            backend=self.backend,
            fast=self.fast,
            outlier_norm_factor=self.outlier_norm_factor,
            runner=runner,
            notes=self.notes,
            saes=[{**j.describe(), "sae_cfg": _plain_sae_cfg(j.sae_cfg)} for j in self.jobs],
        )


_MODEL_CLASS = {"hooked": "HookedTransformer", "hf": "AutoModelForCausalLM"}


def _sparsity_of(cfg: Any) -> dict[str, Any]:
    return {"k": getattr(cfg, "k", None), "target_l0": getattr(cfg, "target_l0", None)}


def _plain_sae_cfg(cfg: Any) -> dict[str, Any]:
    out = cfg.to_dict()
    out.pop("metadata", None)
    return out


def _training_config_class(architecture: str):
    if architecture not in SAE_TRAINING_CLASS_REGISTRY:
        hint = (
            "the fast SAE classes register on `import qwen3_scope` (qwen3_scope.saes.fast_saes); "
            "they are missing from this installation"
            if architecture.endswith("_fast")
            else f"SAELens knows {', '.join(sorted(SAE_TRAINING_CLASS_REGISTRY))}"
        )
        raise RecipeConfigError(f"no SAELens training class is registered for architecture {architecture!r}: {hint}.")
    return get_sae_training_class(architecture)[1]


def _resolve_layers(spec: Qwen3ModelSpec, layers: Iterable[int] | None, default: tuple[int, ...] | None) -> list[int]:
    chosen = list(default if default is not None else range(spec.n_layers)) if layers is None else list(layers)
    if not chosen:
        raise RecipeConfigError("no layers selected; pass at least one layer (e.g. --layers 0 or --layers 0-3).")
    for layer in chosen:
        spec.check_layer(layer)
    return sorted(set(chosen))


def _control_token_ids(spec: Qwen3ModelSpec, special_token_ids: list[int] | None) -> list[int]:
    if special_token_ids is not None:
        return sorted(int(i) for i in special_token_ids)
    if spec.vocab_size > max(QWEN3_CONTROL_TOKEN_IDS.values()):
        return sorted(QWEN3_CONTROL_TOKEN_IDS.values())
    raise RecipeConfigError(
        f"{spec.name} has a vocabulary of {spec.vocab_size}, not Qwen3's, so its control-token ids are unknown; "
        "pass special_token_ids=qwen3_scope.model.chat.special_token_ids(tokenizer)."
    )


def build_suite(
    cfg: SuiteTrainingConfig, spec: Qwen3ModelSpec | None = None, special_token_ids: list[int] | None = None
) -> SuiteJobs:
    """The suite `cfg` describes: its recipe resolved for its model and layer/site subset into SAELens configs.

    `spec` is `cfg.model` already resolved (`train_suite` resolves it once per job; None resolves it here);
    `special_token_ids` are the tokenizer's control tokens (default: Qwen3's published ids, when the vocabulary is
    Qwen3's). Fields of `cfg` used (see `SuiteTrainingConfig` for each): recipe, layers, sites (default: the
    recipe's sites and every layer; for the paper recipe on Qwen3-8B, resid_post at layers 0-8), training_tokens,
    backend, fast (True: the `<architecture>_fast` training classes, saved as the plain architecture; None: those
    when registered), k, target_l0, width (d_sae for every SAE, default 16 x d_in), site_widths (some sites' widths,
    e.g. a narrower dictionary for a low-rank site), seed, device / sae_device (the model's and the SAEs' device,
    SAELens' split), sae_dtype, runner_overrides, wandb_project, sparsities with sweep_layers (a sparsity sweep: one
    more SAE per value at each sweep layer and site, trained from the same forward passes, with ids like
    `mlp_out/layer_3/l0_16`, Gemma Scope's several-L0s-per-site layout) and resample_sites (the fast JumpReLU SAEs
    there also resample a reopened latent's direction, `reopen_resample_after=1`).
    Errors name the bad input and the fix.
    """
    spec = spec if spec is not None else resolve_model(cfg.model)
    rec = get_recipe(cfg.recipe)
    backend, fast, device = cfg.backend, cfg.fast, cfg.resolved_sae_device
    if backend == "hooked" and spec.kind != "dense":
        raise RecipeConfigError(
            f"{spec.name} is a {spec.kind} model, which HookedTransformer cannot run; train it with backend='hf' "
            "(SAELens' HookedProxyLM; --backend hf on the command line)."
        )
    small = spec.d_model < SMALL_MODEL_D_MODEL
    layout_sites, layout_layers, _ = rec.layouts.get(spec.name, (rec.sites, None, ""))
    site_list = list(dict.fromkeys(cfg.sites)) if cfg.sites is not None else list(layout_sites)
    if not site_list and not cfg.transcoders:
        raise RecipeConfigError("no sites selected; pass at least one site (e.g. --sites resid_post).")
    for site in site_list:
        check_site(site)
    if "moe_router" in site_list:
        raise RecipeConfigError(
            "moe_router cannot be trained through SAELens' runners: transformers emits router logits as one row per "
            "token ([tokens, n_experts]), while SAELens' activation store needs [batch, position, d]. Cache them with "
            "run_with_cache (qwen3_scope.hook_name('moe_router', layer, backend, spec)) or train mlp_out instead."
        )
    layer_list = _resolve_layers(spec, cfg.layers, layout_layers)

    arch = cfg.architecture or rec.architecture
    sae_fields = {key: h.value for key, h in architecture_fields(rec, arch, small).items()}
    runner = {key: h.value for key, h in rec.runner.items()}
    if small:
        runner.update({k.split(".", 1)[1]: h.value for k, h in rec.small.items() if k.startswith("runner.")})
    runner["exclude_special_tokens"] = _control_token_ids(spec, special_token_ids)
    runner.update(seed=cfg.seed, device=device, llm_device=cfg.resolved_device)
    if cfg.sae_dtype is not None:
        runner["dtype"] = cfg.sae_dtype
    if cfg.training_tokens is not None:
        runner["training_tokens"] = int(cfg.training_tokens)
    _check_overrides(cfg.runner_overrides or {})
    runner.update(cfg.runner_overrides or {})
    notes = _check_runner(spec, runner)
    sparsity_key = ARCHITECTURE_SPARSITY[arch]
    _apply_sparsity_options(cfg, rec, arch, sae_fields)
    total_steps = runner["training_tokens"] // runner["train_batch_size_tokens"]
    for key, holder in (
        ("lr_warm_up_steps", runner),
        ("l0_warm_up_steps", sae_fields),
        ("l1_warm_up_steps", sae_fields),
    ):
        if key in holder and holder[key] > total_steps // 4:
            notes.append(
                f"{key} capped from {holder[key]} to {total_steps // 4} (a quarter of the {total_steps} steps)"
            )
            holder[key] = total_steps // 4

    if fast is None:
        fast = f"{arch}_fast" in SAE_TRAINING_CLASS_REGISTRY
    elif fast and f"{arch}_fast" not in SAE_TRAINING_CLASS_REGISTRY and arch not in ("topk", "jumprelu"):
        raise RecipeConfigError(
            f"no fast class for architecture {arch!r}: qwen3-scope's fast classes are topk_fast and jumprelu_fast; "
            "drop --fast to train SAELens' own class."
        )
    if "reopen_until" in sae_fields:  # dead-latent reopening lives in the fast JumpReLU class only
        until = sae_fields.pop("reopen_until")
        if fast:
            sae_fields["reopen_until_step"] = int(until * total_steps)
        else:
            sae_fields.pop("reopen_window", None)
            sae_fields.pop("reopen_resample_after", None)
    architecture = arch + ("_fast" if fast else "")
    cfg_class = _training_config_class(architecture)
    known = {f.name for f in fields(cfg_class)}
    sae_fields = {k: v for k, v in sae_fields.items() if k in known}  # e.g. a recipe's fast-only reopening fields
    _apply_sae_field_options(cfg, arch, known, sae_fields)
    per_site = dict(cfg.site_widths or ())
    for site in per_site:
        check_site(site)
        if site not in site_list:
            raise RecipeConfigError(
                f"a width is given for site {site!r}, which the suite does not train ({site_list})."
            )
    resample = list(dict.fromkeys(cfg.resample_sites or ()))
    if resample and "reopen_resample_after" not in sae_fields:
        raise RecipeConfigError(
            f"resample_sites {resample} need the fast JumpReLU class, which reopens dead latents; recipe {rec.name!r} "
            f"trains {architecture} (TopK revives dead latents with AuxK). Drop --resample-sites or use --recipe "
            "paper without --no-fast."
        )
    for site in resample:
        check_site(site)
        if site not in site_list:
            raise RecipeConfigError(f"resample site {site!r} is not among the suite's sites ({site_list}).")
    sweep = sorted({_sparsity_value(sparsity_key, v) for v in cfg.sparsities or ()})
    sweep_at = set(layer_list if cfg.sweep_layers is None else cfg.sweep_layers)
    if sweep and not sweep_at <= set(layer_list):
        raise RecipeConfigError(
            f"sweep layers {sorted(sweep_at - set(layer_list))} are not among the suite's layers {layer_list}; "
            "choose sweep layers the suite trains (or add them to --layers)."
        )
    jobs = []
    for layer in layer_list:
        for site in site_list:
            if (
                spec.is_hybrid
                and site in available_sites(backend, spec)
                and site not in layer_sites(spec, layer, backend)
            ):
                continue  # Qwen3.5: attention sites exist on full-attention layers only (and linear_attn_out on the rest)
            d_in = site_d_in(spec, site)
            d_sae = int(per_site.get(site) or cfg.width or int(rec.width_multiplier.value) * d_in)
            variants = [None] + ([v for v in sweep if v != sae_fields[sparsity_key]] if layer in sweep_at else [])
            for value in variants:
                fields_ = sae_fields if value is None else {**sae_fields, sparsity_key: value}
                if site in resample:
                    fields_ = {**fields_, "reopen_resample_after": 1}
                if "matryoshka_widths" in fields_:
                    fields_ = {**fields_, "matryoshka_widths": _matryoshka_widths(cfg.matryoshka_widths, d_sae, site)}
                _check_sparsity(fields_, d_sae, site, layer)
                sae_cfg = cfg_class(
                    d_in=d_in,
                    d_sae=d_sae,
                    device=device,
                    dtype=runner["dtype"],
                    reshape_activations="hook_z" if site == "attn_z" else "none",
                    **fields_,
                )
                variant = None if value is None else _variant(sparsity_key, value)
                hook = hook_name(site, layer, backend, spec)
                jobs.append(SAEJob(sae_id(site, layer, variant=variant), site, layer, hook, d_in, d_sae, sae_cfg))

    if cfg.transcoders:
        jobs += _transcoder_jobs(cfg, spec, rec, small, layer_list, sweep, sweep_at, sparsity_key, device, runner)

    label = rec.name if arch == rec.architecture else f"{rec.name}-{arch.replace('_', '-')}"
    if "k" in sae_fields:
        label += f"-k{sae_fields['k']}"
    default_l0 = (rec.small if small else {}).get("sae.target_l0", rec.sae.get("target_l0"))
    if "target_l0" in sae_fields and default_l0 is not None and sae_fields["target_l0"] != default_l0.value:
        label += f"-l0{sae_fields['target_l0']:g}"
    if cfg.transcoders:
        label += "-tc" if site_list else "-transcoders"
    name = suite_name(spec.key, label, max(j.d_sae for j in jobs))
    return SuiteJobs(
        spec=spec,
        recipe=rec,
        label=label,
        name=name,
        backend=backend,
        scale="small" if small else "family",
        jobs=jobs,
        runner_kwargs=runner,
        outlier_norm_factor=rec.outlier_norm_factor.value,
        fast=fast,
        notes=notes,
        wandb_project=cfg.wandb_project,
    )


_SPARSITY_FLAGS = {"k": "--k", "target_l0": "--l0", "l1_coefficient": "--l1-coefficient"}


def _architectures_with(key: str) -> list[str]:
    return [a for a in ARCHITECTURE_SAE if key in {f.name for f in fields(get_sae_training_class(a)[1])}]


def _apply_sparsity_options(cfg: SuiteTrainingConfig, rec: Recipe, arch: str, sae_fields: dict[str, Any]) -> None:
    """--k / --l0 / --l1-coefficient into the SAE fields, or an error naming the architectures they apply to and
    the option this one's sparsity takes."""
    sparsity_key = ARCHITECTURE_SPARSITY[arch]
    kind = f"recipe {rec.name!r} is {arch}" if arch == rec.architecture else f"--architecture is {arch}"
    fix = f"set its sparsity with {_SPARSITY_FLAGS.get(sparsity_key, '--k')} ({sparsity_key})"
    given = {"k": cfg.k, "target_l0": cfg.target_l0, "l1_coefficient": cfg.l1_coefficient}
    for key, value in given.items():
        if value is None:
            continue
        target = "max_iterations" if key == "k" and arch == "matching_pursuit" else key
        if target != sparsity_key:
            label = {"k": "TopK", "target_l0": "JumpReLU", "l1_coefficient": "L1"}[key]
            users = ", ".join(_architectures_with(key) + (["matching_pursuit"] if key == "k" else []))
            raise RecipeConfigError(
                f"{key} only applies to {label} recipes and architectures ({users}); {kind}: {fix}."
            )
        sae_fields[target] = _sparsity_value(target, value)
    if cfg.matryoshka_widths is not None and arch != "matryoshka_batchtopk":
        raise RecipeConfigError(f"matryoshka_widths only applies to --architecture matryoshka_batchtopk; {kind}.")


def _apply_sae_field_options(cfg: SuiteTrainingConfig, arch: str, known: set[str], sae_fields: dict[str, Any]) -> None:
    """--sae-field KEY=VALUE into the SAE fields, checked against the architecture's SAELens training config."""
    allowed = sorted(known - _OWN_FIELDS - set(_SPARSITY_FLAGS) - {"matryoshka_widths"})
    for key, value in cfg.sae_fields or ():
        if key not in allowed:
            raise RecipeConfigError(
                f"SAE field {key!r} is not a setting of {arch} SAEs (SAELens' "
                f"{get_sae_training_class(arch)[1].__name__}); choose from {', '.join(allowed)}."
            )
        sae_fields[key] = value


def _sparsity_value(key: str, value: float) -> float | int:
    return int(value) if key in ("k", "max_iterations") else float(value)


def _variant(key: str, value: float) -> str:
    if key == "l1_coefficient":
        return sparsity_variant(l1=value)
    return sparsity_variant(target_l0=value) if key == "target_l0" else sparsity_variant(k=int(value))


def _matryoshka_widths(given: list[int] | None, d_sae: int, site: str) -> list[int]:
    """The nested widths of a matryoshka SAE of width `d_sae`, ending at d_sae (SAELens appends it with a warning)."""
    widths = list(given) if given is not None else [d_sae // 8, d_sae // 4, d_sae // 2]
    if widths and widths[-1] > d_sae:
        raise RecipeConfigError(
            f"matryoshka width {widths[-1]} exceeds the {site} SAE width {d_sae}; keep every level at most the width."
        )
    widths = [w for w in widths if w >= 1]
    return widths if widths and widths[-1] == d_sae else [*widths, d_sae]


def _transcoder_fields(cfg: SuiteTrainingConfig, rec: Recipe, kind: str, small: bool) -> dict[str, Any]:
    """The training-config fields of a transcoder of `kind`: the SAE recipe of that kind (the suite's own recipe when
    it is of that kind), then the suite's --l0 / --k, then --transcoder-sparsity."""
    source = rec if rec.architecture == kind else _TRANSCODER_RECIPE[kind]
    fields_: dict[str, Any] = {}
    if source is not None:
        fields_ = {key: h.value for key, h in source.sae.items()}
        if small:
            fields_.update({k.split(".", 1)[1]: h.value for k, h in source.small.items() if k.startswith("sae.")})
    else:  # relu: SAELens' L1 penalty, the input scaling of the suite's recipe
        fields_ = {"l1_coefficient": TRANSCODER_L1.value}
        fields_["normalize_activations"] = rec.sae["normalize_activations"].value
    if kind == "jumprelu" and cfg.target_l0 is not None:
        fields_["target_l0"] = float(cfg.target_l0)
    if kind == "topk" and cfg.k is not None:
        fields_["k"] = int(cfg.k)
    if cfg.transcoder_sparsity is not None:
        key = {"jumprelu": "target_l0", "topk": "k", "relu": "l1_coefficient"}[kind]
        fields_[key] = int(cfg.transcoder_sparsity) if kind == "topk" else float(cfg.transcoder_sparsity)
    fields_["apply_b_dec_to_input"] = False  # b_dec is in the output space
    return fields_


def _transcoder_jobs(
    cfg: SuiteTrainingConfig,
    spec: Qwen3ModelSpec,
    rec: Recipe,
    small: bool,
    layers: list[int],
    sweep: list[float],
    sweep_at: set[int],
    sweep_key: str,
    device: str,
    runner: dict[str, Any],
) -> list[SAEJob]:
    """One transcoder per layer (MLP input -> MLP output; `model.sites.transcoder_hooks`), plus the sparsity sweep at
    the sweep layers when the transcoders' sparsity is of the same kind as the SAEs' (target L0 or k)."""
    kind = cfg.transcoder_kind or (rec.architecture if rec.architecture in TRANSCODER_KINDS else "jumprelu")
    architecture = transcoder_architecture(kind, cfg.transcoder_skip)
    cfg_class = _training_config_class(architecture)
    known = {f.name for f in fields(cfg_class)}
    base = {k: v for k, v in _transcoder_fields(cfg, rec, kind, small).items() if k in known}
    total_steps = runner["training_tokens"] // runner["train_batch_size_tokens"]
    for key in ("l0_warm_up_steps", "l1_warm_up_steps"):
        if key in base and base[key] > total_steps // 4:
            base[key] = total_steps // 4
    sparsity = {"jumprelu": "target_l0", "topk": "k"}.get(kind)
    d_in = d_out = spec.d_model
    d_sae = int(cfg.transcoder_width or cfg.width or int(rec.width_multiplier.value) * d_in)
    jobs = []
    for layer in layers:
        hook_in, hook_out = transcoder_hooks(layer, cfg.backend, spec)
        variants: list[float | None] = [None]
        if sparsity is not None and sparsity == sweep_key and layer in sweep_at:
            variants += [v for v in sweep if v != base[sparsity]]
        for value in variants:
            if value is None:
                fields_ = base
            else:
                fields_ = {**base, str(sparsity): int(value) if sparsity == "k" else float(value)}
            _check_sparsity(fields_, d_sae, TRANSCODER, layer)
            sae_cfg = cfg_class(d_in=d_in, d_sae=d_sae, d_out=d_out, device=device, dtype=runner["dtype"], **fields_)
            variant = None
            if value is not None:
                variant = sparsity_variant(k=int(value)) if sparsity == "k" else sparsity_variant(target_l0=value)
            jobs.append(
                SAEJob(
                    sae_id(TRANSCODER, layer, variant=variant),
                    TRANSCODER,
                    layer,
                    hook_in,
                    d_in,
                    d_sae,
                    sae_cfg,
                    hook_name_out=hook_out,
                    d_out=d_out,
                )
            )
    return jobs


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    """Only fields both SAELens runner configs have (a typo would otherwise fail deep inside a run)."""
    allowed = {f.name for f in fields(LanguageModelSAERunnerConfig)} & {
        f.name for f in fields(MultiSAETrainingRunnerConfig)
    }
    allowed -= {
        "sae",
        "saes",
        "hook_name",
        "hook_names",
        "model_name",
        "model_class_name",
        "logger",
        "output_path",
        "checkpoint_path",
        "n_checkpoints",
        "resume_from_checkpoint",
        "is_dataset_tokenized",
        "use_chat_formatting",
        "model_from_pretrained_kwargs",
        "streaming",
        "dataset_path",
    }
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise RecipeConfigError(
            f"runner override(s) {unknown} are not SAELens runner settings a suite can change; "
            f"choose from {', '.join(sorted(allowed))}."
        )


def _check_sparsity(sae_fields: dict[str, Any], d_sae: int, site: str, layer: int) -> None:
    for key in ("k", "target_l0", "max_iterations"):
        value = sae_fields.get(key)
        if value is not None and not 0 < value < d_sae:
            raise RecipeConfigError(
                f"{key}={value} does not fit {site} layer {layer}: it must be between 0 and "
                f"the SAE width {d_sae}; lower {key} or raise the width."
            )


def _check_runner(spec: Qwen3ModelSpec, runner: dict[str, Any]) -> list[str]:
    """SAELens pitfalls, caught before any model is loaded."""
    context, batch = runner["context_size"], runner["train_batch_size_tokens"]
    if context > spec.max_position_embeddings:
        raise RecipeConfigError(
            f"context_size {context} exceeds {spec.name}'s {spec.max_position_embeddings} "
            "positions; lower context_size."
        )
    kept = len(range(context)[slice(*runner["seqpos_slice"])])
    buffer = runner["n_batches_in_buffer"] * kept
    if buffer < batch:
        need = -(-batch // kept)
        raise RecipeConfigError(
            f"the activation buffer ({runner['n_batches_in_buffer']} x {kept} = {buffer} tokens) is smaller than one "
            f"training batch ({batch} tokens); SAELens would fail mid-run. Set n_batches_in_buffer >= {need} or "
            "lower train_batch_size_tokens."
        )
    if runner["training_tokens"] < batch:
        raise RecipeConfigError(
            f"training_tokens {runner['training_tokens']} is less than one batch ({batch} tokens); "
            "train on more tokens."
        )
    steps = runner["training_tokens"] // batch
    if runner["dead_feature_window"] >= steps:
        return [
            f"dead_feature_window ({runner['dead_feature_window']} steps) >= the {steps} training steps: no latent "
            "is ever marked dead, so TopK's AuxK / JumpReLU's pre-act loss never act and SAELens records "
            "num_dead_features = 0 (see dead_fraction in the suite metrics instead)"
        ]
    return []


def list_recipes() -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(recipe=r.name, architecture=r.architecture, sites=", ".join(r.sites), summary=r.summary)
            for r in RECIPES.values()
        ]
    )
