"""Atomic file writes: a reader (or a resumed run) never sees a half-written file or directory.

Why: training can be killed at any moment and suites are read while others are written; writing to a
temporary file in the same directory and `os.replace`-ing it is atomic on POSIX and Windows. A write that fails
for lack of space (ENOSPC, a quota, or a file-size limit) removes its temporary and raises `DiskFullError`.
Every file qwen3-scope writes goes through this module (or a SAELens/transformers writer inside `atomic_dir`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import site
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from qwen3_scope.core.errors import CorruptFileError, DiskFullError, MissingFileError, Qwen3ScopeError

_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# writers with their own error types (safetensors' Rust I/O) only keep the OS message
_NO_SPACE_TEXT = ("No space left on device", "File too large", "Disk quota exceeded", "os error 28", "os error 27")


def is_no_space_error(err: BaseException) -> bool:
    """True for a failed write caused by a full disk, a quota or a file-size limit (whatever the writer)."""
    if isinstance(err, Qwen3ScopeError):
        return False
    if isinstance(err, OSError) and err.errno in _NO_SPACE:
        return True
    return any(text in str(err) for text in _NO_SPACE_TEXT)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _disk_full(err: BaseException, path: Path) -> DiskFullError:
    code = getattr(err, "errno", None) or errno.ENOSPC
    full = DiskFullError(
        code,
        f"no space left while writing {path} ({os.strerror(code)}); nothing "
        "half-written was kept. Free disk space (or write somewhere else) and run the command again; training "
        "resumes from its last checkpoint with --resume.",
        str(path),
    )
    return full


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the final file ordinary permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except Exception as err:
        if is_no_space_error(err):
            raise _disk_full(err, path) from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; it replaces `path` as a whole only if the block finishes.

    For writers that produce a folder (SAELens' save_inference_model, transformers' save_pretrained, checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.{tmp.name.rsplit('.', 2)[-2]}.old")
    try:
        yield tmp
        mode = 0o666 & ~_umask()
        for file in tmp.rglob("*"):  # safetensors and mkdtemp leave 0600/0700; finished work is meant to be shared
            os.chmod(file, mode | (0o111 & ~_umask()) if file.is_dir() else mode)
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except Exception as err:
        if old.exists() and not path.exists():
            os.replace(old, path)  # put the previous version back
        if is_no_space_error(err):
            raise _disk_full(err, path) from err
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, sort_keys: bool = True, ensure_ascii: bool = True) -> Path:
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=str) + "\n"
    return atomic_write_text(path, text)


def atomic_save_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file  # lazy: keeps the CLI from importing torch

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def refuse_installed_package(path: str | Path) -> Path:
    """Raise unless `path` is outside the qwen3_scope package or the package is a source checkout.

    Why: the build tools (organism training, bundled suite) regenerate assets that ship inside the package;
    run against an installed copy they would silently modify the installation.
    """
    package = Path(str(files("qwen3_scope"))).resolve()
    target = Path(path).resolve()
    install_dirs = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")} | set(site.getsitepackages())
    installed = any(package.is_relative_to(Path(d).resolve()) for d in install_dirs | {site.getusersitepackages()})
    if target.is_relative_to(package) and (installed or not (package.parent / "pyproject.toml").is_file()):
        raise Qwen3ScopeError(
            f"refusing to write {target}: it is inside the installed qwen3_scope package ({package}), not a source "
            "checkout. Pass an output directory outside it (--out DIR), or run from a source checkout "
            "(cd /path/to/qwen3-scope && pip install -e .)."
        )
    return target


class RowsFileError(CorruptFileError):
    """A data file that cannot be read as rows (missing, not UTF-8 text, or not valid CSV / JSON / JSON lines)."""


class MissingRowsFileError(RowsFileError, MissingFileError):
    pass


def read_rows(path: str | Path) -> list[Any]:
    """The rows of a user's data file: `.csv` (every value a string), `.json` (a list) or JSON lines (any other
    suffix); the one reader of the steering and application inputs. An empty file gives [] (the callers say what
    the rows were for)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingRowsFileError(f"data file {path} does not exist; expected CSV, JSON or JSON lines rows.")
    if path.suffix == ".csv":
        import pandas as pd  # lazy: keeps the CLI from importing pandas

        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        except pd.errors.EmptyDataError:
            return []
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise RowsFileError(
                f"{path} is not valid CSV ({str(err).strip()}); expected a header line, then one row per line."
            ) from err
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RowsFileError(f"{path} is not UTF-8 text ({err}); expected JSON or JSON lines rows.") from err
    if path.suffix == ".json":
        try:
            rows = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as err:
            raise RowsFileError(f"{path} is not valid JSON ({err}); expected a list of rows.") from err
        return rows if isinstance(rows, list) else [rows]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise RowsFileError(
                f"{path} is not valid JSON lines (one object per line): line {number}: {err}"
                f"{' (the file is truncated?)' if number == len(text.splitlines()) else ''}."
            ) from err
    return rows
