"""Inference speed of the bundled default model: PyTorch fp32 vs ONNX Runtime fp32 vs int8.

Measures the classifier alone on precomputed images (feature extraction is
not included): throughput at batch 32, single-image latency p50/p95 after a
warm-up, and how often the int8 model's argmax agrees with fp32 on random
images. Prints a Markdown table and writes bench/results/speed_onnx.json.

    .venv/bin/python bench/speed_onnx.py [--seconds 4] [--out bench/results/speed_onnx.json]

Needs ``pip install 'emovox[onnx]'``. The model folder is copied to a
temporary folder before exporting, so the package is left untouched.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emovox.inference.engine import INT8_FILE, Engine, OnnxEngine, TorchEngine
from emovox.runtime.onnx import usable_cores
from emovox.inference.export import export_onnx
from emovox.features import to_image
from emovox.model import load_model
from emovox.inference.recognizer import DEFAULT_MODEL

BATCH = 32
N_AGREE = 200


def throughput(engine: Engine, images: np.ndarray, seconds: float) -> float:
    """Images per second at batch ``len(images)`` (one warm-up batch, then at least 3 timed batches)."""
    engine.logits(images)
    n, start = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - start < seconds:
        engine.logits(images)
        n += 1
    return n * len(images) / (time.perf_counter() - start)


def latency(engine: Engine, images: np.ndarray, seconds: float) -> tuple[float, float, int]:
    """p50 and p95 milliseconds for one image (3 warm-up calls; at least 10 timed calls)."""
    for i in range(3):
        engine.logits(images[i % len(images)][None])
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 10 or time.perf_counter() - start < seconds:
        x = images[len(times) % len(images)][None]
        t = time.perf_counter()
        engine.logits(x)
        times.append(1000 * (time.perf_counter() - t))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), len(times)


def logits_of(engine: Engine, images: np.ndarray) -> np.ndarray:
    return np.concatenate([engine.logits(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])


def spectrogram_like(n: int, size: int, mean, std, rng: np.random.Generator) -> np.ndarray:
    """Images made the recognizer's way from random spectrogram-like arrays (band profile x envelope + noise)."""
    t = np.linspace(0, 1, 301)
    specs = [-80 + 80 * np.clip(rng.uniform(0, 1, (128, 1)) ** rng.uniform(0.5, 3)
                                * np.abs(np.sin(2 * np.pi * rng.uniform(1, 8) * t + rng.uniform(0, 6)))
                                + 0.2 * rng.standard_normal((128, 301)), 0, 1) for _ in range(n)]
    return to_image(np.stack(specs).astype(np.float32), size, mean, std).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: the bundled model)")
    ap.add_argument("--seconds", type=float, default=4.0, help="time spent on each throughput and latency measurement")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "speed_onnx.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(args.model, folder, ignore=shutil.ignore_patterns("*.onnx"))
        t = time.perf_counter()
        fp32_path = export_onnx(folder, quantize=True)
        export_s = time.perf_counter() - t
        model, features, _ = load_model(folder)
        size = features.image_size
        cores, torch_threads = usable_cores(), torch.get_num_threads()
        mib = {"torch": (folder / "model.safetensors").stat().st_size / 2**20, "fp32": fp32_path.stat().st_size / 2**20,
               "int8": (folder / INT8_FILE).stat().st_size / 2**20}
        # (name, threads, file, engine factory); PyTorch's thread count is process-wide, so it is set per row.
        configs = [
            (f"PyTorch fp32, {torch_threads} threads (default)", torch_threads, "torch", lambda: TorchEngine(model, torch_threads)),
            ("PyTorch fp32, 1 thread", 1, "torch", lambda: TorchEngine(model, 1)),
            (f"ONNX Runtime fp32, {cores} threads (default)", cores, "fp32", lambda: OnnxEngine(fp32_path)),
            ("ONNX Runtime fp32, 1 thread", 1, "fp32", lambda: OnnxEngine(fp32_path, threads=1)),
            (f"ONNX Runtime int8, {cores} threads (default)", cores, "int8", lambda: OnnxEngine(folder / INT8_FILE)),
        ]
        rng = np.random.default_rng(0)
        batch = rng.standard_normal((BATCH, 3, size, size)).astype(np.float32)
        rows = []
        for name, threads, file, make in configs:
            engine = make()
            ips = throughput(engine, batch, args.seconds)
            p50, p95, n = latency(engine, batch, args.seconds)
            rows.append({"engine": name, "threads": threads, "images_per_s_batch32": ips, "latency_ms_p50": p50,
                         "latency_ms_p95": p95, "latency_calls": n, "file_mib": mib[file]})
        torch.set_num_threads(torch_threads)

        agreement = {}
        fp32, int8_engine = OnnxEngine(fp32_path), OnnxEngine(folder / INT8_FILE)
        sets = {"gaussian noise": rng.standard_normal((N_AGREE, 3, size, size)).astype(np.float32),
                "spectrogram-like": spectrogram_like(N_AGREE, size, model.spec.mean, model.spec.std, rng)}
        for set_name, images in sets.items():
            onnx, int8 = logits_of(fp32, images), logits_of(int8_engine, images)
            p_onnx, p_int8 = (torch.softmax(torch.from_numpy(v), 1).numpy() for v in (onnx, int8))
            agreement[set_name] = {
                "n": N_AGREE,
                "int8_vs_fp32_argmax_agreement": float(np.mean(int8.argmax(1) == onnx.argmax(1))),
                "int8_vs_fp32_max_prob_diff": float(np.abs(p_int8 - p_onnx).max()),
                "fp32_classes": np.bincount(onnx.argmax(1), minlength=len(model.labels)).tolist(),
            }

    import onnxruntime

    result = {
        "model": str(args.model), "backbone": model.backbone, "image_size": size, "batch": BATCH,
        "rows": rows, "agreement": agreement, "export_s": export_s, "total_s": time.perf_counter() - t0,
        "machine": {"cpu": platform.processor() or platform.machine(), "usable_cores": cores,
                    "torch_default_threads": torch_threads, "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    base = rows[0]
    print(f"{model.backbone}, {size}x{size} images, {usable_cores()} usable cores "
          f"(load average {load_start[0]:.1f} at start, {result['machine']['loadavg_end'][0]:.1f} at end)\n")
    print("| engine | images/s (batch 32) | speed-up | latency p50 (ms) | latency p95 (ms) | file (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['images_per_s_batch32']:.1f} | {r['images_per_s_batch32'] / base['images_per_s_batch32']:.2f}x "
              f"| {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | {r['file_mib']:.1f} |")
    print()
    print(f"| {N_AGREE} random images | int8 vs fp32 argmax agreement | int8 vs fp32 max prob. diff | fp32 predicted classes |")
    print("|---|---:|---:|---|")
    for set_name, a in agreement.items():
        print(f"| {set_name} | {a['int8_vs_fp32_argmax_agreement']:.1%} | {a['int8_vs_fp32_max_prob_diff']:.3f} "
              f"| {a['fp32_classes']} |")
    print(f"\nexport (with int8) {export_s:.1f} s; total {result['total_s']:.0f} s; JSON: {args.out}")


if __name__ == "__main__":
    main()
