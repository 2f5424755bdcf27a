"""emovox batch against emovox predict: files/s and peak memory, whole process, on this machine's CPU.

    python bench/batch.py --data ../shared/data/ravdess [--model DIR] [--counts 1000,10000] [--json out.json]

The corpus's files are repeated (symbolic links with distinct names) up to each count. Each run is a fresh
process (``emovox batch ... --out DIR`` into an empty folder; ``emovox predict --format csv`` for the baseline at the
first count), timed from start to exit including start-up and model loading; peak RSS is the process's own
``ru_maxrss``. Prints a Markdown table; ``--json`` writes the numbers.
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

from emovox.corpora import audio_files

WRAPPER = (
    "import resource, sys\n"
    "from emovox.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(f'PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
    "raise SystemExit(rc)\n"
)


def run(args: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args[:2])} failed ({r.returncode}): {r.stderr[-800:]}")
    peak = next(int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("PEAK_RSS_KB"))
    return wall, peak / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    files = audio_files(args.data)
    model = ["--model", str(args.model)] if args.model else []
    rows = []
    print("| run | files | wall s | files/s | peak RSS MB |\n|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for i, n in enumerate(int(c) for c in args.counts.split(",")):
            folder = tmp / f"in{n}"
            folder.mkdir()
            for k in range(n):
                src = files[k % len(files)]
                os.symlink(src, folder / f"{k:06d}{src.suffix}")
            runs = [("emovox batch", ["batch", *model, "--quiet", str(folder), "--out", str(tmp / f"out{n}.parquet")])]
            if i == 0:
                runs.insert(0, ("emovox predict", ["predict", *model, "--format", "csv", str(folder)]))
            for name, cli in runs:
                wall, peak = run(cli)
                rows.append({"run": name, "files": n, "wall_s": round(wall, 1), "files_per_s": round(n / wall, 1), "peak_rss_mb": round(peak)})
                print(f"| {name} | {n} | {wall:.1f} | {n / wall:.1f} | {peak:.0f} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
