#!/usr/bin/env bash
# Install qwen3-scope and run the main job on the bundled model organism (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${QWEN3_SCOPE_TORCH-torch==2.13.0}"
if [ -n "$TORCH_SPEC" ] && ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "$TORCH_SPEC"
fi
python -m pip install -q -e .
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
qwen3-scope demo --out "${1:-runs/demo}"
