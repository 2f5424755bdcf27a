"""Speed: the plain recipe's training loop against emovox's, and inference throughput.

    python bench/speed.py [--data ../shared/data/tess] [--limit N] [--json bench/results/speed.json]

1. Training, frozen backbone, 10 epochs: the plain recipe runs the frozen CNN
   forward over every training and validation spectrogram in every epoch (as
   the original tutorial does); emovox runs it once and trains the head on the
   embeddings. Both start from the same spectrograms (computed once, timed
   separately) and use the same split, seed, optimiser and head.
2. Inference with the bundled model: files per second and real-time factor
   (compute seconds per audio second) of `predict_files` over N files, batch
   and single-file latency (p50/p95, after warm-up), and peak RSS.
Prints Markdown tables and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from emovox import EmotionRecognizer
from emovox.corpora import load_corpus
from emovox.features import FeatureConfig
from emovox.model import EmotionClassifier
from emovox.training.splits import make_split
from emovox.training.data import model_inputs, prepare, score
from emovox.training.train import TrainConfig, fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]


def plain_recipe(model: EmotionClassifier, specs, y: torch.Tensor, split, cfg: TrainConfig, features: FeatureConfig) -> float:
    """The tutorial's loop: every batch goes through the frozen body again, every epoch. Returns test accuracy."""
    gen = seed_everything(cfg.seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    train_idx = torch.as_tensor(split.train)
    for _ in range(cfg.epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(order), cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            logits = model(model.encoders[0].images([specs[i] for i in b.tolist()]))
            loss = loss_fn(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():  # per-epoch validation, as in the recipe
            for start in range(0, len(split.val), 64):
                model(model.encoders[0].images([specs[i] for i in split.val[start : start + 64]]))
    with torch.inference_mode():
        pred = torch.cat([model(model.encoders[0].images([specs[i] for i in split.test[s : s + 64]])).argmax(1)
                          for s in range(0, len(split.test), 64)])
    return float((pred == y[torch.as_tensor(split.test)]).float().mean())


def training_comparison(data_dir: Path, limit: int | None, epochs: int) -> dict:
    utts = load_corpus("tess", data_dir)
    if limit:
        rng = np.random.default_rng(0)
        utts = [utts[i] for i in sorted(rng.choice(len(utts), limit, replace=False))]
    features = FeatureConfig()
    t0 = time.perf_counter()
    data = prepare(utts, features, use_cache=False, progress=False, log=lambda m: None)
    t_features = time.perf_counter() - t0
    cfg = TrainConfig(epochs=epochs)
    split = make_split("random", data.utts, seed=cfg.seed)
    labels = sorted({u.emotion for u in data.utts})
    y = torch.tensor([labels.index(u.emotion) for u in data.utts])

    seed_everything(cfg.seed)
    model = EmotionClassifier(cfg.backbone, labels, finetune="none")
    t0 = time.perf_counter()
    acc_plain = plain_recipe(model, data.specs, y, split, cfg, features)
    t_plain = time.perf_counter() - t0

    seed_everything(cfg.seed)
    model = EmotionClassifier(cfg.backbone, labels, finetune="none")
    t0 = time.perf_counter()
    inputs = model_inputs(model, data, progress=False)  # no embedding cache: a cold, honest pass
    t_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit(model, inputs, y, split, cfg, features, progress=False)
    t_epochs = time.perf_counter() - t0
    acc_emovox = score(model, inputs, split.test, data.utts, features)[0]["accuracy"]
    return {"files": len(data.utts), "epochs": epochs, "features_s": t_features,
            "plain_train_s": t_plain, "plain_accuracy": acc_plain,
            "emovox_backbone_pass_s": t_pass, "emovox_epochs_s": t_epochs, "emovox_accuracy": acc_emovox,
            "speedup_training": t_plain / (t_pass + t_epochs),
            "speedup_end_to_end": (t_features + t_plain) / (t_features + t_pass + t_epochs)}


def inference(data_dir: Path, n_files: int, batch_size: int, engine: str, model: str | None = None) -> dict:
    """Throughput, latency and peak memory of predict_files in this (fresh) process."""
    paths = sorted(data_dir.rglob("*.flac"))
    paths = [paths[i % len(paths)] for i in range(n_files)]
    audio_s = sum(sf.info(p).duration for p in paths)
    rec = EmotionRecognizer.load(model, engine=engine)
    list(rec.predict_files(paths[:8], batch_size=8))  # warm-up
    t0 = time.perf_counter()
    n = sum(1 for r in rec.predict_files(paths, batch_size=batch_size) if not isinstance(r, Exception))
    total = time.perf_counter() - t0
    clip = next(p for p in paths if 2.8 <= sf.info(p).duration <= 3.2) if any(2.8 <= sf.info(p).duration <= 3.2 for p in paths[:200]) else paths[0]
    for _ in range(3):
        rec.predict(clip)
    lat = []
    for _ in range(30):
        t = time.perf_counter()
        rec.predict(clip)
        lat.append(time.perf_counter() - t)
    import os

    return {"engine": engine, "backbone": rec.model.backbone, "cores": len(os.sched_getaffinity(0)), "files": n, "audio_s": audio_s, "seconds": total, "files_per_s": n / total,
            "rtf": total / audio_s, "clip_s": sf.info(clip).duration,
            "latency_p50_ms": 1000 * float(np.percentile(lat, 50)), "latency_p95_ms": 1000 * float(np.percentile(lat, 95)),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not carry over a parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference_in_child(data_dir: Path, n_files: int, batch_size: int, engine: str, *, cores: int = 2, model: Path | None = None) -> dict:
    """Run :func:`inference` in a new process (own peak memory), pinned to ``cores`` CPU cores."""
    import os
    import subprocess

    cmd = [sys.executable, __file__, "--child", engine, "--files", str(n_files), "--batch-size", str(batch_size), "--data", str(data_dir)]
    if model:
        cmd += ["--model", str(model)]
    env = dict(os.environ)
    if cores < len(os.sched_getaffinity(0)):
        cmd = ["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:cores]))] + cmd
        env["OMP_NUM_THREADS"] = str(cores)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def vgg16_model(tmp: Path) -> Path:
    """A VGG16 classifier folder with its ONNX export, for timing (random weights: no download here; speed is the same)."""
    from emovox.inference.export import export_onnx
    from emovox.model import save_model

    seed_everything(0)
    model = EmotionClassifier("vgg16", ["angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise"], weights=None)
    d = save_model(model, tmp / "vgg16", FeatureConfig())
    export_onnx(d)
    return d


def int8_cost(ravdess: Path) -> dict:
    """Accuracy of the bundled model's fp32 and int8 ONNX exports on the held-out RAVDESS actors 17-18."""
    import shutil
    import tempfile

    from emovox.inference.export import export_onnx
    from emovox.inference.recognizer import DEFAULT_MODEL
    from emovox.training.evaluate import evaluate

    utts = [u for u in load_corpus("ravdess", ravdess) if u.speaker in ("17", "18")]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "m"
        shutil.copytree(DEFAULT_MODEL, d)
        export_onnx(d, quantize=True, overwrite=True)
        acc = {e: evaluate(EmotionRecognizer.load(d, engine=e), utts, use_cache=False, progress=False)["accuracy"] for e in ("onnx", "onnx-int8")}
    return {"n": len(utts), "accuracy_fp32": acc["onnx"], "accuracy_int8": acc["onnx-int8"]}


def measure_inference(args: argparse.Namespace, out: dict) -> None:
    """The inference rows (both engines, 1 and 2 cores, cost growth, VGG16) and int8's accuracy cost."""
    rows = out["inference"] = [inference_in_child(args.data, args.files, args.batch_size, e, cores=c)
                               for e, c in (("onnx", 2), ("onnx", 1), ("torch", 2), ("torch", 1))]
    rows += [inference_in_child(args.data, n, args.batch_size, "onnx") for n in map(int, args.growth.split(",")) if n != args.files]
    if not args.skip_vgg16:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            vgg = vgg16_model(Path(tmp))
            n_vgg = max(50, args.files // 10)
            rows += [inference_in_child(args.data, n_vgg, args.batch_size, e, model=vgg) for e in ("onnx", "torch")]
    print(f"\nInference, batch {args.batch_size}; times include decoding and log-mels; every clip is analysed as 3 s\n")
    print("| backbone | engine | cores | files | files/s | real-time factor | single clip p50 ms | p95 ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['engine']} | {r['cores']} | {r['files']} | {r['files_per_s']:.1f} | {r['rtf']:.4f} | "
              f"{r['latency_p50_ms']:.0f} | {r['latency_p95_ms']:.0f} | {r['peak_rss_mb']:.0f} |")
    if args.ravdess.is_dir():
        q = out["int8"] = int8_cost(args.ravdess)
        print(f"\nint8 (dynamic quantisation) vs fp32 ONNX, bundled model, held-out RAVDESS actors 17-18 (n={q['n']}): "
              f"accuracy {q['accuracy_int8']:.1%} vs {q['accuracy_fp32']:.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tess")
    ap.add_argument("--limit", type=int, default=None, help="use N random TESS files for the training comparison")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--files", type=int, default=1000, help="files for the inference measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--growth", default="100,1000,5000", help="file counts for the cost-growth rows (ONNX engine)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--ravdess", type=Path, default=ROOT.parent / "shared" / "data" / "ravdess")
    ap.add_argument("--skip-vgg16", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(inference(args.data, args.files, args.batch_size, args.child, args.model)))
        return
    out: dict = {"torch": torch.__version__, "cores": torch.get_num_threads()}
    if not args.skip_training:
        tr = out["training"] = training_comparison(args.data, args.limit, args.epochs)
        print(f"\nTraining, frozen EfficientNet-Lite0, {tr['epochs']} epochs, {tr['files']} TESS files (random split)\n", file=sys.stderr)
        print("| | spectrograms s | CNN s | epochs s | total s | test accuracy |\n|---|---|---|---|---|---|")
        print(f"| plain recipe (CNN every epoch) | {tr['features_s']:.1f} | (in epochs) | {tr['plain_train_s']:.1f} | "
              f"{tr['features_s'] + tr['plain_train_s']:.1f} | {tr['plain_accuracy']:.2%} |")
        print(f"| emovox (one cached pass) | {tr['features_s']:.1f} | {tr['emovox_backbone_pass_s']:.1f} | {tr['emovox_epochs_s']:.2f} | "
              f"{tr['features_s'] + tr['emovox_backbone_pass_s'] + tr['emovox_epochs_s']:.1f} | {tr['emovox_accuracy']:.2%} |")
        print(f"\nspeed-up: training {tr['speedup_training']:.1f}x, end to end {tr['speedup_end_to_end']:.1f}x")
    if not args.skip_inference:
        measure_inference(args, out)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
