#!/usr/bin/env bash
# The main job: set up (once; only what prediction needs: emovox and ONNX Runtime), then predict the emotion of
# the example clips with the bundled default model. Extra arguments are passed to `emovox predict`
# (e.g. your own files: bash scripts/demo.sh my_voice.wav --top-k 3).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh --lean >&2
echo "set-up took $(( $(date +%s) - start )) s" >&2
if [ "$#" -eq 0 ]; then
  set -- examples/ --top-k 2
fi
exec .venv/bin/emovox predict "$@"
