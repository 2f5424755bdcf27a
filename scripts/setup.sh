#!/usr/bin/env bash
# Create ./.venv and install emovox with its test dependencies (idempotent).
# Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  # A tested pair of releases; fall back to whatever pip resolves for this platform.
  pip install "torch==2.14.1" "torchvision==0.29.1" 2>/dev/null || pip install torch torchvision
fi
pip install -e ".[test,serve,vad,onnx,acoustic,augment,speech,batch,ray,diarize]"
.venv/bin/python -c "import emovox, torch; print('emovox', emovox.__version__, 'with torch', torch.__version__)"
