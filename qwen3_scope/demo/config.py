"""`DemoConfig`: what the main job runs and at which sizes (the `qwen3-scope demo` options are derived from it).

Two presets share every stage. The quick demo (the default, `bash scripts/demo.sh`) shows each capability in a
few minutes on a 2-core CPU: it trains a small suite to show training, and the later stages use the shipped
organism and its bundled SAE suite at sizes that prove each part works. `--full` runs the version that
reproduces the README's tables: the whole organism suite (the bundled recipe), used by every later stage, and
each stage at its full size. A size left at None takes the preset's value; giving one overrides the preset.

This module imports nothing heavy: the CLI builds its parser from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qwen3_scope.core.config_cli import doc
from qwen3_scope.core.errors import ConfigError, Qwen3ScopeError


class UnknownStageError(ConfigError):
    """`--stages` names a stage the demo does not have (the message lists the valid ones)."""


class DemoCheckError(Qwen3ScopeError, RuntimeError):
    """A demo stage's self-check failed (backends disagree, site widths differ from the registry)."""


# Application sizes of the quick demo, on top of each application's own demo overrides (`AppSpec.demo`, what
# `--full` runs): enough data for each step to run and print its numbers, not for the README's precision.
QUICK_APP_SIZES: dict[str, dict[str, Any]] = {
    "toxicity": {"random_draws": 5, "fraction_draws": 3},
    "redundancy": {"max_items": 24, "n_subsets": 20, "n_permutations": 500, "n_models": 4},
    "sasft": {"repeats": 1, "n_eval": 48},
    "synthesis": {"n_discovery": 60, "budget": 16, "unalign_steps": 20, "sft_steps": 20, "n_eval": 32},
    "repetition": {"n_texts": 48, "n_prompts": 12, "n_random": 5, "n_joint": 5, "alphas": [0.5], "report_alpha": 0.5},
}

# The preset values of every size field left at None: quick, then full.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        train_layers=[2],
        train_sites=["resid_post", "mlp_out", "attn_out"],
        train_tokens=30_000,
        train_sweep=False,
        use_trained_suite=False,
        organism_prompts=16,
        distributed_layers=[0],
        distributed_tokens=4096,
        eval_batches=1,
        steer_prompts=12,
        steer_screen=8,
        steer_alphas=[4.0, 8.0],
        app_sizes=QUICK_APP_SIZES,
        export_prompts=32,
    ),
    "full": dict(
        train_layers=None,  # every layer
        train_sites=["resid_post", "mlp_out", "attn_out"],
        train_tokens=600_000,
        train_sweep=True,
        use_trained_suite=True,
        organism_prompts=32,
        distributed_layers=[0, 1],
        distributed_tokens=8192,
        eval_batches=4,
        steer_prompts=32,
        steer_screen=32,
        steer_alphas=[1.0, 2.0, 4.0, 8.0],
        app_sizes={},
        export_prompts=128,
    ),
}


@dataclass
class DemoConfig:
    """The main job: which stages, on which model, at the quick or the full sizes."""

    out: Path = field(default=Path("runs/demo"), metadata=doc("output directory (report.md and artifacts)"))
    model: str = field(
        default="organism", metadata=doc("model to run on: `organism` (the bundled model organism) or a Qwen3 name")
    )
    stages: list[str] = field(
        default_factory=list, metadata=doc("run only these stages, in the demo's order (default: all)")
    )
    full: bool = field(
        default=False,
        metadata=doc(
            "the full demo that reproduces the README's tables (trains the whole organism suite and uses it in every "
            "later stage; hours on a 2-core CPU) instead of the quick one (minutes; bundled suite, small sizes)"
        ),
    )
    train_layers: list[int] | None = field(
        default=None, metadata=doc("layers the train stage trains SAEs at (quick: 2; full: every layer)")
    )
    train_sites: list[str] | None = field(
        default=None, metadata=doc("sites the train stage trains SAEs at (both presets: resid_post mlp_out attn_out)")
    )
    train_tokens: int | None = field(
        default=None, metadata=doc("training tokens per SAE in the train stage (quick: 30,000; full: 600,000)")
    )
    train_sweep: bool | None = field(
        default=None, metadata=doc("train the bundled suite's layer-3 sparsity sweep too (quick: no; full: yes)")
    )
    use_trained_suite: bool | None = field(
        default=None,
        metadata=doc(
            "later stages (eval, steer, apps, export) use the suite the train stage made instead of the bundled one "
            "(quick: no, its small suite only shows training; full: yes)"
        ),
    )
    organism_prompts: int | None = field(
        default=None,
        metadata=doc("held-out harmful and harmless prompts each the organism answers (quick 16, full 32)"),
    )
    distributed_layers: list[int] | None = field(
        default=None,
        metadata=doc("layers of the distributed stage's suite, x resid_post/mlp_out (quick: 0; full: 0 1)"),
    )
    distributed_tokens: int | None = field(
        default=None, metadata=doc("training tokens per SAE in the distributed stage (quick 4,096; full 8,192)")
    )
    eval_batches: int | None = field(
        default=None, metadata=doc("held-out batches of 8 x 128 tokens every SAE is evaluated on (quick 1, full 4)")
    )
    steer_prompts: int | None = field(
        default=None, metadata=doc("prompts per class to discover and evaluate steering on (quick 12, full 32)")
    )
    steer_screen: int | None = field(
        default=None, metadata=doc("SAE latents screened per steering study (quick 8, full 32)")
    )
    steer_alphas: list[float] | None = field(
        default=None, metadata=doc("steering strengths swept (quick: 4 8; full: 1 2 4 8)")
    )
    app_sizes: dict[str, dict[str, Any]] | None = field(
        default=None,
        metadata=doc(
            "per application, config overrides on top of its demo sizes (quick: QUICK_APP_SIZES; full: none)",
            cli=False,
        ),
    )
    export_prompts: int | None = field(
        default=None, metadata=doc("prompts of 128 tokens the dashboards are computed from (quick 32, full 128)")
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.stages = list(self.stages or [])
        counts = ("train_tokens", "organism_prompts", "distributed_tokens", "eval_batches", "steer_prompts")
        for name in (*counts, "steer_screen", "export_prompts"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if self.app_sizes is not None and not isinstance(self.app_sizes, dict):
            raise ConfigError(f"app_sizes must map application names to overrides, got {self.app_sizes!r}.")

    @property
    def preset(self) -> str:
        return "full" if self.full else "quick"

    def resolved(self) -> ResolvedDemoConfig:
        """A copy with every size left at None set from the quick or full preset."""
        preset = PRESETS[self.preset]
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({name: preset[name] for name, value in values.items() if value is None and name in preset})
        return ResolvedDemoConfig(**values)


@dataclass
class ResolvedDemoConfig(DemoConfig):
    """A `DemoConfig` whose sizes are all set (`DemoConfig.resolved()`): what the stages read. Only `train_layers`
    may stay None (every layer)."""

    train_sites: list[str] = field(default_factory=list)
    train_tokens: int = 0
    train_sweep: bool = False
    use_trained_suite: bool = False
    organism_prompts: int = 0
    distributed_layers: list[int] = field(default_factory=list)
    distributed_tokens: int = 0
    eval_batches: int = 0
    steer_prompts: int = 0
    steer_screen: int = 0
    steer_alphas: list[float] = field(default_factory=list)
    app_sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    export_prompts: int = 0
