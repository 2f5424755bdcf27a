"""Train the default model bundled with emovox (one command, reproducible).

    .venv/bin/python scripts/train_default.py [--tess DIR] [--ravdess DIR]

Recipe: log-mel spectrograms, EfficientNet-Lite0 (ImageNet, frozen) with a
new head, Adam + cross-entropy, 10 epochs, seed 0, on TESS + RAVDESS with the
canonical labels. RAVDESS actors 15-16 are the validation part (model
selection and temperature scaling); actors 17-18 are never trained on and
give the held-out numbers in MODEL_CARD.md. The weights are stored in fp16
in src/emovox/models/default/, the metrics in bench/results/default_model.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from emovox.corpora import load_corpus
from emovox.features import FeatureConfig
from emovox.model import load_model, save_model
from emovox.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VAL = ("ravdess:15", "ravdess:16")
TEST = ("ravdess:17", "ravdess:18")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tess", type=Path, default=DATA / "tess")
    ap.add_argument("--ravdess", type=Path, default=DATA / "ravdess")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "emovox" / "models" / "default")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "default_model.json")
    args = ap.parse_args()

    utts = load_corpus("tess,ravdess", [args.tess, args.ravdess])
    cfg = TrainConfig(backbone="efficientnet_lite0", finetune="none", split="speaker", test_speakers=TEST, val_speakers=VAL,
                      epochs=10, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(utts, Path(tmp) / "run", cfg, FeatureConfig())
        model, features, config = load_model(Path(tmp) / "run" / "model")
        training = config["training"] | {"data": "TESS (OAF, YAF) + RAVDESS actors 01-14; validation: RAVDESS actors 15-16", "held_out": list(TEST)}
        if args.out.exists():
            shutil.rmtree(args.out)
        save_model(model, args.out, features, training, half=True)
    m = summary["metrics"]
    result = {"held_out_speakers": list(TEST), "validation_speakers": list(VAL), "n": m["n"], "accuracy": m["accuracy"],
              "uar": m["uar"], "macro_f1": m["macro_f1"], "per_class": m["per_class"], "confusion": m["confusion"],
              "labels": m["labels"], "calibration": m["calibration"], "timings": summary["timings"],
              "size_bytes": (args.out / "model.safetensors").stat().st_size}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    c = m["calibration"]
    print(f"\nheld-out RAVDESS actors 17-18 (n={m['n']}): accuracy {m['accuracy']:.1%}, UAR {m['uar']:.1%}, macro-F1 {m['macro_f1']:.1%}")
    print(f"temperature {c['temperature']:.2f}: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}")
    print(f"model written to {args.out} ({result['size_bytes'] / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
