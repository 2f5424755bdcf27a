"""emovox batch (local and Ray engines) against emovox predict: files/s and peak memory on this machine's CPU.

    python bench/batch.py --data ../shared/data/ravdess [--model DIR] [--counts 1000,10000] [--engines local,ray]
        [--json out.json]
    python bench/batch.py --data ../shared/data/ravdess --interrupt 10000 [--interrupt-after 120] [--json out.json]

The corpus's files are repeated (symbolic links with distinct names) up to each count. Each run is a fresh
process (``emovox batch --engine E ... --out DIR`` into an empty folder; ``emovox predict --format csv`` for the
baseline at the first count), timed from start to exit including start-up, model loading and, for Ray, starting a
local Ray instance with every CPU. Memory: the peak, sampled every 0.5 s, of the summed proportional set size
(PSS, shared pages split between the processes that map them) of the process and all its descendants (Ray's
raylet, object store and workers included). Prints a Markdown table; ``--json`` writes the numbers.

``--interrupt N``: for each engine, start a batch of N files, stop it after ``--interrupt-after`` seconds (the
local engine with SIGKILL, as if the machine went away; the Ray engine with SIGINT, Ctrl-C, so that Ray stops its
workers), run the same command again to the end, and check that every input is in the dataset exactly once.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from emovox.corpora import audio_files

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree_pss_mb(root: int) -> float:
    """Summed PSS of ``root`` and its descendants (Linux ``/proc/PID/smaps_rollup``)."""
    kids, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total / 1024


def run(args: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "emovox", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    peak = 0.0
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    while proc.poll() is None:
        peak = max(peak, tree_pss_mb(proc.pid))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    reader.join(5)
    if proc.returncode not in ((0, 1) if args[0] == "predict" else (0,)):  # predict: 1 = some files skipped
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}): {''.join(stderr)[-800:]}")
    return wall, peak


def link_files(files: list[Path], folder: Path, n: int) -> None:
    folder.mkdir()
    for k in range(n):
        src = files[k % len(files)]
        os.symlink(src, folder / f"{k:06d}{src.suffix}")


def interrupted(files: list[Path], n: int, after: float, engines: list[str], model: list[str], tmp: Path) -> list[dict]:
    """Stop a batch run midway, rerun it, count what the dataset holds."""
    import signal

    import pyarrow.dataset as pads

    folder = tmp / f"in{n}"
    link_files(files, folder, n)
    rows = []
    for e in engines:
        out = tmp / f"interrupted-{e}.parquet"
        cli = [sys.executable, "-m", "emovox", "batch", "--engine", e, *model, "--quiet", str(folder), "--out", str(out)]
        # Ctrl-C reaches the run as in a terminal (a background shell would start it with SIGINT ignored).
        proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(after)
        proc.send_signal(signal.SIGKILL if e == "local" else signal.SIGINT)
        proc.wait()
        before = pads.dataset(out).count_rows() if any(out.glob("part-*.parquet")) else 0
        r = subprocess.run(cli, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"rerun failed: {r.stderr[-800:]}")
        paths = pads.dataset(out).to_table(columns=["path"]).column("path").to_pylist()
        row = {"engine": e, "files": n, "stopped_after_s": after, "signal": "SIGKILL" if e == "local" else "SIGINT",
               "rows_before_rerun": before, "rows": len(paths), "distinct_inputs": len(set(paths)),
               "every_input_once": len(paths) == n == len(set(paths))}
        rows.append(row)
        print(f"| {e} | {n} | {row['signal']} after {after:g} s | {before} | {len(paths)} | {len(set(paths))} | "
              f"{row['every_input_once']} |", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--engines", default="local,ray", help="batch engines to run (default: %(default)s)")
    ap.add_argument("--interrupt", type=int, default=0, metavar="N", help="check resuming after an interruption on N files")
    ap.add_argument("--interrupt-after", type=float, default=120.0, metavar="S")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    files = audio_files(args.data)
    model = ["--model", str(args.model)] if args.model else []
    rows = []
    if args.interrupt:
        print("| engine | files | stopped | rows before rerun | rows after | distinct inputs | every input once |\n"
              "|---|---|---|---|---|---|---|", flush=True)
        with tempfile.TemporaryDirectory() as tmp_s:
            rows = interrupted(files, args.interrupt, args.interrupt_after, args.engines.split(","), model, Path(tmp_s))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"data": str(args.data), "interrupted": rows}, indent=2) + "\n")
        return
    print("| run | files | wall s | files/s | peak PSS MB (process tree) |\n|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for i, n in enumerate(int(c) for c in args.counts.split(",")):
            folder = tmp / f"in{n}"
            link_files(files, folder, n)
            runs = [(f"emovox batch --engine {e}", ["batch", "--engine", e, *model, "--quiet", str(folder), "--out",
                                                     str(tmp / f"out{n}-{e}.parquet")]) for e in args.engines.split(",")]
            if i == 0:
                runs.insert(0, ("emovox predict", ["predict", *model, "--format", "csv", str(folder)]))
            for name, cli in runs:
                wall, peak = run(cli)
                rows.append({"run": name, "files": n, "wall_s": round(wall, 1), "files_per_s": round(n / wall, 1), "peak_pss_mb": round(peak)})
                print(f"| {name} | {n} | {wall:.1f} | {n / wall:.1f} | {peak:.0f} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"data": str(args.data), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
