#!/usr/bin/env bash
# Static checks (configuration in pyproject.toml): ruff lint, ruff format check, mypy over the package.
# Installs ruff and mypy when missing (the `dev` extra). Every step runs; the script fails if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python -m ruff --version >/dev/null 2>&1 || ! python -m mypy --version >/dev/null 2>&1; then
  python -m pip install -q "ruff>=0.6" "mypy>=1.10"
fi
status=0
echo "== ruff check";         python -m ruff check . || status=1
echo "== ruff format --check"; python -m ruff format --check . || status=1
echo "== mypy qwen3_scope";   python -m mypy qwen3_scope || status=1
exit $status
