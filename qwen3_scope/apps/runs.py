"""Each application's `run(config) -> AppResult`, by the names of `apps.config.APPS`.

Importing this module imports every application (and so torch, TransformerLens, SAELens, pandas): the CLI imports it
only when an application runs, the demo when it runs its stages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qwen3_scope.apps import AppResult, redundancy, repetition, sasft, synthesis, toxicity
from qwen3_scope.apps.config import APPS

RUNS: dict[str, Callable[[Any], AppResult]] = {
    "toxicity": toxicity.run,
    "redundancy": redundancy.run,
    "sasft": sasft.run,
    "synthesis": synthesis.run,
    "repetition": repetition.run,
}

if RUNS.keys() != APPS.keys():  # the two tables name the same applications
    raise ImportError(f"apps.runs.RUNS has {sorted(RUNS)} but apps.config.APPS has {sorted(APPS)}")
