"""The recipe on TESS: frozen EfficientNet-Lite0 (or another backbone), 10 epochs, fixed seed.

Runs the random, held-out-words and both cross-speaker protocols, prints a
Markdown table and writes JSON. Usage::

    python bench/tess_recipe.py [--data ../shared/data/tess] [--backbone efficientnet_lite0] [--json bench/results/tess_recipe.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from emovox.corpora import load_corpus
from emovox.features import FeatureConfig
from emovox.training.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = [
    ("random 70/15/15", dict(split="random")),
    ("held-out words", dict(split="words")),
    ("train OAF -> test YAF", dict(split="speaker", test_speakers=("YAF",))),
    ("train YAF -> test OAF", dict(split="speaker", test_speakers=("OAF",))),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tess")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--finetune", default="none")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "tess_recipe.json")
    args = ap.parse_args()

    utts = load_corpus("tess", args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for i, (name, kw) in enumerate(PROTOCOLS):
            t0 = time.perf_counter()
            cfg = TrainConfig(backbone=args.backbone, finetune=args.finetune, epochs=args.epochs, seed=args.seed, **kw)
            s = train(utts, Path(tmp) / f"run{i}", cfg, FeatureConfig(), cache_dir=cache, progress=False, log=lambda m: None)
            m = s["metrics"]
            rows.append({"protocol": name, "n_test": m["n"], "accuracy": m["accuracy"], "uar": m["uar"], "macro_f1": m["macro_f1"],
                         **{k: round(v, 2) for k, v in s["timings"].items()}, "total_s": round(time.perf_counter() - t0, 1)})
            print(f"done: {name}", flush=True)

    print(f"\nTESS, backbone {args.backbone} (finetune={args.finetune}), {args.epochs} epochs, seed {args.seed}")
    print("(features and embeddings are computed cold for the first row and come from the cache afterwards)\n")
    print("| protocol | n test | accuracy | UAR | macro-F1 | features s | backbone pass s | 10 epochs s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['n_test']} | {r['accuracy']:.2%} | {r['uar']:.2%} | {r['macro_f1']:.2%} | "
              f"{r['features_s']:.1f} | {r.get('backbone_pass_s', float('nan')):.1f} | {r['epochs_s']:.2f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"backbone": args.backbone, "finetune": args.finetune, "epochs": args.epochs, "seed": args.seed, "rows": rows}, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
