"""Speed of a speech-encoder model (``--recipe speech``) on this machine's CPU.

    python bench/speech_speed.py MODEL_DIR --data ../shared/data/ravdess [--files 1000] [--json out.json]

1. Single-file latency: ``EmotionRecognizer.predict(path)`` on one 3-s clip at a
   time (decode, trim, encoder, head), p50 / p95 over 50 clips after warm-up.
2. Throughput, whole process: ``emovox predict`` over ``--files`` files (the
   corpus's files repeated as needed) in a fresh process, wall time including
   start-up and model loading; real-time factor = wall seconds / audio seconds.
Prints a Markdown table and, with ``--json``, writes the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.corpora import audio_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="a folder of audio files (e.g. RAVDESS)")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    files = audio_files(args.data)
    rec = EmotionRecognizer.load(args.model)
    for f in files[:5]:
        rec.predict(f)  # warm-up (first calls allocate)
    lat = []
    for f in files[5:55]:
        t0 = time.perf_counter()
        rec.predict(f)
        lat.append(time.perf_counter() - t0)
    chosen = [files[i % len(files)] for i in range(args.files)]
    audio_s = sum(sf.info(str(f)).duration for f in chosen)
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "inputs"
        lst.mkdir()
        for i, f in enumerate(chosen):  # links: the same audio many times, each a file of its own
            os.symlink(Path(f).resolve(), lst / f"{i:05d}{Path(f).suffix}")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "emovox.cli", "predict", "--model", str(args.model), "--format", "csv", str(lst)],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    out = {"single_p50_ms": 1000 * float(np.percentile(lat, 50)), "single_p95_ms": 1000 * float(np.percentile(lat, 95)),
           "files": args.files, "audio_s": audio_s, "wall_s": wall, "files_per_s": args.files / wall, "rtf": wall / audio_s,
           "engine": rec.engine.name, "cores": os.cpu_count()}
    print("| single clip p50 | p95 | files | audio | wall (whole process) | files/s | real-time factor |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {out['single_p50_ms']:.0f} ms | {out['single_p95_ms']:.0f} ms | {args.files} | {audio_s:.0f} s | {wall:.1f} s | "
          f"{out['files_per_s']:.1f} | {out['rtf']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
