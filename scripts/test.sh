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
python -m pytest -q "$@"
