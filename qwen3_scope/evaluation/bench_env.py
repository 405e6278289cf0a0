"""A virtual environment for `qwen3-scope bench` beside an environment whose numpy is 2.x (no torch import here).

SAEBench 0.6 pins numpy < 2 and datasets < 4; a main environment with numpy 2 cannot import it. `create_venv`
builds (`core.venvs.pinned_venv`) a `--system-site-packages` venv and installs only what differs (the `bench` extra's
pins and SAEBench's light dependencies) into it, so torch, SAELens, TransformerLens and this package come from the
main environment. SAEBench itself is installed without its dependencies `torchvision` and `sae-probes`: the six evals
bench runs import neither, PyPI's torchvision wheel is a CUDA build that breaks transformers' imports beside a
CPU-only torch, and sae-probes pulls xgboost and NCCL (~330 MB). The directory is keyed by the pins, so a second
build is a no-op; `QWEN3_SCOPE_BENCH_PYTHON` names another interpreter to use instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from qwen3_scope.core import venvs

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
VENV_NAME = "saebench"
# what pip installs into the venv with dependencies; SAEBench itself goes in without them (see the docstring)
REQUIREMENTS = (*(r for r in BENCH_EXTRA if r != SAEBENCH), *SAEBENCH_DEPS, *STACK)


def venv_dir() -> Path:
    """The bench venv's folder (`core.venvs`: keyed by the pins and this Python's version)."""
    return venvs.venv_dir(VENV_NAME, REQUIREMENTS, (SAEBENCH,))


def bench_python() -> Path | None:
    """The interpreter that can run `qwen3-scope bench`: `$QWEN3_SCOPE_BENCH_PYTHON`, else a built bench venv."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return Path(given)
    return venvs.ready_python(VENV_NAME, REQUIREMENTS, (SAEBENCH,))


def create_venv() -> Path:
    """Build (once) the bench venv; returns its Python. A failure is a `VenvBuildError` with pip's output."""
    return venvs.pinned_venv(
        VENV_NAME,
        REQUIREMENTS,
        no_deps=(SAEBENCH,),
        probe="import sae_bench.evals.core.main",
        fix="SAEBench needs its own environment (numpy < 2, datasets < 4). Check that pip can reach the package index "
        "and try again.",
    )
