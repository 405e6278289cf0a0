"""What the command line needs of the applications, without importing them: each application's config dataclass
(a subclass of `AppConfig`, every field documented, validated in `__post_init__`) and `APPS`, the explicit ordered
table of the applications (name, help, config, demo sizes), in the order the demo runs them.

This module imports no torch, transformers, SAELens or pandas: `qwen3-scope apps --help` builds its options from
it. Each application's `run(config) -> AppResult` is in its own module (`apps.toxicity`, ...); `apps.runs.RUNS`
maps the names of `APPS` to them. Validation that needs a model or SAEs happens in `run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qwen3_scope.core.devices import resolve_device
from qwen3_scope.core.errors import ConfigError, MissingFileError
from qwen3_scope.model.sites import check_site
from qwen3_scope.naming import RELEASE


class AppInputError(ConfigError):
    """Bad input to an application (labels, layers, ranges, rows of a data file): the message names the problem and
    the fix."""


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
    release: str = field(default=RELEASE, metadata={"help": "SAELens release when no --suite is given"})
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
        self.device = resolve_device(self.device)


@dataclass
class ToxicityConfig(AppConfig):
    """Options of `qwen3-scope apps toxicity`."""

    site: str = field(default="resid_post", metadata={"help": "site of the SAEs whose features classify"})
    layers: list[int] = field(
        default_factory=list, metadata={"help": "layers to consider (default: every layer the suite has at --site)"}
    )
    layer: int | None = field(
        default=None, metadata={"help": "use this layer instead of choosing it by top1-diff on the discovery split"}
    )
    ks: list[int] = field(
        default_factory=lambda: [1, 2, 5, 10], metadata={"help": "numbers K of top features per layer to try"}
    )
    discovery_file: str | None = field(
        default=None,
        metadata={
            "help": "jsonl/json/csv with `text` and `label` (toxic/clean or 1/0; optional `lang`) to discover "
            "features on (default: the organism's toxic_discovery + clean_discovery splits)"
        },
    )
    test_file: str | None = field(
        default=None,
        metadata={"help": "file like --discovery-file to test on (default: the organism's toxic + clean splits)"},
    )
    splits: Literal["markers", "hard"] = field(
        default="markers",
        metadata={
            "help": "the organism's comment splits when no files are given: `markers` (toxic/clean, discovered on "
            "toxic_discovery/clean_discovery: toxic comments carry insult words) or `hard` (toxic_hard/clean_hard, "
            "discovered on toxic_hard_discovery/clean_hard_discovery: both labels share their words, the label is in "
            "intent or target)"
        },
    )
    max_per_class: int | None = field(
        default=None, metadata={"help": "use at most this many rows per label of each file/split (fast runs)"}
    )
    fraction: float = field(default=0.1, metadata={"help": "share of the discovery data for f1_ratio_10pct"})
    fraction_draws: int = field(default=5, metadata={"help": "random stratified draws of that share (mean F1)"})
    random_draws: int = field(default=20, metadata={"help": "draws of K random features for the control (mean F1)"})
    source_lang: str = field(default="en", metadata={"help": "language to discover on for the cross-lingual F1"})
    target_lang: str = field(default="fr", metadata={"help": "language to test on for the cross-lingual F1"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ks or any(k < 1 for k in self.ks):
            raise AppInputError(f"ks must be K >= 1 values, got {self.ks}; try --ks 1 2 5 10.")
        self.ks = sorted(set(self.ks))
        if not 0 < self.fraction <= 1:
            raise AppInputError(f"fraction must be in (0, 1], got {self.fraction}; try 0.1.")
        for name in ("fraction_draws", "random_draws"):
            if getattr(self, name) < 1:
                raise AppInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_per_class is not None and self.max_per_class < 2:
            raise AppInputError(f"max_per_class must be >= 2 (or unset), got {self.max_per_class}.")
        if self.splits not in ("markers", "hard"):
            raise AppInputError(f"splits must be `markers` or `hard`, got {self.splits!r}.")
        if self.discovery_file and self.splits != "markers":
            raise AppInputError(
                f"--splits {self.splits} picks the organism's bundled splits and --discovery-file/--test-file replace "
                "them; pass one or the other."
            )
        if bool(self.discovery_file) != bool(self.test_file):
            raise AppInputError(
                "pass both --discovery-file and --test-file (or neither, for the organism's toxic/clean splits)."
            )
        if not self.discovery_file and self.model != "organism":
            raise AppInputError(
                f"model {self.model!r} has no bundled toxicity data; pass --discovery-file and --test-file "
                "(rows with `text` and `label` toxic/clean)."
            )
        for path in (self.discovery_file, self.test_file):
            if path and not Path(path).expanduser().is_file():
                raise MissingFileError(f"labelled file {path} does not exist; give a jsonl/json/csv file path.")


@dataclass
class RedundancyConfig(AppConfig):
    """Options of `qwen3-scope apps redundancy`."""

    site: str = field(default="resid_post", metadata={"help": "site of the SAEs whose features make footprints"})
    layers: list[int] = field(
        default_factory=list, metadata={"help": "layers whose features count (default: every layer at --site)"}
    )
    positions: Literal["last", "all"] = field(
        default="last", metadata={"help": "footprint at the last prompt token, or at any token of the prompt"}
    )
    chat: bool = field(default=True, metadata={"help": "render prompts with the chat template (non-thinking)"})
    benchmarks_file: str | None = field(
        default=None,
        metadata={
            "help": "jsonl/csv of items with `benchmark`, `prompt`, `reference` (optional `task` and its fields for "
            "the scorer) (default: the organism's task families and its toxicity question)"
        },
    )
    max_items: int | None = field(default=None, metadata={"help": "use at most this many items per benchmark"})
    fractions: list[float] = field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        metadata={"help": "subset sizes as fractions of each benchmark (coverage curve and ranking stability)"},
    )
    n_subsets: int = field(default=100, metadata={"help": "random subsets per size"})
    model_dirs: list[str] = field(
        default_factory=list,
        metadata={"help": "checkpoint directories of the models to rank (default: fine-tuned organism variants)"},
    )
    n_models: int = field(default=12, metadata={"help": "organism variants to make, the base model included"})
    variant_steps: int = field(default=12, metadata={"help": "fine-tuning steps per organism variant"})
    variant_lr: float = field(default=5e-4, metadata={"help": "learning rate of the variants' fine-tuning"})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "answer length in tokens (default: the longest reference + 8)"}
    )
    n_permutations: int = field(default=10_000, metadata={"help": "permutations for the p-value of rho"})
    design: Literal["families", "constructed"] = field(
        default="families",
        metadata={
            "help": "`families`: one benchmark per task family (or per benchmark of --benchmarks-file); "
            "`constructed`: benchmarks of known diversity built from those families, each mixing k of them in "
            "equal shares (k = 1: near-duplicates, one family's instances), and a population fine-tuned on "
            "those families only"
        },
    )
    mix_levels: list[int] = field(
        default_factory=lambda: [1, 2, 3, 6],
        metadata={"help": "with --design constructed: the numbers k of families mixed in a benchmark"},
    )
    per_level: int = field(default=8, metadata={"help": "with --design constructed: benchmarks built per mix level"})
    bench_sizes: list[int] = field(
        default_factory=lambda: [48],
        metadata={
            "help": "with --design constructed: items per benchmark; one size holds size fixed, several are taken "
            "in turn within each mix level (size crossed with diversity); only families with >= the largest size "
            "in items are mixed"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.design not in ("families", "constructed"):
            raise AppInputError(f"design must be `families` or `constructed`, got {self.design!r}.")
        if not self.mix_levels or min(self.mix_levels) < 1:
            raise AppInputError(
                f"mix_levels must be >= 1 (families per benchmark), got {self.mix_levels}; try 1 2 3 6."
            )
        if len(set(self.mix_levels)) < 2 and self.design == "constructed":
            raise AppInputError(f"mix_levels needs >= 2 different k to vary diversity, got {self.mix_levels}.")
        self.mix_levels = sorted(set(self.mix_levels))
        if self.per_level < 1:
            raise AppInputError(f"per_level must be >= 1, got {self.per_level}.")
        if not self.bench_sizes or min(self.bench_sizes) < 2:
            raise AppInputError(f"bench_sizes must be >= 2 items (subsets need 2), got {self.bench_sizes}; try 24 48.")
        if not self.fractions or any(not 0 < f < 1 for f in self.fractions):
            raise AppInputError(f"fractions must lie in (0, 1), got {self.fractions}; try 0.1 0.3 0.5 0.7 0.9.")
        self.fractions = sorted(set(self.fractions))
        for name, low in (("n_subsets", 1), ("n_permutations", 1), ("variant_steps", 1)):
            if getattr(self, name) < low:
                raise AppInputError(f"{name} must be >= {low}, got {getattr(self, name)}.")
        if self.max_items is not None and self.max_items < 2:
            raise AppInputError(f"max_items must be >= 2 (or unset), got {self.max_items}.")
        n = len(self.model_dirs) or self.n_models
        if n < 3:
            raise AppInputError(f"ranking needs >= 3 models (Qwen-Scope ranks 26; >= 10 is advised), got {n}.")
        if self.variant_lr <= 0:
            raise AppInputError(f"variant_lr must be > 0, got {self.variant_lr}.")
        if (self.benchmarks_file or self.model != "organism") and not self.model_dirs and not self.benchmarks_file:
            raise AppInputError(
                f"model {self.model!r} has no bundled benchmarks; pass --benchmarks-file and --model-dirs."
            )
        if self.model != "organism" and not self.model_dirs:
            raise AppInputError(
                "organism variants are made only for the organism; pass --model-dirs with >= 10 checkpoints to rank."
            )
        for d in self.model_dirs:
            if not Path(d).expanduser().is_dir():
                raise MissingFileError(f"model directory {d} does not exist; pass checkpoint directories.")
        if self.benchmarks_file and not Path(self.benchmarks_file).expanduser().is_file():
            raise MissingFileError(
                f"benchmarks file {self.benchmarks_file} does not exist; give a jsonl/json/csv file with `benchmark`, "
                "`prompt` and `reference` columns."
            )


@dataclass
class SasftConfig(AppConfig):
    """Options of `apps sasft` (see the module docstring for the loss)."""

    lam: float = field(
        default=1.0, metadata={"help": "lambda, the weight of the SAE penalty (0 < lambda <= 1e4)", "flag": "--lambda"}
    )
    n_features: int = field(default=3, metadata={"help": "features of each language penalised per SAE"})
    contrast: str = field(
        default="french",
        metadata={
            "help": "how the penalised French features are ranked: `french` (mean activation on French chats minus "
            "English chats: French text in general) or `codeswitch` (the smaller of code-switched SFT chats minus "
            "English chats and French minus English: French features the habit's text uses; reduction 0.47, 0.45 and "
            "0.11 on the bundled and two trained suites, against 0.76, 0.59 and 0.59 for `french`)"
        },
    )
    steps: int = field(default=80, metadata={"help": "fine-tuning steps of each run (plain, SASFT, random control)"})
    lr: float = field(default=2e-4, metadata={"help": "AdamW learning rate"})
    sft_batch: int = field(default=8, metadata={"help": "chats per fine-tuning step"})
    alpha: str = field(
        default="max",
        metadata={
            "help": "alpha_s from the feature's pre-activations on the other language's chats: `mean` (the paper's: mean "
            "over tokens) or `max` (mean over chats of the maximum: only excursions beyond what that language reaches)"
        },
    )
    positions: str = field(
        default="english",
        metadata={
            "help": "answer-producing positions penalised: `all` (the paper's) or `english` (those whose own token is "
            "not inside a French word: where a switch starts, leaving the French words of the data alone)"
        },
    )
    n_discovery: int = field(
        default=200,
        metadata={
            "help": "French and English chats each to rank features on (and, with `--contrast codeswitch`, as many "
            "chats of the SFT data at most)"
        },
    )
    symmetric: bool = field(
        default=False,
        metadata={
            "help": "also penalise English features on the French examples (the paper's rule applied to both languages: "
            "L's features on the examples not in L); on the previous v2 organism it cut code-switching less (0.36 vs 0.19) and "
            "cost more French quality (0.72 vs 0.77)"
        },
    )
    mix_french: int = field(
        default=2400,
        metadata={
            "help": "clean French chats from the organism's grammar added to every run's SFT data (the penalty skips "
            "them: SASFT protects a language the data also holds)"
        },
    )
    repeats: int = field(
        default=3,
        metadata={
            "help": "independent repeats with seeds seed, seed+1, ...: each re-draws the discovery chats, the random "
            "control, the clean French chats and the SFT order; summary.json gives the means (a single repeat's French "
            "quality moved by up to 9 % between seeds on the organism)"
        },
    )
    n_train: int = field(default=0, metadata={"help": "SFT rows used (0: all)"})
    n_eval: int = field(default=150, metadata={"help": "held-out English and French prompts each (0: all)"})
    max_new_tokens: int = field(default=40, metadata={"help": "greedy tokens generated per evaluation prompt"})
    sft_file: str | None = field(
        default=None,
        metadata={"help": "SFT chats (JSON lines with `messages`; default: the organism's codeswitch_sft)"},
    )
    english_file: str | None = field(
        default=None, metadata={"help": "held-out English prompts (JSON lines with `prompt`; default: lang_en)"}
    )
    french_file: str | None = field(
        default=None,
        metadata={"help": "held-out French prompts (`prompt`, optional `expected` answers; default: lang_fr)"},
    )
    layers: list[int] = field(default_factory=list, metadata={"help": "layers whose SAEs are used (default: all)"})
    sites: list[str] = field(default_factory=list, metadata={"help": "sites whose SAEs are used (default: all)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.lam <= 1e4:
            raise AppInputError(f"lambda must be in (0, 1e4], got {self.lam}; try 2.0 (pass --lambda).")
        for name in ("n_features", "steps", "sft_batch", "n_discovery", "max_new_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise AppInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.alpha not in ("mean", "max"):
            raise AppInputError(f"alpha must be `mean` or `max`, got {self.alpha!r}.")
        if self.positions not in ("all", "english"):
            raise AppInputError(f"positions must be `all` or `english`, got {self.positions!r}.")
        if self.contrast not in ("french", "codeswitch"):
            raise AppInputError(f"contrast must be `french` or `codeswitch`, got {self.contrast!r}.")
        if self.n_train < 0 or self.n_eval < 0 or self.mix_french < 0:
            raise AppInputError("n_train, n_eval and mix_french must be >= 0 (0: every row / no French chats).")
        if not 0 < self.lr < 1:
            raise AppInputError(f"lr must be in (0, 1), got {self.lr}; try 1e-3.")


@dataclass
class SynthesisConfig(AppConfig):
    """Options of `apps synthesis` (sizes are per arm; see the module docstring for the protocol)."""

    n_discovery: int = field(default=200, metadata={"help": "harmful and harmless requests each for target discovery"})
    n_targets: int = field(default=4000, metadata={"help": "target features: the largest harmful-vs-harmless deltas"})
    budget: int = field(default=32, metadata={"help": "synthesized harmful requests per arm (targeted, random)"})
    candidates: int = field(
        default=8, metadata={"help": "requests composed per aim at a target (the kept one covers the most targets)"}
    )
    max_tries: int = field(default=3, metadata={"help": "failed aims at one target before it counts as unreachable"})
    unalign_steps: int = field(
        default=40, metadata={"help": "SFT steps on harmful requests answered helpfully, before the arms (0: none)"}
    )
    sft_steps: int = field(default=40, metadata={"help": "SFT steps of each arm on its synthesized data"})
    lr: float = field(default=3e-4, metadata={"help": "AdamW learning rate of every fine-tuning run"})
    n_eval: int = field(default=150, metadata={"help": "held-out harmful and harmless prompts each (0: all)"})
    max_new_tokens: int = field(default=16, metadata={"help": "greedy tokens generated per evaluation prompt"})
    harmful_file: str | None = field(
        default=None, metadata={"help": "JSON lines with `prompt`: held-out harmful prompts (default: organism's)"}
    )
    harmless_file: str | None = field(
        default=None, metadata={"help": "JSON lines with `prompt`: held-out harmless prompts (default: organism's)"}
    )

    layers: list[int] = field(default_factory=list, metadata={"help": "layers whose SAEs are used (default: all)"})
    sites: list[str] = field(default_factory=list, metadata={"help": "sites whose SAEs are used (default: all)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_discovery", "n_targets", "budget", "candidates", "max_tries", "sft_steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise AppInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.unalign_steps < 0 or self.n_eval < 0:
            raise AppInputError("unalign_steps and n_eval must be >= 0 (0: no unalignment / every held-out prompt).")
        if not 0 < self.lr < 1:
            raise AppInputError(f"lr must be in (0, 1), got {self.lr}; try 1e-3.")


@dataclass
class RepetitionConfig(AppConfig):
    """Options of `qwen3-scope apps repetition`."""

    sites: list[str] = field(
        default_factory=lambda: ["resid_post", "mlp_out", "attn_out"],
        metadata={"help": "sites searched, each studied on its own (default: the paper's three)"},
    )
    layers: list[int] = field(
        default_factory=list, metadata={"help": "layers searched (default: every layer the suite has at each site)"}
    )
    n_features: int = field(
        default=3, metadata={"help": "repetition features per site steered and ablated (best discovery scores)"}
    )
    n_random: int = field(
        default=10,
        metadata={
            "help": "random live features per site as the control, from the SAEs that hold its repetition features"
        },
    )
    n_joint: int = field(
        default=10,
        metadata={
            "help": "repetition features per site zero-ablated together (copying may be spread over several), against as "
            "many random live features of the same SAEs together"
        },
    )
    alphas: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 1.0],
        metadata={"help": "steering strengths, in units of the site's mean activation norm at the feature's layer"},
    )
    report_alpha: float = field(default=0.5, metadata={"help": "the alpha (one of --alphas) summary.json reports"})
    text_file: str | None = field(
        default=None,
        metadata={"help": "repetitive texts to discover on (jsonl/json/csv rows with `text`; default: the organism's)"},
    )
    prompts_file: str | None = field(
        default=None,
        metadata={"help": "prompts to generate from (rows with `prompt`; default: the organism's held-out harmless)"},
    )
    n_texts: int = field(default=100, metadata={"help": "discovery texts used (0: all)"})
    n_prompts: int = field(default=32, metadata={"help": "prompts generated from at every steering point"})
    max_new_tokens: int = field(default=40, metadata={"help": "greedy tokens generated per prompt"})

    def __post_init__(self) -> None:
        super().__post_init__()

        if not self.sites:
            raise AppInputError("sites is empty; give at least one, e.g. --sites resid_post mlp_out.")
        try:
            for site in self.sites:
                check_site(site)
        except ValueError as err:
            raise AppInputError(str(err)) from err
        for name in ("n_features", "n_random", "n_joint", "n_prompts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise AppInputError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_texts < 0:
            raise AppInputError(f"n_texts must be >= 0 (0: every text), got {self.n_texts}.")
        if not self.alphas or any(not 0 < a <= 100 for a in self.alphas):
            raise AppInputError(f"alphas must be values in (0, 100], got {self.alphas}; try --alphas 0.25 0.5 1.")
        self.alphas = sorted(set(self.alphas))
        if self.report_alpha not in self.alphas:
            raise AppInputError(f"report_alpha {self.report_alpha} is not one of the alphas {self.alphas}; add it.")
        for what, path in (("text", self.text_file), ("prompts", self.prompts_file)):
            if path and not Path(path).expanduser().is_file():
                raise MissingFileError(f"{what} file {path} does not exist; give a jsonl/json/csv file path.")
        if self.model != "organism" and not (self.text_file and self.prompts_file):
            raise AppInputError(
                f"model {self.model!r} has no bundled repetition data; pass --text-file (rows with `text`, "
                "repetitive text) and --prompts-file (rows with `prompt`)."
            )


@dataclass(frozen=True)
class AppSpec:
    """One application as the CLI and the demo see it; its `run` is `apps.runs.RUNS[name]`."""

    name: str
    help: str
    config: type[AppConfig]
    demo: dict[str, Any] = field(default_factory=dict)  # config overrides that keep the demo stage in minutes


# Every application, in the order the demo runs them (and `qwen3-scope apps --help` lists them).
APPS: dict[str, AppSpec] = {
    spec.name: spec
    for spec in (
        AppSpec(
            "toxicity",
            "zero-shot toxicity classifier: OR rule over the top contrastive SAE features (F1, cross-lingual, 10% data)",
            ToxicityConfig,
            demo={"random_draws": 10},
        ),
        AppSpec(
            "redundancy",
            "benchmark overlap and redundancy from SAE feature footprints, checked against model rankings "
            "(Spearman rho)",
            RedundancyConfig,
            demo={"max_items": 80, "n_subsets": 50, "n_permutations": 2000},
        ),
        AppSpec(
            "sasft",
            "SAE-guided fine-tuning against code-switching: plain SFT vs SASFT vs random-feature control",
            SasftConfig,
            demo={"n_eval": 100},
        ),
        AppSpec(
            "synthesis",
            "feature-driven safety data synthesis: target-feature coverage, then refusal after fine-tuning on it",
            SynthesisConfig,
            demo={"n_discovery": 120, "budget": 48, "n_eval": 100},
        ),
        AppSpec(
            "repetition",
            "repetition features: found on repeated text; ablated (does copying need them?) and steered (do they "
            "add repetition?)",
            RepetitionConfig,
            demo={"n_prompts": 24, "max_new_tokens": 32},
        ),
    )
}
