"""A virtual environment for `qwen3-scope bench` beside an environment whose numpy is 2.x (no torch import here).

SAEBench 0.6 pins numpy < 2 and datasets < 4; a main environment with numpy 2 cannot import it. `create_venv`
builds `python -m venv --system-site-packages DIR` and installs only what differs (the `bench` extra's pins and
SAEBench's light dependencies) into it, so torch, SAELens, TransformerLens and this package come from the main
environment. SAEBench itself is installed without its dependencies `torchvision` and `sae-probes`: the six evals
bench runs import neither, PyPI's torchvision wheel is a CUDA build that breaks transformers' imports beside a
CPU-only torch, and sae-probes pulls xgboost and NCCL (~330 MB). The directory is keyed by the pins, so a second
build is a no-op; `QWEN3_SCOPE_BENCH_PYTHON` names another interpreter to use instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from qwen3_scope.core.errors import Qwen3ScopeError

SAEBENCH = "sae-bench==0.6.0"
# the `bench` extra of pyproject.toml (tests/test_saebench.py checks they agree)
BENCH_EXTRA = (SAEBENCH, "numpy==1.26.4", "datasets==3.6.0", "pandas==2.3.3", "pyarrow<26")
# sae-bench 0.6's requirements that the six evals import, minus torchvision and sae-probes (see the docstring)
SAEBENCH_DEPS = (
    "beartype>=0.14.1",
    "collectibles>=0.1.5",
    "einops>=0.8.0",
    "jaxtyping>=0.2.25",
    "matplotlib>=3.8.4",
    "openai>=1.0.0",
    "plotly>=5.22.0",
    "pydantic>=2.9.2",
    "scikit-learn>=1.5.2",
    "seaborn>=0.13.2",
    "tabulate>=0.9.0",
    "tqdm>=4.66.4",
)
# the stack the resolution was made against; pip keeps the main environment's copies
STACK = ("sae-lens==6.54.12", "transformer-lens==3.9.0", "transformers==5.25.0", "torch==2.13.0")
PYTHON_ENV = "QWEN3_SCOPE_BENCH_PYTHON"


class BenchVenvError(Qwen3ScopeError):
    """The bench virtual environment could not be built (the message carries pip's output)."""


def venv_dir(root: str | Path | None = None) -> Path:
    """`~/.cache/qwen3-scope/venvs/saebench-<hash of the pins and this Python's version>`."""
    key = "\n".join([*BENCH_EXTRA, *SAEBENCH_DEPS, *STACK, sys.version.split()[0]])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    base = Path(root) if root else Path.home() / ".cache" / "qwen3-scope" / "venvs"
    return base / f"saebench-{digest}"


def venv_python(root: str | Path | None = None) -> Path:
    return venv_dir(root) / "bin" / "python"


def bench_python() -> Path | None:
    """The interpreter that can run `qwen3-scope bench`: `$QWEN3_SCOPE_BENCH_PYTHON`, else a built bench venv."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return Path(given)
    python = venv_python()
    ready = venv_dir() / ".complete"
    return python if python.exists() and ready.exists() else None


def _pip(python: Path, args: list[str]) -> str:
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchVenvError(
            f"pip install {' '.join(args)} failed in {python.parent.parent}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def create_venv(root: str | Path | None = None) -> Path:
    """Build (once) the bench venv; returns its Python. A failure is a `BenchVenvError` with pip's output."""
    target = venv_dir(root)
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    proc = subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(target)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise BenchVenvError(f"python -m venv {target} failed:\n{proc.stdout}\n{proc.stderr}")
    extra = [r for r in BENCH_EXTRA if r != SAEBENCH]
    _pip(python, [*extra, *SAEBENCH_DEPS, *STACK])
    _pip(python, ["--no-deps", SAEBENCH])
    (target / ".complete").write_text("\n".join(BENCH_EXTRA) + "\n")
    return python
