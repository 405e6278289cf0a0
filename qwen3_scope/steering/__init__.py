"""Feature steering for Qwen3: interventions during generation, feature discovery, refusal and language studies.

`interventions` (add/ablate directions, clamp/scale SAE latents with the error term kept, position-aware
under KV-cached generation) -> `generation` (batched greedy generation, completion CE) -> `discovery`
(contrast two prompt sets through a suite) -> `sweep` (screening, alpha sweeps, coherence) -> `refusal`
and `language` (the two studies) -> `plots`, `cli` (`qwen3-scope steer ...`), `demo_stage` (`steer`).
"""

from qwen3_scope.steering.interventions import (
    POSITIONS,
    AblateDirection,
    AddDirection,
    EditFeature,
    FeatureIndexError,
    Intervention,
    PositionTracker,
    SteeringError,
    ablate_feature,
    clamp_feature,
    resolve_hook,
    scale_feature,
    steer,
    steer_feature,
)

__all__ = [
    "POSITIONS",
    "AblateDirection",
    "AddDirection",
    "EditFeature",
    "FeatureIndexError",
    "Intervention",
    "PositionTracker",
    "SteeringError",
    "ablate_feature",
    "clamp_feature",
    "resolve_hook",
    "scale_feature",
    "steer",
    "steer_feature",
]
