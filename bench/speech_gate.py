"""The no-speech gate: how often it rejects real speech, and how often it stops what is not speech.

    python bench/speech_gate.py --tess ../shared/data/tess --ravdess ../shared/data/ravdess [--nemo DIR] \
        [--gates energy,silero] [--min-speech 0.25] [--out bench/results/speech_gate.json]

False-rejection rate: every file of the given corpora goes through ``EmotionRecognizer.check_speech`` (decoded
at 16 kHz, as a prediction would be); a real emotional clip that comes back "no speech" is a false rejection.
Rejection of out-of-domain input: 20 synthetic signals of each kind (white and pink noise, pure and harmonic
tones, DC, near-silence at -70 dBFS, clips of 10-100 ms of speech-band noise), seeded. Prints a table and the
rejected real files; time per file is the gate alone (no model).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emovox.audio import load_audio
from emovox.corpora import load_corpus
from emovox.errors import AudioError, NoSpeechError
from emovox.model import EmotionClassifier
from emovox.inference.recognizer import MIN_SPEECH_S, EmotionRecognizer

SR = 16000


def hostile(seed: int = 0, n: int = 20) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = np.arange(3 * SR) / SR
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("white noise", "pink noise", "pure tone", "harmonic tone", "DC",
                                                        "near-silence (-70 dBFS)", "10-100 ms clip")}
    for _ in range(n):
        out["white noise"].append(rng.uniform(0.01, 0.5) * rng.standard_normal(t.size))
        spec = np.fft.rfft(rng.standard_normal(t.size))
        pink = np.fft.irfft(spec / np.sqrt(np.arange(1, spec.size + 1)), n=t.size)
        out["pink noise"].append(0.3 * pink / np.abs(pink).max())
        f = rng.uniform(100, 3000)
        out["pure tone"].append(rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * f * t))
        f0 = rng.uniform(80, 400)
        out["harmonic tone"].append(0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8)))
        out["DC"].append(np.full(t.size, rng.uniform(-0.5, 0.5)))
        out["near-silence (-70 dBFS)"].append(10 ** (-70 / 20) * rng.standard_normal(t.size))
        m = int(rng.uniform(0.01, 0.1) * SR)
        out["10-100 ms clip"].append(0.3 * rng.standard_normal(m))
    return {k: [v.astype(np.float32) for v in vs] for k, vs in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("tess", "ravdess", "nemo"):
        ap.add_argument(f"--{name}", type=Path)
    ap.add_argument("--gates", default="energy,silero")
    ap.add_argument("--min-speech", type=float, default=MIN_SPEECH_S)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    corpora = {n: load_corpus(n, getattr(args, n)) for n in ("tess", "ravdess", "nemo") if getattr(args, n)}
    # the gate needs no trained weights: a tiny untrained classifier carries the feature settings
    model = EmotionClassifier("efficientnet_lite0", ["neutral", "sad"], weights=None)
    signals = {name: [(u.path, load_audio(u.path, SR)) for u in utts] for name, utts in corpora.items()}
    bad = hostile()
    results: dict[str, dict] = {}
    print("| gate | corpus / input | n | rejected | rate | ms per file |\n|---|---|---|---|---|---|")
    for gate in args.gates.split(","):
        rec = EmotionRecognizer(model, speech_gate=gate, min_speech_s=args.min_speech)
        res: dict[str, dict] = {}
        for name, items in list(signals.items()) + [(k, [(f"<{k} {i}>", y) for i, y in enumerate(v)]) for k, v in bad.items()]:
            rejected, t0 = [], time.perf_counter()
            for src, y in items:
                try:
                    rec.check_speech(y, SR, str(src))
                except NoSpeechError:
                    rejected.append(str(src))
                except AudioError as err:
                    rejected.append(f"{src} ({err.problem})")
            ms = 1000 * (time.perf_counter() - t0) / max(len(items), 1)
            res[name] = {"n": len(items), "rejected": len(rejected), "rate": len(rejected) / max(len(items), 1), "ms_per_file": ms,
                         "rejected_files": rejected if name in signals else []}
            print(f"| {gate} | {name} | {len(items)} | {len(rejected)} | {res[name]['rate']:.1%} | {ms:.1f} |", flush=True)
        results[gate] = res
    for gate, res in results.items():
        for name in signals:
            for f in res[name]["rejected_files"][:10]:
                print(f"{gate}: rejected real clip {f}", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"min_speech_s": args.min_speech, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
