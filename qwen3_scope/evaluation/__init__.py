"""Suite evaluation: every SAE of a suite through SAELens' run_evals on shared held-out tokens, one table.

Modules: held_out (token batches), shared_forward (one clean pass per batch for the whole suite),
suite_eval (loading, checks, metrics, table, yaml write-back), plots, report (HTML), cli, demo_stage.
"""

from qwen3_scope.evaluation.held_out import HeldOutTokens, NotEnoughTokensError
from qwen3_scope.evaluation.shared_forward import SharedForwardModel
from qwen3_scope.evaluation.suite_eval import (
    EmptySuiteError,
    SuiteEntry,
    SuiteEvalConfig,
    SuiteModelMismatchError,
    SuiteResult,
    evaluate_suite,
    write_back_release_yaml,
    write_table,
)

__all__ = [
    "EmptySuiteError",
    "HeldOutTokens",
    "NotEnoughTokensError",
    "SharedForwardModel",
    "SuiteEntry",
    "SuiteEvalConfig",
    "SuiteModelMismatchError",
    "SuiteResult",
    "evaluate_suite",
    "write_back_release_yaml",
    "write_table",
]
