"""The configurations of the steering studies, kept free of torch-heavy modules (SAELens, pandas, the models).

Why a module of its own: the CLI builds its options and checks them before anything loads; the study modules
(`sweep`, `refusal`, `language`) import SAELens and pandas. They re-export these classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qwen3_scope.core.devices import PlacementOptions
from qwen3_scope.naming import RELEASE


@dataclass
class StudyConfig(PlacementOptions):
    """Shared knobs of the refusal and language studies (placement: `PlacementOptions`)."""

    model: str = "organism"
    backend: str = "hooked"
    suite_dir: str | None = None
    release: str = RELEASE
    sae_ids: list[str] | None = None
    n_discover: int = 32
    n_eval: int = 32
    screen: int = 32
    top_k: int = 3
    screen_alpha: float = 4.0
    alphas: Sequence[float] = (1.0, 2.0, 4.0, 8.0)
    max_new_tokens: int = 12
    batch_size: int = 16
    discovery_positions: str = "post_instruction"
    steer_positions: str = "post_instruction"
    baseline: bool = True


@dataclass
class RefusalStudyConfig(StudyConfig):
    """The refusal study (`qwen3_scope.steering.refusal`): harmful and harmless prompt files, or the organism's."""

    harmful_file: str | None = None
    harmless_file: str | None = None


@dataclass
class LanguageStudyConfig(StudyConfig):
    """The language study (`qwen3_scope.steering.language`): French and English prompt files, or the organism's."""

    french_file: str | None = None
    english_file: str | None = None
