#!/usr/bin/env bash
# Install qwen3-scope with its test extras and run the test suite (the README's second command).
# torch is installed first and pinned so pip takes the CPU build on this kind of machine; a GPU user who
# already has a CUDA torch >= 2.6 keeps it (set QWEN3_SCOPE_TORCH= to skip the pin).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${QWEN3_SCOPE_TORCH-torch==2.13.0}"
if [ -n "$TORCH_SPEC" ] && ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "$TORCH_SPEC"
fi
python -m pip install -q -e ".[test]"
# the offline viewer's browser test drives Debian's chromium (no browser download at install time)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
fi
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
# circuit-tracer and SAEBench pin other versions, so their tests run them in venvs of their own, built once and cached
# (qwen3_scope/core/venvs.py). Building is mostly download time: start it now, beside the tests; a test that needs a
# venv waits on its lock and fails with pip's output if the build failed. Nothing to do when both are cached.
PREBUILD='from qwen3_scope.evaluation.bench_env import create_venv
from qwen3_scope.export.circuit_tracer import circuit_tracer_python
create_venv(); circuit_tracer_python(None)'
python -c "$PREBUILD" >/dev/null 2>&1 &
# OpenMP's waiting threads sleep instead of spinning: a spinning thread on a shared machine slows every other process
# (and the tests' own child processes) several times over. torch reads it once, when it loads; so it is set here.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# Parallel test processes (pytest-xdist), one per core this process may use (at most 4: the tests' own child
# processes need cores too); each worker runs torch on 1 thread (tests/conftest.py). `--dist loadfile` keeps a test
# file on one worker, so its module-scoped fixtures (a trained suite, an app run) are built once, not per worker;
# `--no-loadscope-reorder` hands the files out in collection order, which tests/conftest.py makes longest first
# (xdist's own order, by number of tests, can start a minutes-long file last, alone on one worker).
# QWEN3_SCOPE_TEST_WORKERS=1 runs the suite in this process; extra arguments go to pytest
# (e.g. `bash scripts/test.sh tests/test_training.py`). The 25 slowest tests are listed at the end: the fast loop's
# running record (issue 25).
CORES_PY='import qwen3_scope_cli; qwen3_scope_cli.starting = True
from qwen3_scope.core.threads import available_cores; print(min(4, available_cores()))' # affinity and cgroup quota
WORKERS="${QWEN3_SCOPE_TEST_WORKERS:-$(python -c "$CORES_PY")}"
if [ "$WORKERS" -gt 1 ]; then
  python -m pytest -q --durations=25 -n "$WORKERS" --dist loadfile --no-loadscope-reorder "$@"
else
  python -m pytest -q --durations=25 "$@"
fi
