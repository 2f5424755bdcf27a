"""The gates in front of an emotion: what they refuse, what real speech they let through, what they cost.

    python bench/ood.py [--model DIR] [--tess DIR] [--ravdess DIR] [--nemo DIR] [--json bench/results/ood.json]

1. Synthetic non-speech (:mod:`emovox.audio.probes`: tones, chirps, square / sawtooth / triangle waves, DTMF,
   whistles, chords, hum, noise colours), through ``emovox predict``'s path: the energy speech gate, then the
   familiarity gate (``ood_score > 1``), and with ``--speech-gate silero`` in front instead.
2. Real held-out speech the model never heard (RAVDESS actors 17-18, TESS's held-out words), as it is and distorted
   (clipped, noise at 10 dB, telephone band, over music): the share the gates let through.
3. Cross-validated pass rates per corpus: the gate fitted without a speaker's fold scores that speaker's files and
   cuts (and without a whole corpus, that corpus), at the model's threshold.
4. Cost: milliseconds per file of the familiarity score, beside the energy gate's.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from emovox.audio import probes
from emovox.corpora import load_corpus
from emovox.errors import NoSpeechError
from emovox.inference.recognizer import DEFAULT_MODEL, EmotionRecognizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def verdict(rec: EmotionRecognizer, y: np.ndarray, sr: int, name: str) -> tuple[str, float | None, str | None]:
    """``(gate that refused it or "passed", ood_score, label)`` of one signal on the default path."""
    try:
        item = rec.featurize(y, sr, source=name)
    except NoSpeechError:
        return "speech gate", None, None
    probs, ood = rec.assess([item])
    score = None if ood is None else float(ood[0])
    if score is not None and score > 1:
        return "familiarity", score, None
    return "passed", score, rec.labels[int(probs[0].argmax())]


def probe_table(rec: EmotionRecognizer, silero: EmotionRecognizer | None) -> list[dict]:
    rows = []
    for kind, name, y in probes.non_speech():
        gate, score, label = verdict(rec, y, probes.RATE, name)
        row = {"kind": kind, "name": name, "default": gate, "ood_score": score, "label_if_passed": label}
        if silero is not None:
            row["silero"] = verdict(silero, y, probes.RATE, name)[0]
        rows.append(row)
    return rows


def speech_table(rec: EmotionRecognizer, utts) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"n": 0, "passed": 0, "speech_gate": 0, "familiarity": 0, "max_ood": 0.0})
    for u in utts:
        y, sr = sf.read(u.path, dtype="float32", always_2d=True)
        y = y.mean(1)
        for variant, z in [("as recorded", y), *probes.speech_variants(y, sr)]:
            gate, score, _ = verdict(rec, z, sr, str(u.path))
            r = out[variant]
            r["n"] += 1
            r[{"passed": "passed", "speech gate": "speech_gate", "familiarity": "familiarity"}[gate]] += 1
            r["max_ood"] = max(r["max_ood"], score or 0.0)
    return {k: v | {"pass_rate": v["passed"] / max(v["n"], 1)} for k, v in out.items()}


def long_table(rec: EmotionRecognizer, utts, per: int = 24, seed: int = 0) -> dict[str, dict]:
    """Long inputs: ``n`` held-out clips of one speaker joined with pauses (speech), and 20 s probes (not)."""
    from emovox.audio import load_audio

    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list] = defaultdict(list)
    for u in utts:
        by_speaker[u.speaker_key].append(u)
    out = {}
    for n in (2, 4, 8):
        scores = []
        for t in range(per):
            group = by_speaker[sorted(by_speaker)[t % len(by_speaker)]]
            pick = rng.choice(len(group), size=min(n, len(group)), replace=False)
            pause = lambda: (0.0005 * rng.standard_normal(int(0.6 * 16000))).astype(np.float32)  # noqa: E731
            y = np.concatenate([p for i in pick for p in (pause(), load_audio(group[i].path, 16000))] + [pause()])
            scores.append(verdict(rec, y, 16000, f"{n} clips")[1] or 0.0)
        out[f"{n} clips joined"] = {"n": per, "pass_rate": float(np.mean(np.array(scores) <= 1)), "max_ood": float(max(scores))}
    refused = 0
    kinds = list(probes.non_speech(seconds=20.0))
    for kind, name, y in kinds:
        refused += verdict(rec, y, probes.RATE, name)[0] != "passed"
    out["20 s probes"] = {"n": len(kinds), "refused": refused}
    return out


def cross_validated(rec: EmotionRecognizer, utts, cuts: bool) -> dict:
    """Pass rates at the model's threshold of the gate refitted without each speaker fold / each corpus."""
    from emovox.training.familiar import held_out_distances
    from emovox.training.train import familiarity_vectors

    fam = rec.familiarity
    x, used = familiarity_vectors(rec.model, utts, cuts, progress=False)
    y = np.array([rec.labels.index(u.emotion) for u in used])
    corpus = np.array([u.corpus for u in used])
    is_cut = np.array(["~aug" in u.speaker_key for u in used])
    held, new_corpus, _ = held_out_distances(x, y, [u.speaker_key for u in used], corpus,
                                             components=fam.info.get("components", fam.components))
    out = {}
    for c in sorted(set(corpus)):
        for part, rows in (("files", (corpus == c) & ~is_cut), ("cuts", (corpus == c) & is_cut)):
            if rows.any():
                ceiling = fam.threshold * fam.speech_ceiling  # passes there when the speech detector hears it
                out[f"{c} {part}"] = {"n": int(rows.sum()),
                                      "new_speakers_pass": float((held[rows] <= fam.threshold).mean()),
                                      "new_corpus_pass": float((new_corpus[rows] <= fam.threshold).mean()),
                                      "new_speakers_under_ceiling": float((held[rows] <= ceiling).mean()),
                                      "new_corpus_under_ceiling": float((new_corpus[rows] <= ceiling).mean())}
    return out


def cost(rec: EmotionRecognizer, n: int = 2000) -> dict:
    v = np.random.default_rng(0).standard_normal((n, rec.familiarity.dim)).astype(np.float32)
    rec.familiarity.score(v[:10])
    t = time.perf_counter()
    for row in v[:200]:
        rec.familiarity.score(row[None])
    one = (time.perf_counter() - t) / 200
    t = time.perf_counter()
    rec.familiarity.score(v)
    batched = (time.perf_counter() - t) / n
    y = probes.tone(440.0)
    rec.frontend.check_speech(y, probes.RATE)
    t = time.perf_counter()
    for _ in range(20):
        try:
            rec.frontend.check_speech(y + 0.0, probes.RATE)
        except NoSpeechError:
            pass
    return {"ood_ms_per_file": one * 1e3, "ood_ms_per_file_batched": batched * 1e3,
            "energy_gate_ms_per_3s_file": (time.perf_counter() - t) / 20 * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--tess", type=Path, default=SHARED / "data" / "tess")
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--nemo", type=Path, default=SHARED / "data" / "nemo")
    ap.add_argument("--every", type=int, default=4, help="held-out speech: every N-th file (default: %(default)s)")
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validated pass rates (minutes)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ood.json")
    args = ap.parse_args()

    rec = EmotionRecognizer.load(args.model)
    if rec.familiarity is None:
        raise SystemExit(f"{args.model}: no familiarity gate to measure")
    try:
        silero = EmotionRecognizer.load(args.model, speech_gate="silero")
    except Exception as err:  # the vad extra is optional
        print(f"silero gate not measured: {err}")
        silero = None
    result: dict = {"model": str(args.model), "threshold": rec.familiarity.threshold, "fit": rec.familiarity.info}

    rows = probe_table(rec, silero)
    result["probes"] = rows
    print(f"{'kind':<8} {'probe':<32} {'default path':<13} {'ood_score':>9}  {'silero + familiarity'}")
    for r in rows:
        s = "-" if r["ood_score"] is None else f"{r['ood_score']:.2f}"
        print(f"{r['kind']:<8} {r['name']:<32} {r['default']:<13} {s:>9}  {r.get('silero', '-')}")
    refused = sum(r["default"] != "passed" for r in rows)
    print(f"refused on the default path: {refused}/{len(rows)}")

    training = rec.config.get("training", {})
    utts = load_corpus("tess,ravdess,nemo", [args.tess, args.ravdess, args.nemo])
    held_spk = set(training.get("held_out", []))
    held_words = set(training.get("held_out_words", []))
    unseen = {"ravdess held-out actors": [u for u in utts if u.speaker_key in held_spk][:: args.every],
              "tess held-out words": [u for u in utts if f"{u.corpus}:{u.text}" in held_words][:: args.every]}
    result["held_out_speech"] = {}
    print(f"\n{'held-out speech':<26} {'variant':<18} {'n':>5} {'passed':>7} {'max ood':>8}")
    for group, part in unseen.items():
        table = speech_table(rec, part)
        result["held_out_speech"][group] = table
        for variant, r in table.items():
            print(f"{group:<26} {variant:<18} {r['n']:>5} {r['pass_rate']:>7.1%} {r['max_ood']:>8.2f}")

    result["long_inputs"] = longs = long_table(rec, [u for u in utts if u.speaker_key in held_spk or
                                                     f"{u.corpus}:{u.text}" in held_words])
    print()
    for name, r in longs.items():
        print(f"{name:<18} " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))

    if not args.no_cv:
        train_utts = [u for u in utts if u.speaker_key not in held_spk and f"{u.corpus}:{u.text}" not in held_words
                      and u.emotion in rec.labels]
        cv = cross_validated(rec, train_utts, bool(training.get("timeline_cuts")))
        result["cross_validated"] = cv
        print(f"\n{'training speech, cross-validated':<32} {'n':>6} {'new speakers':>13} {'new corpus':>11}"
              f" {'(under the speech ceiling)':>27}")
        for name, r in cv.items():
            print(f"{name:<32} {r['n']:>6} {r['new_speakers_pass']:>13.2%} {r['new_corpus_pass']:>11.2%}"
                  f" {r['new_speakers_under_ceiling']:>13.2%} {r['new_corpus_under_ceiling']:>13.2%}")

    result["cost"] = cost(rec)
    print("\ncost: " + ", ".join(f"{k} {v:.3f}" for k, v in result["cost"].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
