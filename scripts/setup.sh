#!/usr/bin/env bash
# Create ./.venv and install emovox into it (idempotent).
# Usage: bash scripts/setup.sh          everything the tests need (all extras)
#        bash scripts/setup.sh --lean   only what prediction needs: the package and ONNX Runtime
# A CPU-only PyTorch (no CUDA libraries, ~0.2 GB instead of ~5 GB) is installed first when
# EMOVOX_TORCH_INDEX=https://download.pytorch.org/whl/cpu is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS="test,docs,serve,vad,onnx,acoustic,augment,speech,batch,ray,diarize"
if [ "${1:-}" = "--lean" ]; then
  EXTRAS="run"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  if [ -n "${EMOVOX_TORCH_INDEX:-}" ]; then
    pip install torch torchvision --index-url "$EMOVOX_TORCH_INDEX"
  else
    # A tested pair of releases; fall back to whatever pip resolves for this platform.
    pip install "torch==2.14.1" "torchvision==0.29.1" 2>/dev/null || pip install torch torchvision
  fi
fi
pip install -e ".[$EXTRAS]"
.venv/bin/python -c "import emovox, torch; print('emovox', emovox.__version__, 'with torch', torch.__version__)"
