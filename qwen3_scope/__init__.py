"""qwen3-scope: the Qwen3 instruct family as first-class citizens of SAELens.

`import qwen3_scope` checks that the installed SAELens is in the tested minor series, then registers what the
plugin adds to SAELens (idempotently, offline; see `registration.register` for the exact list) and changes
nothing else in the process.
"""

from qwen3_scope.core.compat import check_sae_lens_version

check_sae_lens_version()

from qwen3_scope.model.chat import format_chat
from qwen3_scope.model.family import QWEN3_FAMILY, Qwen3ModelSpec, list_models, resolve_model
from qwen3_scope.model.loading import load_model, load_tokenizer
from qwen3_scope.model.sites import BACKENDS, PAPER_SITES, SITES, hook_name, parse_hook_name, site_d_in
from qwen3_scope.registration import register

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PAPER_SITES",
    "QWEN3_FAMILY",
    "Qwen3ModelSpec",
    "SITES",
    "format_chat",
    "hook_name",
    "list_models",
    "load_model",
    "load_tokenizer",
    "parse_hook_name",
    "register",
    "resolve_model",
    "site_d_in",
]

register()
