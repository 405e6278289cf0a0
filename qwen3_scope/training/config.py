"""`SuiteTrainingConfig`: everything one suite-training run takes, in one documented, validated dataclass.

The `qwen3-scope train` command line is derived from its fields (`qwen3_scope.core.config_cli`), `--config
FILE.yaml` loads one, and the resolved config is written into the suite manifest (`config`), so a run is
reproducible from its manifest alone. Paths recorded there are portable (see `portable_dict`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3_scope.core.config_cli import config_to_dict, doc
from qwen3_scope.core.devices import PlacementOptions
from qwen3_scope.core.errors import ConfigError
from qwen3_scope.core.portable import portable_dataset_name, portable_model_name
from qwen3_scope.model.family import Qwen3ModelSpec, resolve_model
from qwen3_scope.model.sites import PAPER_SITES, check_site
from qwen3_scope.training.parsing import parse_layers, parse_sae_field, parse_site_width, parse_tokens

# The recipes of `training.recipes` (which checks that they agree), by name: this module stays light (the
# `qwen3-scope train` command line is built from it), so it does not import the recipes themselves.
RECIPE_NAMES = ("paper", "qwen-scope")
TRANSCODER_KINDS = ("relu", "jumprelu", "topk")  # saes.transcoders.TRANSCODER_KINDS (the recipes check they agree)
# Every SAE architecture SAELens 6.54 trains (its SAE_TRAINING_CLASS_REGISTRY minus transcoders and our fast classes;
# the recipes check they are registered), and the config field that sets each one's sparsity (what --sparsities sweeps).
ARCHITECTURE_SPARSITY = {
    "standard": "l1_coefficient",
    "gated": "l1_coefficient",
    "topk": "k",
    "abstopk": "k",
    "batchtopk": "k",
    "matryoshka_batchtopk": "k",
    "jumprelu": "target_l0",
    "matching_pursuit": "max_iterations",
}
ARCHITECTURES = tuple(ARCHITECTURE_SPARSITY)
BACKENDS = ("hooked", "hf")


class UnknownRecipeError(ConfigError):
    """A recipe name that is not one of RECIPE_NAMES."""


class RecipeConfigError(ConfigError):
    """Recipe settings that cannot make a suite (wrong backend, sparsity, layers, widths, runner overrides...)."""


@dataclass
class SuiteTrainingConfig(PlacementOptions):
    """One suite of SAEs (every chosen layer x site of a Qwen3 model) trained with a recipe.

    Every field is a `qwen3-scope train` option (`--field-name` unless noted); `None` means "the recipe's
    value" for recipe settings and "automatic" for placement and resources. Placement (`device`, `dtype`,
    `sae_device`, `sae_dtype`) comes from `PlacementOptions`; the SAEs train in float32 unless `sae_dtype` says.
    """

    model: str = field(
        default="organism",
        metadata=doc(
            "family name (Qwen/Qwen3-4B), `organism` (the bundled model organism), or a local checkpoint directory"
        ),
    )
    recipe: str = field(
        default="paper",
        metadata=doc("paper (JumpReLU, Gemma Scope style) or qwen-scope (TopK, AuxK, outlier filtering)"),
    )
    layers: list[int] | None = field(
        default=None,
        metadata=doc("layers, e.g. 0-8 or 3 5 7 or all (default: the recipe's layout, usually every layer)", parse=str),
    )
    sites: list[str] | None = field(
        default=None, metadata=doc("sites, e.g. resid_post mlp_out attn_out (default: the recipe's)")
    )
    training_tokens: int | None = field(
        default=None,
        metadata=doc(
            "training tokens per SAE, e.g. 200k or 4B (default: the recipe's)", flag="--tokens", parse=parse_tokens
        ),
    )
    dataset: list[str] | None = field(
        default=None,
        metadata=doc(
            "training data: jsonl/parquet/txt files or dirs, saved or pre-tokenized HF dataset dirs (input_ids), or hub "
            "names (streamed); several sources are mixed by --dataset-weights (default: the organism's corpus)"
        ),
    )
    dataset_weights: list[float] | None = field(
        default=None,
        metadata=doc("share of training tokens taken from each --dataset source, e.g. 0.3 0.7 (default: equal shares)"),
    )
    align_documents: bool = field(
        default=False,
        metadata=doc(
            "start every document at a training window's first position (padding the window's rest, a control token "
            "the SAEs never train on) instead of packing back to back as SAELens does: no window starts "
            "mid-document, a state the deployed model never sees (the organism suite trains this way: its attn_out "
            "latents that fire only there look dead on held-out chats)"
        ),
    )
    thinking: bool = field(
        default=False,
        metadata=doc(
            "render chat datasets (`messages`) with the model's chat template in thinking mode (default: non-thinking)"
        ),
    )
    out: str | None = field(
        default=None, metadata=doc("suite directory (default: runs/suites/<suite name>)", aliases=("--output",))
    )
    backend: str = field(
        default="hooked", metadata=doc("model backend: hooked (HookedTransformer) or hf (HookedProxyLM)")
    )
    resume: bool = field(
        default=False, metadata=doc("continue the interrupted suite in --out from its last checkpoint")
    )
    plan_only: bool = field(default=False, metadata=doc("print the plan (groups, memory, expected cost) and stop"))
    memory_budget_gb: float | None = field(
        default=None,
        metadata=doc(
            "memory budget for SAEs + activations (default: 75% of free memory minus the model)", flag="--memory-gb"
        ),
    )
    matmul_tflops: float | None = field(
        default=None,
        metadata=doc(
            "matmul rate the planner prices the plan at, in TFLOP/s (e.g. 400 for an H100 in bfloat16; default: measured "
            "on --device in --dtype now)"
        ),
    )
    max_saes_per_group: int | None = field(default=None, metadata=doc("cap on SAEs sharing one forward pass"))
    checkpoint_every_tokens: int | None = field(
        default=None,
        metadata=doc(
            "checkpoint interval in training tokens (default: ~1/8 of the run)",
            flag="--checkpoint-every",
            parse=parse_tokens,
        ),
    )
    architecture: str | None = field(
        default=None,
        metadata=doc(
            "SAE architecture, any SAELens trains: standard (ReLU + L1), gated, topk, abstopk, batchtopk, "
            "matryoshka_batchtopk, jumprelu or matching_pursuit (default: the recipe's, jumprelu for paper, topk for "
            "qwen-scope). Its fields come from the recipe of that kind or SAELens' defaults (`--describe` lists them); "
            "set its sparsity with --k, --l0, --l1-coefficient, --sparsities, any other field with --sae-field"
        ),
    )
    k: int | None = field(
        default=None,
        metadata=doc(
            "TopK k (qwen-scope: 50 or 100); also batchtopk / matryoshka_batchtopk / abstopk k and matching_pursuit's "
            "max_iterations"
        ),
    )
    l1_coefficient: float | None = field(
        default=None, metadata=doc("L1 coefficient of standard and gated SAEs (default: the architecture's table)")
    )
    matryoshka_widths: list[int] | None = field(
        default=None,
        metadata=doc(
            "nested dictionary sizes of matryoshka_batchtopk SAEs, increasing, the last at most the width (the width "
            "is added as the last level; default: width/8, width/4, width/2, width)"
        ),
    )
    sae_fields: list[tuple[str, Any]] | None = field(
        default=None,
        metadata=doc(
            "any other field of the architecture's SAELens training config: KEY=VALUE ... (values as JSON, e.g. "
            "topk_threshold_lr=0.02 residual_threshold=0.05 use_matryoshka_aux_loss=true)",
            flag="--sae-field",
            parse=parse_sae_field,
        ),
    )
    target_l0: float | None = field(
        default=None, metadata=doc("JumpReLU target L0 (paper: 160; organism: 24)", flag="--l0")
    )
    width: int | None = field(default=None, metadata=doc("SAE width d_sae (default 16 x d_in)"))
    site_widths: list[tuple[str, int]] | None = field(
        default=None,
        metadata=doc(
            "widths for some sites, overriding --width there: SITE=WIDTH ... (e.g. attn_out=640 for a low-rank site)",
            parse=parse_site_width,
        ),
    )
    sparsities: list[float] | None = field(
        default=None,
        metadata=doc(
            "sparsity sweep: more SAEs per (layer, site) at these target L0s (JumpReLU), k values (TopK family; "
            "matching_pursuit: max_iterations) or L1 coefficients (standard, gated), trained from the same forward "
            "passes, ids `<site>/layer_<L>/l0_<n>`, `k_<n>` or `l1_<c>` (e.g. --sparsities 12 48)"
        ),
    )
    sweep_layers: list[int] | None = field(
        default=None, metadata=doc("layers that get the sparsity sweep (default: every trained layer)")
    )
    resample_sites: list[str] | None = field(
        default=None,
        metadata=doc(
            "sites whose JumpReLU SAEs also give a reopened dead latent a new direction, the reconstruction error of "
            "a badly reconstructed token (fast class, reopen_resample_after=1; the organism suite: attn_out, where it "
            "keeps the narrow dictionaries live, while on wide ones it raised the dead fraction)"
        ),
    )
    transcoders: bool = field(
        default=False,
        metadata=doc(
            "also train a transcoder per layer (MLP input -> MLP output, ids `transcoder/layer_<L>`) in the same suite, "
            "from the same forward passes as its SAEs; with --sites none, transcoders only"
        ),
    )
    transcoder_kind: str | None = field(
        default=None,
        metadata=doc(
            "transcoder activation: relu (L1 penalty, circuit-tracer's published kind), jumprelu or topk (default: "
            "the recipe's SAE kind, jumprelu for paper, topk for qwen-scope)"
        ),
    )
    transcoder_skip: bool = field(
        default=False, metadata=doc("transcoders with a skip connection W_skip (d_model x d_model)")
    )
    transcoder_width: int | None = field(
        default=None, metadata=doc("transcoder width (default: --width, else 16 x d_model)")
    )
    transcoder_sparsity: float | None = field(
        default=None,
        metadata=doc(
            "transcoder sparsity: JumpReLU target L0, TopK k or ReLU L1 coefficient (default: the SAEs' --l0 / --k, "
            "L1 coefficient 1.0 for relu)"
        ),
    )
    fast: bool | None = field(
        default=None,
        metadata=doc(
            "qwen3-scope's fast training SAE classes (topk_fast / jumprelu_fast, saved as plain SAELens SAEs); default: "
            "on when they are registered; --no-fast trains SAELens' own classes"
        ),
    )
    seed: int = field(default=42, metadata=doc("random seed (SAE initialisation, shuffling)"))
    threads: int | None = field(default=None, metadata=doc("torch threads (1 is fastest on a busy 2-core machine)"))
    wandb_project: str | None = field(
        default=None,
        metadata=doc("log training to this Weights & Biases project through SAELens' LoggingConfig (default: off)"),
    )
    nproc: int | None = field(
        default=None,
        metadata=doc(
            "train on N processes of this machine: launches torchrun (torch.distributed.run) with N ranks; under "
            "`torchrun ... -m qwen3_scope.train` the ranks come from torchrun instead"
        ),
    )
    parallel: str = field(
        default="auto",
        metadata=doc(
            "how ranks share the suite: group (whole groups per rank, SAEs equal a one-process run), data (each group "
            "data-parallel over all ranks) or auto (the planner's choice, printed)"
        ),
    )
    data_shards: int | None = field(
        default=None,
        metadata=doc(
            "data parallelism: shards of the token stream (default: one per rank); one process with --parallel data "
            "--data-shards N computes the steps of an N-rank data-parallel run"
        ),
    )
    collective_timeout: float = field(
        default=300.0, metadata=doc("seconds a training collective may wait for the other ranks before the job fails")
    )
    runner_overrides: dict[str, Any] | None = field(
        default=None, metadata=doc("SAELens runner settings to override (config file / library only)", cli=False)
    )

    def __post_init__(self) -> None:
        if self.recipe not in RECIPE_NAMES:
            raise UnknownRecipeError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPE_NAMES)}.")
        if self.backend not in BACKENDS:
            raise RecipeConfigError(
                f"backend {self.backend!r} cannot train through SAELens' runners; use --backend hooked or --backend hf "
                "('hooked': HookedTransformer, the default; 'hf': HookedProxyLM). SAELens has no loader for "
                "TransformerBridge configs."
            )
        if isinstance(self.layers, (str, int)):
            self.layers = [self.layers]  # type: ignore[list-item]
        if self.layers is not None:
            self.layers = parse_layers([str(x) for x in self.layers])
        if isinstance(self.sites, str):
            self.sites = [self.sites]
        if self.sites is not None and [s.lower() for s in self.sites] == ["none"]:
            self.sites = []  # `--sites none`: no SAEs (a transcoders-only suite)
        if self.sites == [] and not self.transcoders:
            raise ConfigError("sites 'none' leaves nothing to train; add --transcoders or name sites.")
        if self.transcoder_kind is not None and self.transcoder_kind not in TRANSCODER_KINDS:
            raise ConfigError(
                f"unknown transcoder kind {self.transcoder_kind!r}; choose one of {', '.join(TRANSCODER_KINDS)}."
            )
        if self.architecture is not None and self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown SAE architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)} "
                "(transcoders: --transcoders with --transcoder-kind)."
            )
        if self.l1_coefficient is not None and not 0 < self.l1_coefficient < math.inf:
            raise ConfigError(f"l1_coefficient must be a positive number, got {self.l1_coefficient}; write e.g. 5.")
        if self.matryoshka_widths is not None:
            widths = [int(w) for w in self.matryoshka_widths]
            if not widths or widths[0] < 1 or any(b <= a for a, b in zip(widths, widths[1:], strict=False)):
                raise ConfigError(
                    f"matryoshka_widths must be positive and strictly increasing, got {self.matryoshka_widths}; "
                    "write e.g. --matryoshka-widths 128 256 512."
                )
            self.matryoshka_widths = widths
        if isinstance(self.sae_fields, dict):  # config files may write a mapping
            self.sae_fields = list(self.sae_fields.items())
        if self.sae_fields is not None:
            pairs = [parse_sae_field(f) if isinstance(f, str) else (str(f[0]), f[1]) for f in self.sae_fields]
            owned = {"k": "--k", "target_l0": "--l0", "l1_coefficient": "--l1-coefficient"}
            owned |= {"matryoshka_widths": "--matryoshka-widths", "d_sae": "--width", "d_in": "the site"}
            for key, _ in pairs:
                if key in owned:
                    raise ConfigError(f"set {key} with {owned[key]}, not --sae-field (so sweeps and checks see it).")
            self.sae_fields = pairs or None
        transcoder_only = ("transcoder_kind", "transcoder_skip", "transcoder_width", "transcoder_sparsity")
        given = [name for name in transcoder_only if getattr(self, name) not in (None, False)]
        if given and not self.transcoders:
            raise ConfigError(f"{', '.join(given)} configure transcoders; add --transcoders to train them.")
        if self.transcoder_width is not None and self.transcoder_width < 1:
            raise ConfigError(f"transcoder_width must be a positive whole number, got {self.transcoder_width}.")
        if self.transcoder_sparsity is not None and not 0 < self.transcoder_sparsity < math.inf:
            raise ConfigError(f"transcoder_sparsity must be a positive number, got {self.transcoder_sparsity}.")
        if isinstance(self.dataset, (str, Path)):
            self.dataset = [str(self.dataset)]
        if self.dataset is not None:
            self.dataset = [str(d) for d in self.dataset] or None
        for name in ("training_tokens", "checkpoint_every_tokens"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, value := parse_tokens(value))
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}.")
        if self.dataset_weights is not None:
            n_sources = len(self.dataset or [])
            if len(self.dataset_weights) != n_sources:
                raise ConfigError(
                    f"{len(self.dataset_weights)} dataset weight(s) for {n_sources} dataset source(s); give "
                    "one weight per --dataset source."
                )
            if any(w <= 0 for w in self.dataset_weights):
                raise ConfigError(f"dataset weights must be positive, got {self.dataset_weights}.")
        examples = {
            "width": "16384",
            "k": "50",
            "max_saes_per_group": "8",
            "threads": "1",
            "nproc": "2",
            "data_shards": "2",
            "target_l0": "24",
        }
        for name, example in examples.items():
            value = getattr(self, name)
            whole = name != "target_l0"
            if value is not None and (not value >= 1 if whole else not 0 < value < math.inf):
                kind = "a positive whole number" if whole else "a positive number"
                raise ConfigError(
                    f"{name} must be {kind}, got {value}; write e.g. {example} (or leave it out for "
                    "the recipe's default)."
                )
        if self.site_widths is not None:  # config files may write "attn_out=640" or [attn_out, 640]
            pairs = [parse_site_width(w) if isinstance(w, str) else (str(w[0]), int(w[1])) for w in self.site_widths]
            for site, width in pairs:
                check_site(site)
                if width < 1:
                    raise ConfigError(f"site width {site}={width} must be a positive whole number, e.g. {site}=640.")
            self.site_widths = pairs or None
        for value in self.sparsities or ():
            if not 0 < value < math.inf:
                raise ConfigError(f"sparsities must be positive numbers, got {value}; write e.g. --sparsities 12 48.")
        if isinstance(self.resample_sites, str):
            self.resample_sites = [self.resample_sites]
        for site in self.resample_sites or ():
            check_site(site)
        if self.sweep_layers is not None and not self.sparsities:
            raise ConfigError("sweep_layers needs sparsities to sweep; add e.g. --sparsities 12 48.")
        if self.parallel not in ("auto", "group", "data"):
            raise ConfigError(f"unknown parallel mode {self.parallel!r}; choose auto, group or data.")
        if self.collective_timeout <= 0:
            raise ConfigError(f"collective_timeout must be positive, got {self.collective_timeout}.")
        if self.matmul_tflops is not None and self.matmul_tflops <= 0:
            raise ConfigError(f"matmul_tflops must be positive, got {self.matmul_tflops}.")
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise ConfigError(f"memory_budget_gb must be positive, got {self.memory_budget_gb}.")
        if self.out is not None:
            self.out = str(self.out)
        self.sae_dtype = self.sae_dtype or "float32"
        super().__post_init__()  # device and dtype: checked now, before any model is loaded

    def replace(self, **changes: Any) -> SuiteTrainingConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def portable_dict(self, spec: Qwen3ModelSpec | None = None) -> dict[str, Any]:
        """What the manifest records: no path of this machine (the output dir is where the manifest is; the model
        by its portable name, from the already resolved `spec` when given; local datasets by file or folder name)."""
        out = self.to_dict()
        out.pop("out")
        out["dataset"] = [portable_dataset_name(d) for d in self.dataset] if self.dataset else None
        try:
            out["model"] = portable_model_name(spec if spec is not None else resolve_model(self.model))
        except ValueError:
            out["model"] = Path(self.model).name
        return out


def organism_suite_config(**changes: Any) -> SuiteTrainingConfig:
    """The organism suite the package ships (`python -m qwen3_scope.bundle`) and the demo trains, in one place:
    every layer x resid_post/mlp_out/attn_out, width 1,280 = 8 x d_model (attn_out, low-rank on the organism: 192),
    600k tokens per SAE on document-aligned windows, target L0 32 plus a sparsity sweep (20, 48, 64) at layer 3,
    attn_out latents resampled when reopened (without it its L0-20 sweep SAE kept 3.6-8.3 % dead held-out latents).
    Why L0 32 and not the small recipe's 24: at 24 the layer-4 SAEs stayed at EV 0.896-0.898 (600k tokens; 300k gave
    the same, so more tokens do not buy it), while L0 32 is above 0.90 at every layer. `changes` override fields."""
    preset = SuiteTrainingConfig(
        model="organism",
        recipe="paper",
        sites=list(PAPER_SITES),
        width=1280,
        site_widths=[("attn_out", 192)],
        resample_sites=["attn_out"],
        training_tokens=600_000,
        target_l0=32.0,
        sparsities=[20.0, 48.0, 64.0],
        sweep_layers=[3],
        align_documents=True,
        fast=None,
    )
    return preset.replace(**changes) if changes else preset


def organism_transcoder_config(**changes: Any) -> SuiteTrainingConfig:
    """The organism's transcoder set the package ships (`python -m qwen3_scope.bundle --transcoders`): one ReLU
    transcoder per layer (MLP input -> MLP output; ReLU with SAELens' L1 penalty, circuit-tracer's published kind and
    SAELens' own `transcoder` class), width 1,280 = 8 x d_model, 300k tokens on document-aligned windows, paper recipe
    runner settings. Why ReLU: on 4 layers at 150k tokens it gave EV 0.91-0.95 with 0-0.9 % dead latents, where TopK
    (k 50, width 1,280) left 5.3 % dead at layer 0 and JumpReLU without reopening 50-78 %. `changes` override fields."""
    preset = SuiteTrainingConfig(
        model="organism",
        recipe="paper",
        sites=["none"],
        transcoders=True,
        transcoder_kind="relu",
        transcoder_width=1280,
        training_tokens=300_000,
        align_documents=True,
        fast=None,
    )
    return preset.replace(**changes) if changes else preset
