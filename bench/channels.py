"""Speech as users record it: held-out speakers through simulated channels, per channel a row, models side by side.

    python bench/channels.py [--model NAME=DIR ...] [--channels clean,telephone,...] [--every N]
                             [--tess DIR] [--ravdess DIR] [--json bench/results/channels.json]

Every held-out clip of the models' training record (RAVDESS actors 17-18 and the 20 held-out TESS words, never
trained on) passes through each channel of :data:`emovox.audio.channels.CHANNELS` (telephone: 300-3400 Hz + GSM
full-rate at 8 kHz; MP3 at a low bit rate; a simulated room, RT60 0.4-0.8 s, talker 1.5-3 m away; babble of three
other held-out voices at 10 dB; ...; far: room + babble at 15 dB + telephone), with seeds of this benchmark's own
(training copies draw theirs from the file's content and other ranges). Per channel and model: accuracy, UAR and
ECE per file, accuracy with each speaker's files adapted together (``same_speaker=True``), the share the gates
refuse, and the share of clean accuracy kept; per speaker in the JSON. Models that share an encoder share its
vectors (encoded once per channel copy).

The gate's trade-off: the ``ood_score`` of every held-out channel copy and of the synthetic probes
(:mod:`emovox.audio.probes`, as they are and through each channel), and for thresholds from 0.5 to 2 times the
model's own, the share of real speech refused against the share of probes given an emotion.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from emovox.audio import load_audio, probes
from emovox.audio.channels import CHANNELS
from emovox.corpora import load_corpus
from emovox.errors import NoSpeechError
from emovox.inference.recognizer import DEFAULT_MODEL, EmotionRecognizer
from emovox.training.calibration import expected_calibration_error
from emovox.training.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: Seeds of this benchmark's channel copies (clip ``i`` of channel ``c`` gets ``SEED + 1000 * c + i``).
SEED = 20261203
#: the four emotions of the in-the-wild command-word test (accuracy with the argmax restricted to them)
FOUR = ("angry", "calm", "fear", "happy")
#: speech ceilings of the second opinion (at the model's threshold) on the trade-off curve
CEILINGS = (1.0, 1.15, 1.5, 2.0, 3.0, 5.0, 10.0)
SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0)


def held_out(rec: EmotionRecognizer, tess: Path, ravdess: Path):
    training = rec.config.get("training", {})
    spk, words = set(training.get("held_out", [])), set(training.get("held_out_words", []))
    utts = load_corpus("tess,ravdess", [tess, ravdess])
    return [u for u in utts if (u.speaker_key in spk or f"{u.corpus}:{u.text}" in words) and u.emotion in rec.labels]


def group_of(u) -> str:
    return "ravdess held-out actors" if u.corpus == "ravdess" else "tess held-out words"


def encode(rec: EmotionRecognizer, signals: list[np.ndarray], names: list[str]):
    """``(items, refused by the speech gate, vectors)`` of the signals that pass the speech gate."""
    items, gated = [], np.zeros(len(signals), bool)
    for k, (y, name) in enumerate(zip(signals, names)):
        try:
            items.append(rec.featurize(y, 16000, source=name))
        except NoSpeechError:
            gated[k] = True
    return items, gated, rec.vectors(items).numpy() if items else np.zeros((0, rec.model.vector_dim), np.float32)


def score(rec: EmotionRecognizer, items, vecs: np.ndarray, speakers: list[str]):
    """Per-file probabilities, per-speaker adapted probabilities and ood scores of passed items."""
    import torch

    v = torch.from_numpy(vecs)
    probs = rec.classify(v)
    adapted = probs.copy()
    if rec.model.speaker_head is not None:
        for s in sorted(set(speakers)):
            rows = np.array([i for i, x in enumerate(speakers) if x == s])
            if len(rows) >= 2:
                adapted[rows] = rec.classify(v[torch.from_numpy(rows)], same_speaker=True)
    raw, speech = gate_parts(rec, items, vecs)
    ood = rec.familiarity.second_opinion(raw, lambda i: speech[i]) if rec.familiarity is not None else raw
    return probs, adapted, ood, raw, speech


def gate_parts(rec: EmotionRecognizer, items, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ood_score without the second opinion, whether silero hears speech)`` of each item (the detector is asked
    only where the score is above 1)."""
    fam = rec.familiarity
    if fam is None:
        return np.zeros(len(items), np.float32), np.ones(len(items), bool)
    try:
        rec.familiarity = fam.with_info(speech_ceiling=1.0)
        raw = rec.ood_of(items, vecs)
    finally:
        rec.familiarity = fam
    speech = np.array([bool(r > 1 and rec.sounds_like_speech(it)) for r, it in zip(raw, items)])
    return raw, speech


def metrics(labels: list[str], truth: list[str], probs: np.ndarray) -> dict:
    pred = [labels[k] for k in probs.argmax(1)]
    m = classification_metrics(truth, pred, labels)
    y = np.array([labels.index(t) for t in truth])
    return {"n": len(truth), "accuracy": m["accuracy"], "uar": m["uar"], "macro_f1": m["macro_f1"],
            "ece": expected_calibration_error(probs, y)}


def markdown(result: dict) -> str:
    """The channels table of a result (docs/channels.md): per channel and model, RAVDESS held-out actors' accuracy (share of clean
    kept), adapted accuracy, ECE, accuracy over every clip (TESS words too) and the share refused."""
    names = list(result["models"])
    rav = "ravdess held-out actors"
    head = ["channel"] + [f"{n}: {col}" for n in names for col in
                          ("RAVDESS (kept of clean)", "adapted", "ECE", "all clips", "refused")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cname, row in result["channels"].items():
        cells = [cname]
        for n in names:
            m = row[n]
            g = m["groups"].get(rav, {})
            kept = g.get("kept_of_clean")
            cells += [f"{g.get('accuracy', float('nan')):.1%}" + (f" ({kept:.0%})" if kept is not None and cname != "clean" else ""),
                      f"{g.get('adapted_accuracy', float('nan')):.1%}",
                      f"{g.get('ece', float('nan')):.3f}", f"{m['accuracy']:.1%}", f"{m['refused']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None, metavar="NAME=DIR",
                    help="a model to measure (repeatable; default: the bundled one as 'bundled')")
    ap.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated channel names (default: all)")
    ap.add_argument("--tess", type=Path, default=SHARED / "data" / "tess")
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--every", type=int, default=1, help="every N-th held-out clip (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "channels.json")
    ap.add_argument("--markdown", action="store_true", help="print the docs table of --json (measured before) and stop")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.json.read_text())))
        return

    models = dict(m.split("=", 1) for m in (args.model or [f"bundled={DEFAULT_MODEL}"]))
    recs = {name: EmotionRecognizer.load(path) for name, path in models.items()}
    first = next(iter(recs.values()))
    utts = held_out(first, args.tess, args.ravdess)[:: args.every]
    if not utts:
        raise SystemExit("no held-out clips found (is ../shared/data there?)")
    clean = [load_audio(u.path, 16000) for u in utts]
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        by_speaker[u.speaker_key].append(i)
    truth = [u.emotion for u in utts]
    speakers = [u.speaker_key for u in utts]
    chosen = [c.strip() for c in args.channels.split(",") if c.strip()]
    print(f"{len(utts)} held-out clips of {len(by_speaker)} speakers; models: {', '.join(models)}; channels: {', '.join(chosen)}")

    # encoders shared between models are run once per channel copy
    share: dict[str, str] = {}
    for name, rec in recs.items():
        ident = "|".join(e.identity() for e in rec.model.encoders)
        share[name] = next((n for n, r in recs.items() if "|".join(e.identity() for e in r.model.encoders) == ident), name)

    result: dict = {"models": models, "n": len(utts), "speakers": sorted(by_speaker), "seed": SEED, "channels": {}}
    ood_real: dict[str, list[float]] = defaultdict(list)
    said_speech: dict[str, list[bool]] = defaultdict(list)
    t_all = time.perf_counter()
    for c, cname in enumerate(chosen):
        chan = CHANNELS[cname]
        t0 = time.perf_counter()
        signals = []
        for i, (u, y) in enumerate(zip(utts, clean)):
            others = [j for j in range(len(utts)) if speakers[j] != u.speaker_key]

            def voices(rng, n, sr, others=others):
                return [clean[j] for j in rng.choice(others, size=n, replace=False)]

            signals.append(chan.apply(y, 16000, SEED + 1000 * c + i, voices))
        sim_s = time.perf_counter() - t0
        names = [f"{u.path} ({cname})" for u in utts]
        cache: dict[str, tuple] = {}
        row: dict = {"simulation_ms_per_clip": 1e3 * sim_s / len(utts)}
        for name, rec in recs.items():
            if share[name] not in cache:
                cache[share[name]] = encode(rec, signals, names)
            items, gated, vecs = cache[share[name]]
            keep = np.flatnonzero(~gated)
            probs, adapted, ood, raw, speech = score(rec, items, vecs, [speakers[k] for k in keep])
            ood_real[name].extend(raw.tolist())
            said_speech[name].extend(speech.tolist())
            refused = np.zeros(len(utts), bool)
            refused[gated] = True
            refused[keep[ood > 1]] = True
            # accuracy over every clip: a refused clip counts as wrong (the user got no emotion)
            full = np.zeros((len(utts), len(rec.labels)), np.float32)
            full_ad = full.copy()
            full[keep], full_ad[keep] = probs, adapted
            answered = full.copy()
            answered[refused] = 0
            m = metrics(rec.labels, truth, full) | {"adapted_accuracy": metrics(rec.labels, truth, full_ad)["accuracy"],
                                                    "refused": float(refused.mean()),
                                                    "accuracy_answered_only": float(np.mean([rec.labels[int(answered[k].argmax())] == truth[k]
                                                                                             for k in range(len(utts))]))}
            m["groups"] = {g: metrics(rec.labels, [truth[k] for k in rows], full[rows]) |
                           {"adapted_accuracy": metrics(rec.labels, [truth[k] for k in rows], full_ad[rows])["accuracy"],
                            "refused": float(refused[rows].mean())}
                           for g in sorted({group_of(u) for u in utts})
                           for rows in [np.array([k for k, u in enumerate(utts) if group_of(u) == g])]}
            four = [k for k in range(len(utts)) if truth[k] in FOUR]
            cols = [rec.labels.index(lab) for lab in FOUR]
            m["four_emotions_accuracy"] = float(np.mean([FOUR[int(full[k, cols].argmax())] == truth[k] for k in four])) if four else None
            m["per_speaker"] = {s: {"n": len(rows), "accuracy": float(np.mean([rec.labels[int(full[k].argmax())] == truth[k] for k in rows])),
                                    "adapted_accuracy": float(np.mean([rec.labels[int(full_ad[k].argmax())] == truth[k] for k in rows]))}
                                for s, rows in sorted(by_speaker.items())}
            m["per_file"] = [{"path": str(utts[k].path), "label": rec.labels[int(full[k].argmax())],
                              "ood_score": None if gated[k] else round(float(ood[np.searchsorted(keep, k)]), 3)}
                             for k in range(len(utts))]
            row[name] = m
        result["channels"][cname] = row
        print(f"{cname:<11} " + "  ".join(f"{n}: acc {row[n]['accuracy']:.1%} (RAVDESS {row[n]['groups'].get('ravdess held-out actors', {}).get('accuracy', float('nan')):.1%}) "
                                          f"adapted {row[n]['adapted_accuracy']:.1%} ECE {row[n]['ece']:.3f} refused {row[n]['refused']:.1%}"
                                          for n in recs) + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    if "clean" in result["channels"]:
        for cname, row in result["channels"].items():
            for name in recs:
                for g, m in row[name]["groups"].items():
                    base = result["channels"]["clean"][name]["groups"][g]["accuracy"]
                    m["kept_of_clean"] = m["accuracy"] / base if base else None
                base = result["channels"]["clean"][name]["accuracy"]
                row[name]["kept_of_clean"] = row[name]["accuracy"] / base if base else None

    # the gate's trade-off: real speech through every channel vs synthetic non-speech as it is and through channels
    result["gate_tradeoff"] = {}
    for name, rec in recs.items():
        if rec.familiarity is None:
            continue
        probe_scores, probe_speech, as_is, energy_refused = [], [], [], 0
        for kind, pname, y in probes.non_speech():
            for c, cname in enumerate(["clean", *[x for x in chosen if x != "clean"]]):
                z = CHANNELS[cname].apply(y, probes.RATE, SEED + 7 * c, lambda rng, n, sr: [clean[j] for j in rng.choice(len(clean), n)]) \
                    if cname not in ("clean", "babble", "far") else y  # babble over a tone would be speech: not a probe
                if cname != "clean" and z is y:
                    continue
                try:
                    item = rec.featurize(z, probes.RATE, source=pname)
                except NoSpeechError:
                    energy_refused += 1
                    continue
                raw, speech = gate_parts(rec, [item], rec.vectors([item]).numpy())
                probe_scores.append(float(raw[0]))
                probe_speech.append(bool(speech[0]))
                as_is.append(cname == "clean")
        real, real_speech = np.array(ood_real[name]), np.array(said_speech[name], bool)
        ps, pspeech, plain = np.array(probe_scores), np.array(probe_speech, bool), np.array(as_is, bool)
        n_plain = sum(1 for _ in probes.non_speech())

        def refused(raw, speech, scale, ceiling):
            return (raw > scale) & ~((raw <= scale * ceiling) & speech)

        curve = [{"scale": s, "ceiling": c, "real_speech_refused": float(refused(real, real_speech, s, c).mean()),
                  "probes_labelled": int((~refused(ps, pspeech, s, c))[plain].sum()), "probes": n_plain,
                  "channel_probes_labelled": int((~refused(ps, pspeech, s, c))[~plain].sum()), "channel_probes": int((~plain).sum())}
                 for s, c in [(s, 1.0) for s in SCALES] + [(1.0, c) for c in CEILINGS]]
        result["gate_tradeoff"][name] = {"curve": curve, "speech_ceiling": rec.familiarity.speech_ceiling,
                                         "real_speech_max": float(real.max()), "real_speech_q99": float(np.quantile(real, 0.99)),
                                         "real_over_1_heard_as_speech": float(real_speech[real > 1].mean()) if (real > 1).any() else None,
                                         "probes_heard_as_speech": int(pspeech.sum()),
                                         "probe_min": float(ps.min()) if len(ps) else None, "energy_refused": energy_refused}
        print(f"\ngate of {name}: real speech (all channels) q99 {np.quantile(real, 0.99):.2f} max {real.max():.2f}; "
              f"probes min {ps.min():.2f} ({len(ps)} reached the familiarity gate, {energy_refused} refused by energy; "
              f"silero heard speech in {int(pspeech.sum())})")
        print(f"{'scale':>6} {'ceiling':>8} {'speech refused':>15} {'probes labelled':>16} {'probes through channels labelled':>33}")
        for r in curve:
            print(f"{r['scale']:>6.2f} {r['ceiling']:>8.2f} {r['real_speech_refused']:>15.2%} {r['probes_labelled']:>10}/{r['probes']}"
                  f" {r['channel_probes_labelled']:>27}/{r['channel_probes']}")
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + markdown(result))
    print(f"\nwritten to {args.json} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
