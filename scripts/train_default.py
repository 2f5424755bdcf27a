"""Train the default model bundled with emovox (one command, reproducible).

    .venv/bin/python scripts/train_default.py [--tess DIR] [--ravdess DIR] [--nemo DIR] [--encoders A,B]
                                              [--weights-dir DIR] [--fusion concat|average]

Recipe ``speech`` (the benchmarks page of the docs, "New voices", "Other languages") on the encoders named by ``--encoders``
(default: Whisper base, multilingual): the frozen encoders, mean + std of each of their hidden states over the
clip, standardised, L2 logistic regression (C = 0.01) with every corpus weighing alike (``--balance-corpora``),
plus a second head on per-speaker normalised vectors for recordings of one speaker (``--same-speaker``, the
timeline's speaker adaptation). Data: TESS + RAVDESS + nEMO.

Held out, never trained on (the numbers of MODEL_CARD.md): RAVDESS actors 17-18 and 20 TESS words (all their
files, both voices). Validation (temperature scaling of both heads): RAVDESS actors 15-16. The weights are
written in fp16 to src/emovox/models/default/ (the encoder inside, so it works offline right after install;
the ONNX export of the encoder is built on first use and cached), with its familiarity gate (fitted by the
training run on the training and validation speech; see bench/ood.py), the metrics to
bench/results/default_model.json.

``--weights-dir``: a folder of local encoder copies (``$EMOVOX_WEIGHTS``; default ``$EMOVOX_WEIGHTS`` or
``~/.cache/emovox/weights``). When it lacks them, ``whisper-base-encoder/`` is built there by
``../shared/tools/whisper-base/fetch.sh`` and ``whisper-tiny.en-encoder/`` linked from ``../shared/models``.
Online, ``--weights-dir hub`` loads ``openai/whisper-base`` / ``openai/whisper-tiny.en`` from the hub.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emovox.training.calibration import expected_calibration_error, negative_log_likelihood
from emovox.corpora import load_corpus
from emovox.features import FeatureConfig
from emovox.training.metrics import classification_metrics
from emovox.model import load_model, save_model
from emovox.inference.recognizer import EmotionRecognizer
from emovox.training.train import recipe_config, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VAL = ("ravdess:15", "ravdess:16")
TEST = ("ravdess:17", "ravdess:18")
N_TEST_WORDS = 20


def local_weights(folder: Path) -> Path:
    """``folder`` with the encoders' local copies in it (built or linked from ../shared when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "whisper-base-encoder" / "config.json").is_file():
        subprocess.run(["bash", str(SHARED / "tools" / "whisper-base" / "fetch.sh"), str(folder), sys.executable], check=True)
    tiny = folder / "whisper-tiny.en-encoder"
    if not tiny.exists() and (SHARED / "models" / "whisper-tiny.en-encoder").is_dir():
        tiny.symlink_to(SHARED / "models" / "whisper-tiny.en-encoder")
    return folder


def held_out_words(utts, n: int = N_TEST_WORDS, seed: int = 0) -> tuple[str, ...]:
    words = sorted({u.text for u in utts if u.corpus == "tess"})
    pick = np.random.default_rng(seed).choice(len(words), size=min(n, len(words)), replace=False)
    return tuple(sorted(f"tess:{words[i]}" for i in pick))


def measure(rec: EmotionRecognizer, utts, same_speaker: bool = False) -> dict:
    """Accuracy, UAR, macro-F1 and calibration of the saved model on ``utts`` (all one group)."""
    paths = [u.path for u in utts]
    if same_speaker:  # every speaker's files normalised together
        probs = np.zeros((len(utts), len(rec.labels)), dtype=np.float32)
        for spk in sorted({u.speaker_key for u in utts}):
            rows = [i for i, u in enumerate(utts) if u.speaker_key == spk]
            probs[rows] = rec.predict_proba([paths[i] for i in rows], same_speaker=True)
    else:
        probs = rec.predict_proba(paths)
    pred = [rec.labels[k] for k in probs.argmax(1)]
    m = classification_metrics([u.emotion for u in utts], pred, rec.labels)
    y = np.array([rec.labels.index(u.emotion) for u in utts])
    m["ece"] = expected_calibration_error(probs, y)
    m["nll"] = negative_log_likelihood(probs, y)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tess", type=Path, default=SHARED / "data" / "tess")
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--nemo", type=Path, default=SHARED / "data" / "nemo")
    ap.add_argument("--encoders", default="whisper_base", help="comma-separated encoder names (default: %(default)s)")
    ap.add_argument("--fusion", default="concat", choices=["concat", "average"])
    ap.add_argument("--channels", type=int, default=2,
                    help="channel copies of every training file: rooms, telephone, codecs, babble, noise (default: %(default)s)")
    ap.add_argument("--calibration", default="oof", choices=["validation", "oof"],
                    help="temperatures on out-of-fold logits of the training speakers (default) or on the validation actors")
    ap.add_argument("--weights-dir", default=os.environ.get("EMOVOX_WEIGHTS") or str(Path.home() / ".cache" / "emovox" / "weights"))
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "emovox" / "models" / "default")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "default_model.json")
    args = ap.parse_args()

    if args.weights_dir != "hub":
        os.environ["EMOVOX_WEIGHTS"] = str(local_weights(Path(args.weights_dir).expanduser()))
    utts = load_corpus("tess,ravdess,nemo", [args.tess, args.ravdess, args.nemo])
    words = held_out_words(utts)
    encoders = tuple(e.strip() for e in args.encoders.split(",") if e.strip())
    cfg = recipe_config("speech", encoders=encoders, fusion=args.fusion, calibration=args.calibration, split="speaker", test_speakers=TEST,
                        val_speakers=VAL, test_texts=words, balance_corpora=True, channels=args.channels, seed=0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(utts, Path(tmp) / "run", cfg, FeatureConfig())
        model, features, config = load_model(Path(tmp) / "run" / "model")
        training = config["training"] | {
            "data": "TESS (OAF, YAF; all but 20 held-out words) + RAVDESS actors 01-14 + nEMO (all speakers); "
                    "validation: RAVDESS actors 15-16",
            "held_out": list(TEST), "held_out_words": list(words)}
        if args.out.exists():
            shutil.rmtree(args.out)
        save_model(model, args.out, features, training, half=True)
    train_s = time.perf_counter() - t0

    rec = EmotionRecognizer.load(args.out)  # what ships: fp16 weights, ONNX encoder
    wanted = set(words)
    groups = {
        "ravdess_17_18": [u for u in utts if u.speaker_key in TEST],
        "tess_held_out_words": [u for u in utts if f"{u.corpus}:{u.text}" in wanted],
    }
    result = {"held_out_speakers": list(TEST), "validation_speakers": list(VAL), "held_out_words": list(words),
              "train_seconds": round(train_s, 1), "timings": summary["timings"], "sizes": summary["sizes"],
              "calibration": {"temperature": rec.model.temperature, "speaker_temperature": rec.model.speaker_temperature},
              "size_bytes": (args.out / "model.safetensors").stat().st_size, "labels": rec.labels}
    for name, part in groups.items():
        result[name] = measure(rec, part)
    result["ravdess_17_18_per_speaker"] = measure(rec, groups["ravdess_17_18"], same_speaker=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("ravdess_17_18", "ravdess_17_18_per_speaker", "tess_held_out_words"):
        m = result[name]
        print(f"{name} (n={m['n']}): accuracy {m['accuracy']:.1%}, UAR {m['uar']:.1%}, macro-F1 {m['macro_f1']:.1%}, "
              f"ECE {m['ece']:.3f}")
    print(f"model written to {args.out} ({result['size_bytes'] / 1e6:.1f} MB) in {train_s:.0f} s")


if __name__ == "__main__":
    main()
