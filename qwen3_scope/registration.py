"""Idempotent registration of qwen3-scope's additions into SAELens, run on `import qwen3_scope` (and by the
`qwen3-scope` command line before every command that needs SAELens; see qwen3_scope_cli.py).

What it registers, and nothing else (tests/test_import_side_effects.py checks the rest of the process is
untouched):
- releases: the conversion function "qwen3_scope" (loader and config getter) in SAELens' named loaders, a
  no-pickle replacement for SAELens' "qwen_scope" loader, and a wrapper of `get_pretrained_saes_directory`
  that adds the shipped and the user's release files on SAELens' first directory read (releases.py);
- SAE classes: the training architectures "topk_fast" / "jumprelu_fast" and their inference classes
  (saes/fast_saes.py). Fused Adam is not switched process-wide: see `enable_fused_adam`;
- transcoders: the training architectures "transcoder", "skip_transcoder", "jumprelu_transcoder",
  "jumprelu_skip_transcoder", "topk_transcoder", "topk_skip_transcoder" and the inference classes of the two TopK
  ones, which SAELens lacks (saes/transcoders.py).

Why idempotent: notebooks re-import and re-run cells; a second registration must change nothing.
Nothing here touches the network.
"""

from __future__ import annotations

from qwen3_scope.releases import register_releases
from qwen3_scope.saes.fast_saes import register_fast_training_saes
from qwen3_scope.saes.transcoders import register_transcoders

_steps_done: set[str] = set()


def _once(step: str) -> bool:
    if step in _steps_done:
        return False
    _steps_done.add(step)
    return True


def register() -> None:
    """Register every plugin extension with SAELens; safe to call any number of times."""
    if _once("releases"):
        register_releases()
    if _once("fast_training_saes"):
        register_fast_training_saes()
    if _once("transcoders"):
        register_transcoders()
