"""Fit the bundled default model's familiarity gate (its out-of-distribution gate) without re-training its heads.

    .venv/bin/python scripts/fit_default_gate.py [--tess DIR] [--ravdess DIR] [--nemo DIR] [--model DIR]

The statistics come from the model's training speech (TESS, RAVDESS, nEMO, each file, its timeline cut and its
channel copies as the model was trained with them: rooms, telephone lines, codecs, babble, noise), never
from what MODEL_CARD.md holds out (RAVDESS actors 17-18, 20 TESS words: they stay unseen, so bench/ood.py can
measure how much real held-out speech the gate lets through). ``scripts/train_default.py`` fits the gate itself;
this script adds it to a model trained before the gate existed. Writes ``familiarity.safetensors`` and the
``familiarity`` entry of ``config.json``; the weights are not touched.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from emovox.corpora import load_corpus
from emovox.training.train import add_familiarity

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tess", type=Path, default=SHARED / "data" / "tess")
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--nemo", type=Path, default=SHARED / "data" / "nemo")
    ap.add_argument("--model", type=Path, default=ROOT / "src" / "emovox" / "models" / "default")
    args = ap.parse_args()
    training = json.loads((args.model / "config.json").read_text())["training"]
    utts = load_corpus("tess,ravdess,nemo", [args.tess, args.ravdess, args.nemo])
    add_familiarity(args.model, utts, exclude=training.get("held_out", []), exclude_texts=training.get("held_out_words", []))


if __name__ == "__main__":
    main()
