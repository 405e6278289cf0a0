#!/usr/bin/env bash
# Install qwen3-scope and run the main job on the bundled model organism (the README's first command).
# Quick by default (every capability in a few minutes on a 2-core CPU, report in runs/demo/report.md); more options
# after the output directory go to `qwen3-scope demo`, e.g. `bash scripts/demo.sh runs/demo --full` for the full
# version that reproduces the README's tables, or `... --stages adapters organism`.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${QWEN3_SCOPE_TORCH-torch==2.13.0}"
if [ -n "$TORCH_SPEC" ] && ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "$TORCH_SPEC"
fi
python -m pip install -q -e .
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
qwen3-scope demo --out "${1:-runs/demo}" "${@:2}"
