"""Guards around a suite group's training loop: non-finite activations stop training with the step and hook
named, and Ctrl-C / a fatal error is recorded in the manifest; in both cases the last good checkpoint is kept
(it was written atomically at a segment boundary) and `--resume` continues from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from qwen3_scope.core.errors import TrainingDivergedError
from qwen3_scope.training.manifest import SuiteManifest


def check_finite(acts: dict[str, torch.Tensor], step: int) -> None:
    """Raise TrainingDivergedError naming the hook and step when a batch of activations holds NaN or inf."""
    for hook, values in acts.items():
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad_tokens = int((~finite).reshape(values.shape[0], -1).any(-1).sum()) if values.ndim else 1
            raise TrainingDivergedError(
                f"non-finite activations (NaN/inf) at hook {hook!r} at training step {step} ({bad_tokens} of "
                f"{values.shape[0] if values.ndim else 1} tokens); training stopped before they reached the SAEs."
            )


@contextmanager
def guarded_group(
    record: dict[str, Any], checkpoint: Callable[[], Any], save_manifest: Callable[[], None], manifest: SuiteManifest
) -> Iterator[None]:
    """Record how a group's training ended if it did not finish, and say where the last good checkpoint is."""
    try:
        yield
    except TrainingDivergedError as err:
        kept = checkpoint()
        record.update(status="failed", error=str(err))
        save_manifest()
        where = f"the last good checkpoint {kept} is kept" if kept else "no checkpoint had been written yet"
        raise TrainingDivergedError(
            f"{err} {where[0].upper() + where[1:]}. Check the model's weights and dtype (float32 avoids most "
            "overflows) or the data, then run the same command with --resume."
        ) from err
    except KeyboardInterrupt:
        record.update(status="interrupted")
        manifest.status = "interrupted"
        save_manifest()
        raise
