#!/usr/bin/env bash
# The recipe end to end: set up, train on TESS (held-out words), evaluate, predict.
# Usage: bash scripts/demo.sh [TESS_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
TESS=${1:-../shared/data/tess}
RUN=${2:-runs/demo-tess}
if [ ! -d "$TESS" ]; then
  echo "TESS not found at $TESS: pass its folder as the first argument" >&2
  exit 1
fi
bash scripts/setup.sh
E=.venv/bin/emovox
$E train --corpus tess --data "$TESS" --backbone efficientnet_lite0 --split words --epochs 10 --out "$RUN" --overwrite
$E predict --model "$RUN/model" --top-k 2 "$TESS/YAF_happy/YAF_youth_happy.flac" "$TESS/OAF_sad/OAF_youth_sad.flac" "$TESS/YAF_fear/YAF_youth_fear.flac"
echo "run folder: $RUN (model/, metrics.json, confusion.png, curves.png, history.json)"
