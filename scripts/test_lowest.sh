#!/usr/bin/env bash
# Install the LOWEST versions pyproject.toml allows for torch, transformers, transformer-lens and sae-lens into a
# throwaway venv, import the package and run the fast tests there. Why: lower bounds that nobody tests rot
# (transformers < 5 silently ignores the organism's `rope_parameters`). Measured here: ~1m50 for the first
# install (torch 2.6 comes with its CUDA wheels from PyPI, ~3 GB), ~25 s for the tests; a second run reuses the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${QWEN3_SCOPE_LOWEST_VENV:-/tmp/qwen3-scope-lowest}"
# The lower bound of each pinned package, read from pyproject.toml (so this script cannot drift from it).
PINS=$(python - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    m = re.match(r"^(torch|transformers|transformer-lens|sae-lens)>=([0-9.]+)", dep)
    if m:
        print(f"{m[1]}=={m[2]}")
PY
)
echo "lowest allowed versions: $(echo $PINS)"
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q $PINS -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" - $PINS <<'PY'
import sys
from importlib.metadata import version
from packaging.version import Version
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    got = version(name)
    assert Version(Version(got).base_version) == Version(want), f"{name}: wanted {want}, the venv has {got}"
    print(f"  {name} {got}")
PY
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
"$VENV/bin/python" -c "import torch, qwen3_scope; print('import ok with torch', torch.__version__)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_sites.py tests/test_models.py tests/test_releases.py \
  tests/test_fast_saes.py tests/test_compat.py tests/test_import_side_effects.py "$@"
