"""qwen3-scope: the Qwen3 instruct family as first-class citizens of SAELens.

`import qwen3_scope` checks that the installed SAELens is in the tested minor series, then registers what the
plugin adds to SAELens (idempotently, offline; see `registration.register` for the exact list) and changes
nothing else in the process.

One exception, invisible to library users: when the `qwen3-scope` console script starts the process (its launcher
`qwen3_scope_cli.main` has run; see that module for why and how), all of the above waits until the first use of a
public name of this package (the CLI calls `qwen3_scope.register()` before every command that needs SAELens), so
`qwen3-scope --help` and `qwen3-scope info` answer without importing torch, transformers or SAELens.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from qwen3_scope.core.compat import check_sae_lens_version

if TYPE_CHECKING:  # the public names for type checkers and IDEs (`as` marks them re-exported)
    from qwen3_scope.model.chat import format_chat as format_chat
    from qwen3_scope.model.family import QWEN3_FAMILY as QWEN3_FAMILY
    from qwen3_scope.model.family import Qwen3ModelSpec as Qwen3ModelSpec
    from qwen3_scope.model.family import list_models as list_models
    from qwen3_scope.model.family import resolve_model as resolve_model
    from qwen3_scope.model.loading import load_model as load_model
    from qwen3_scope.model.loading import load_tokenizer as load_tokenizer
    from qwen3_scope.model.sites import BACKENDS as BACKENDS
    from qwen3_scope.model.sites import PAPER_SITES as PAPER_SITES
    from qwen3_scope.model.sites import SITES as SITES
    from qwen3_scope.model.sites import hook_name as hook_name
    from qwen3_scope.model.sites import parse_hook_name as parse_hook_name
    from qwen3_scope.model.sites import site_d_in as site_d_in
    from qwen3_scope.registration import register as register

__version__ = "0.1.0"

# Every public name and the module that defines it (bound by `_import_everything`).
_EXPORTS: dict[str, str] = {
    "BACKENDS": "qwen3_scope.model.sites",
    "PAPER_SITES": "qwen3_scope.model.sites",
    "QWEN3_FAMILY": "qwen3_scope.model.family",
    "Qwen3ModelSpec": "qwen3_scope.model.family",
    "SITES": "qwen3_scope.model.sites",
    "format_chat": "qwen3_scope.model.chat",
    "hook_name": "qwen3_scope.model.sites",
    "list_models": "qwen3_scope.model.family",
    "load_model": "qwen3_scope.model.loading",
    "load_tokenizer": "qwen3_scope.model.loading",
    "parse_hook_name": "qwen3_scope.model.sites",
    "register": "qwen3_scope.registration",
    "resolve_model": "qwen3_scope.model.family",
    "site_d_in": "qwen3_scope.model.sites",
}

__all__ = list(_EXPORTS)


def _import_everything() -> None:
    """The body of `import qwen3_scope`: check SAELens' version, bind the public names, register with SAELens."""
    check_sae_lens_version()  # before anything below imports SAELens
    namespace = globals()
    for name, module in _EXPORTS.items():
        namespace[name] = getattr(importlib.import_module(module), name)
    namespace["register"]()


def __getattr__(name: str) -> Any:
    """Only reached when the console script deferred the import: the first public name completes it."""
    if name in _EXPORTS:
        _import_everything()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not getattr(sys.modules.get("qwen3_scope_cli"), "starting", False):
    _import_everything()
