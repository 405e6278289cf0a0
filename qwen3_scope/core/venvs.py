"""Cached virtual environments for the tools that pin other versions than this package (no torch import here).

circuit-tracer 0.5.0 pins transformers <= 4.57.3 and SAEBench 0.6 pins numpy < 2 and datasets < 4, while the main
environment has transformers 5 and may have numpy 2. Each runs in a venv of its own, built once by `pinned_venv`:
`python -m venv --system-site-packages` (torch, SAELens and this package come from the main environment), then pip
installs only the pins, so a venv costs a few hundred MB instead of a second torch. The folder is keyed by the pins and
this Python's version (a new pin is a new venv) under `$QWEN3_SCOPE_CACHE/venvs` (default `~/.cache/qwen3-scope`).
A venv is built in a temporary folder beside its place and moved there only once pip and an import probe succeeded:
an interrupted build leaves nothing that looks ready, and two processes building at once end with one complete venv.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

if os.name != "nt":
    import fcntl  # optional: POSIX only (the build lock); elsewhere builds are not locked

from qwen3_scope.core.errors import Qwen3ScopeError

READY_MARKER = "qwen3-scope-ready.json"  # written into a venv once pip and its import probe succeeded


class VenvBuildError(Qwen3ScopeError, RuntimeError):
    """A tool's virtual environment could not be built (the message carries the failing step's output)."""


def cache_root() -> Path:
    return Path(os.environ.get("QWEN3_SCOPE_CACHE") or Path.home() / ".cache" / "qwen3-scope")


def venv_dir(name: str, requirements: Sequence[str], no_deps: Sequence[str] = ()) -> Path:
    """`<cache>/venvs/<name>-<hash of the pins and this Python's version>`."""
    key = json.dumps([list(requirements), list(no_deps), sys.version_info[:2]]).encode()
    return cache_root() / "venvs" / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ready_python(name: str, requirements: Sequence[str], no_deps: Sequence[str] = ()) -> Path | None:
    """The Python of a venv `pinned_venv` completed, or None when there is none (nothing is built here)."""
    venv = venv_dir(name, requirements, no_deps)
    return venv_python(venv) if (venv / READY_MARKER).is_file() else None


def _run(command: list[str], what: str, fix: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise VenvBuildError(f"{what} failed (exit {done.returncode}); {fix}\n" + "\n".join(output[-40:]))


@contextlib.contextmanager
def _building(venv: Path) -> Iterator[None]:
    """Hold `<venv>.lock` while building: a second process (a test beside a prebuild) waits, then finds it ready."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        if os.name != "nt":
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pinned_venv(
    name: str,
    requirements: Sequence[str],
    *,
    no_deps: Sequence[str] = (),
    probe: str = "",
    fix: str = "check that pip can reach the package index and try again",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The Python of the venv `name` with `requirements` installed (and `no_deps` installed without their
    dependencies), built on first use; `probe` is Python code that must run in it before it counts as ready. A failed
    step raises `VenvBuildError` with pip's output and `fix`; never a silent fallback."""
    venv = venv_dir(name, requirements, no_deps)
    if (venv / READY_MARKER).is_file():
        return venv_python(venv)
    with _building(venv):
        if not (venv / READY_MARKER).is_file():  # not finished by another process while this one waited
            if progress:
                progress(f"building {name}'s environment ({', '.join([*requirements, *no_deps])}) in {venv} (once)")
            _build(venv, name, requirements, no_deps, probe, fix)
    return venv_python(venv)


def _build(venv: Path, name: str, requirements: Sequence[str], no_deps: Sequence[str], probe: str, fix: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.", dir=venv.parent))
    try:
        without_pip = [] if requirements or no_deps else ["--without-pip"]  # pip only where something is installed
        _run([sys.executable, "-m", "venv", "--system-site-packages", *without_pip, str(tmp)], "creating the venv", fix)
        pip = [str(venv_python(tmp)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if requirements:
            _run([*pip, *requirements], f"pip install {' '.join(requirements)}", fix)
        if no_deps:
            _run([*pip, "--no-deps", *no_deps], f"pip install --no-deps {' '.join(no_deps)}", fix)
        if probe:
            _run([str(venv_python(tmp)), "-c", probe], f"the import check in {name}'s venv", fix)
        (tmp / READY_MARKER).write_text(json.dumps({"requirements": list(requirements), "no_deps": list(no_deps)}))
        if venv.exists():  # a venv whose build was interrupted before the marker (or an older layout)
            shutil.rmtree(venv)
        os.replace(tmp, venv)  # a venv's bin/python works when its folder moves (pyvenv.cfg is found beside it)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
