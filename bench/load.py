"""Load test of the web service: N concurrent clients send M prediction requests.

Starts ``emovox.serve`` on 127.0.0.1 in a subprocess (with the given model, or
a small randomly initialised one), posts a synthetic clip from ``--clients``
threads until ``--requests`` are answered or ``--time-limit`` seconds pass,
prints throughput, latency percentiles and errors, and writes JSON. Usage::

    python bench/load.py [--model runs/tess/model] [--clients 4] [--requests 40] [--json bench/results/load.json]
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MAX_CLIENTS = 64
MAX_REQUESTS = 5000


def bounded(lo: int, hi: int):
    def parse(value: str) -> int:
        n = int(value)
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, not {n}")
        return n

    return parse


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def small_model(folder: Path) -> Path:
    from emovox.features import FeatureConfig
    from emovox.model import EmotionClassifier, save_model

    model = EmotionClassifier("efficientnet_lite0", ["angry", "happy", "neutral", "sad"], weights=None)
    return save_model(model, folder / "model", FeatureConfig(duration=1.0, image_size=64))


def clip(seconds: float, sr: int = 16000) -> bytes:
    """A voiced-like harmonic tone as WAV bytes."""
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * np.cumsum(200 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sr
    y = 0.3 * sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.003 * np.random.default_rng(0).standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def start_server(model: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    code = (
        "import sys; from emovox.serve import serve; "
        f"serve(sys.argv[1], host={HOST!r}, port={port}, workers={workers}, max_pending=1000, log_level='warning', "
        "segment_options={'vad': 'energy'})"
    )
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code, str(model)], stdout=out, stderr=subprocess.STDOUT)


def wait_ready(httpx, base: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer on {base} within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model folder (default: a small randomly initialised model)")
    ap.add_argument("--clients", type=bounded(1, MAX_CLIENTS), default=4, help="concurrent clients (default: %(default)s)")
    ap.add_argument("--requests", type=bounded(1, MAX_REQUESTS), default=40, help="requests in total (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of the clip sent, seconds (default: %(default)s)")
    ap.add_argument("--segments", action="store_true", help="ask for the timeline too")
    ap.add_argument("--workers", type=bounded(1, 16), default=2, help="server inference threads (default: %(default)s)")
    ap.add_argument("--time-limit", type=float, default=120.0, help="stop sending after this many seconds (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "load.json", help="where to write the results")
    args = ap.parse_args()

    import httpx

    with tempfile.TemporaryDirectory(prefix="emovox-load-") as tmp:
        tmp_path = Path(tmp)
        model = args.model or small_model(tmp_path)
        port = free_port()
        base = f"http://{HOST}:{port}"
        log = tmp_path / "server.log"
        proc = start_server(model, port, args.workers, log)
        try:
            wait_ready(httpx, base, proc, 120.0, log)
            audio = clip(args.seconds)
            params = {"segments": "true"} if args.segments else {}
            latencies: list[float] = []
            errors: dict[str, int] = {}
            deadline = time.monotonic() + args.time_limit
            with httpx.Client(timeout=max(30.0, args.time_limit), limits=httpx.Limits(max_connections=args.clients)) as client:

                def one(i: int) -> tuple[float | None, str | None]:
                    if time.monotonic() > deadline:
                        return None, "not sent (time limit)"
                    t0 = time.perf_counter()
                    try:
                        r = client.post(f"{base}/v1/predict", params=params, files={"file": (f"{i}.wav", audio, "audio/wav")})
                    except httpx.HTTPError as err:
                        return None, type(err).__name__
                    dt = time.perf_counter() - t0
                    return (dt, None) if r.status_code == 200 else (None, f"HTTP {r.status_code}")

                warm = client.post(f"{base}/v1/predict", params=params, files={"file": ("warm-up.wav", audio, "audio/wav")})
                if warm.status_code != 200:  # also loads the lazy imports before timing
                    raise SystemExit(f"the warm-up request failed: HTTP {warm.status_code} {warm.text}")
                t_start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.clients) as pool:
                    for fut in as_completed([pool.submit(one, i) for i in range(args.requests)]):
                        dt, err = fut.result()
                        if err is None:
                            latencies.append(dt)
                        else:
                            errors[err] = errors.get(err, 0) + 1
                wall = time.perf_counter() - t_start
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    result = {
        "clients": args.clients,
        "requests": args.requests,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None,
        "clip_seconds": args.seconds,
        "segments": args.segments,
        "server_workers": args.workers,
        "model": str(args.model) if args.model else "random-init efficientnet_lite0, image_size 64",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
    }
    fmt = lambda v: "-" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
    print("| clients | requests | ok | errors | throughput | p50 | p95 | max |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.clients} | {args.requests} | {result['ok']} | {result['errors']} | {result['throughput_rps'] or 0:.2f} req/s | "
          f"{fmt(result['latency_p50_s'])} | {fmt(result['latency_p95_s'])} | {fmt(result['latency_max_s'])} |")
    if errors:
        print("errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.json}")


def _cpus() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
