"""qwen3-scope's error hierarchy: every user error is a `Qwen3ScopeError` whose message names the problem and
the fix; the CLI prints it as `qwen3-scope: error: ...` (exit 2) instead of a traceback.

Each class also derives from the builtin a caller would naturally catch (ValueError, FileNotFoundError, ...),
so `except ValueError` around library calls keeps working.
"""

from __future__ import annotations


class Qwen3ScopeError(Exception):
    """Base class: a problem with the user's input, files or environment (not a bug in qwen3-scope)."""


class ConfigError(Qwen3ScopeError, ValueError):
    """An option or argument has a value that cannot work (unknown name, malformed number, ...)."""


class MissingFileError(Qwen3ScopeError, FileNotFoundError):
    """A file or directory the operation needs does not exist."""


class CorruptFileError(Qwen3ScopeError, ValueError):
    """A file exists but cannot be read as what it should be (empty, truncated, wrong format)."""


class ModelMismatchError(Qwen3ScopeError, ValueError):
    """An SAE and a model (or two files) that do not belong together."""


class ReleaseError(Qwen3ScopeError, ValueError):
    """A release entry or release file that qwen3-scope refuses (unsafe path, shadowing, bad schema)."""


class TrainingDivergedError(Qwen3ScopeError, RuntimeError):
    """Training produced non-finite values; the last good checkpoint is kept."""


class DiskFullError(Qwen3ScopeError, OSError):
    """A write failed for lack of space (or a file-size limit); nothing half-written is left."""


class IncompatibleVersionError(Qwen3ScopeError, ImportError):
    """An installed dependency is outside the range qwen3-scope is tested with."""


class PrivateAPIError(IncompatibleVersionError):
    """A private SAELens/torch symbol qwen3-scope relies on (see compat.py) changed or disappeared."""
