"""Training helpers for qwen3-scope. Keep this file to re-exports; each module holds one job."""

from qwen3_scope.saes.fast_saes import (
    FastJumpReLUTrainingSAE,
    FastJumpReLUTrainingSAEConfig,
    FastTopKTrainingSAE,
    FastTopKTrainingSAEConfig,
    enable_fused_adam,
    register_fast_training_saes,
)

__all__ = [
    "FastJumpReLUTrainingSAE",
    "FastJumpReLUTrainingSAEConfig",
    "FastTopKTrainingSAE",
    "FastTopKTrainingSAEConfig",
    "enable_fused_adam",
    "register_fast_training_saes",
]
