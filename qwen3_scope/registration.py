"""Idempotent registration of qwen3-scope's additions into SAELens, run on `import qwen3_scope`.

Why idempotent: notebooks re-import and re-run cells; a second registration must change nothing.
Nothing here touches the network.
"""

from __future__ import annotations

_steps_done: set[str] = set()


def _once(step: str) -> bool:
    if step in _steps_done:
        return False
    _steps_done.add(step)
    return True


def register() -> None:
    """Register every plugin extension with SAELens; safe to call any number of times."""
    if _once("releases"):
        from qwen3_scope.releases import register_releases

        register_releases()
    if _once("fast_training_saes"):
        try:
            from qwen3_scope.training.fast_saes import register_fast_training_saes
        except ImportError:
            pass
        else:
            register_fast_training_saes()
