"""Who spoke when in conversations of 2, 3 and 4 voices: diarization error rate, voices counted, attribution.

    python bench/diarization.py --ravdess ../shared/data/ravdess --tess ../shared/data/tess \
        --nemo ../shared/data/nemo [--conversations 8] [--channels clean,telephone,room] \
        [--out bench/results/diarization.json]

Conversations are built from real clips, each trimmed to its speech (so that the reference is speech): 2, 3 or 4
speakers drawn across RAVDESS actors, TESS's two speakers and nEMO's actors (corpora and languages mixed); 8-14
turns of one or two clips, the next speaker drawn among the others; pauses of 0.1-1.5 s (a short pause and the
voice activity detector joins two turns into one region: the voice changes inside it); one turn in six a
backchannel (0.4-1.2 s of a clip: "yes", "mm"); one turn in ten starting 0.2-0.6 s before the previous one ends
(overlap). 16 kHz. Then the same conversations through simulated channels (``emovox.audio.channels``).

Speakers are split in two halves (seeded); the voice cut-off of ``speakers="auto"`` is chosen on one half's
conversations and scored on the other's, and the other way round (never tuned on what it is scored on).
Methods: ``windows`` (emovox before turns: one voice per 4-s timeline window), ``turns`` (pieces of 1.5 s every
0.75 s, clustered, a voice per 50 ms: :mod:`emovox.inference.turns`), and ``turns`` with the true number of voices
given. DER: pyannote.metrics, 0.25 s collar, overlap scored.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emovox.audio import load_audio
from emovox.audio.channels import channel
from emovox.audio.vad import speech_regions
from emovox.corpora import load_corpus
from emovox.inference import windows
from emovox.inference.turns import diarization_error, pieces, speaker_turns
from emovox.inference.voices import VoiceEmbedder, cluster_voices

RATE = 16000


def trimmed(path) -> np.ndarray:
    import librosa

    y = load_audio(path, RATE)
    _, (a, b) = librosa.effects.trim(y, top_db=35)
    return y[a:b]


def build(pool: dict[str, list], speakers: list[str], rng: np.random.Generator):
    """A conversation: ``(signal, reference turns (start, end, speaker))``."""
    n_turns = int(rng.integers(8, 15))
    who = speakers[int(rng.integers(len(speakers)))]
    pieces_, ref = [], []
    t = int(0.5 * RATE)
    seen: set[str] = set()
    for k in range(n_turns):
        if k and rng.random() < 0.1 and ref:
            t = max(int(ref[-1][0] * RATE) + int(0.3 * RATE), t - int(rng.uniform(0.2, 0.6) * RATE))
        elif k:
            t += int(rng.uniform(0.1, 1.5) * RATE)
        backchannel = k and rng.random() < 1 / 6
        clips = [pool[who][int(rng.integers(len(pool[who])))] for _ in range(1 if backchannel else int(rng.integers(1, 3)))]
        y = np.concatenate([trimmed(c) for c in clips])
        if backchannel:
            n = int(rng.uniform(0.4, 1.2) * RATE)
            a = int(rng.integers(0, max(1, y.size - n)))
            y = y[a : a + n]
        pieces_.append((t, y))
        ref.append((t / RATE, (t + y.size) / RATE, who))
        seen.add(who)
        t += y.size
        left = [s for s in speakers if s not in seen]  # everyone speaks: the next unheard voice, else any other
        others = left or [s for s in speakers if s != who] or [who]
        who = others[int(rng.integers(len(others)))]
    total = t + int(0.8 * RATE)
    out = (np.random.default_rng(int(rng.integers(1 << 31))).standard_normal(total) * 5e-4).astype(np.float32)
    for start, y in pieces_:
        out[start : start + y.size] += y
    return np.clip(out, -1, 1), ref


def window_turns(regions, emb_of, speakers, threshold):
    """emovox before turns: 4-s windows, one voice each; overlapping windows split at their midpoints."""
    wins = windows(regions, 4.0, 2.0)
    labels = cluster_voices(emb_of(wins), speakers, threshold)
    out = []
    for k, (s, e) in enumerate(wins):
        if k + 1 < len(wins) and wins[k + 1][0] < e:
            e = (wins[k + 1][0] + e) / 2
        if k and wins[k - 1][1] > s:
            s = (wins[k - 1][1] + s) / 2
        out.append((s, e, int(labels[k])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--tess", type=Path)
    ap.add_argument("--nemo", type=Path)
    ap.add_argument("--conversations", type=int, default=8, help="per number of voices and half")
    ap.add_argument("--channels", default="clean,telephone,room")
    ap.add_argument("--grid", default="0.30,0.35,0.40,0.45,0.50,0.55,0.60")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    pool: dict[str, list] = {}
    for name, root in (("ravdess", args.ravdess), ("tess", args.tess), ("nemo", args.nemo)):
        if root:
            for u in load_corpus(name, root):
                pool.setdefault(u.speaker_key, []).append(u.path)
    rng = np.random.default_rng(0)
    names = sorted(pool)
    half = set(rng.permutation(names)[: len(names) // 2].tolist())
    groups = {"A": [s for s in names if s in half], "B": [s for s in names if s not in half]}
    embedder = VoiceEmbedder.shared()
    channels = args.channels.split(",")
    grid = [float(g) for g in args.grid.split(",")]
    convs = []
    t_embed = audio_s = 0.0
    for g, members in groups.items():
        for n_spk in (2, 3, 4):
            for c in range(args.conversations):
                spk = [members[i] for i in rng.choice(len(members), n_spk, replace=False)]
                y, ref = build(pool, spk, rng)
                for ch in channels:
                    z = y if ch == "clean" else channel(ch).apply(y, RATE, seed=1000 * n_spk + c).astype(np.float32)
                    regions = speech_regions(z, RATE, vad="auto")
                    spans = pieces(regions)
                    t0 = time.perf_counter()
                    emb = embedder.embed_many([z[int(s * RATE) : int(e * RATE)] for s, e in spans])
                    t_embed += time.perf_counter() - t0
                    audio_s += z.size / RATE
                    wins = windows(regions, 4.0, 2.0)
                    wemb = embedder.embed_many([z[int(s * RATE) : int(e * RATE)] for s, e in wins])
                    convs.append({"group": g, "speakers": n_spk, "channel": ch, "ref": ref, "regions": regions,
                                  "spans": spans, "emb": emb, "wins": wins, "wemb": wemb})
                print(f"  {g} {n_spk} voices #{c + 1}: {len(ref)} turns, {y.size / RATE:.0f} s", file=sys.stderr, flush=True)

    def evaluate(c, method: str, threshold: float) -> dict:
        n = c["speakers"] if method == "turns_known_n" else "auto"
        if method == "windows":
            labels = cluster_voices(c["wemb"], n, threshold)
            hyp = window_turns(c["regions"], lambda _: c["wemb"], n, threshold)
        else:
            labels = cluster_voices(c["emb"], n, threshold)
            hyp = speaker_turns(c["regions"], c["spans"], labels)
        d = diarization_error(c["ref"], hyp)
        d["count_right"] = float(len(set(labels.tolist())) == c["speakers"])
        d["found"] = len(set(labels.tolist()))
        return d

    methods = ("windows", "turns", "turns_known_n")
    chosen = {}
    for m in methods:
        for tune in ("A", "B"):
            mine = [c for c in convs if c["group"] == tune and c["channel"] == "clean"]
            chosen[(m, tune)] = min(grid, key=lambda thr: np.mean([evaluate(c, m, thr)["der"] for c in mine]))
    rows = []
    for m in methods:
        for ch in channels:
            for n_spk in (2, 3, 4):
                res = []
                for tune, test in (("A", "B"), ("B", "A")):
                    res += [evaluate(c, m, chosen[(m, tune)]) for c in convs
                            if c["group"] == test and c["channel"] == ch and c["speakers"] == n_spk]
                row = {"method": m, "channel": ch, "speakers": n_spk, "conversations": len(res)}
                for k in ("der", "missed", "false_alarm", "confusion", "count_right"):
                    row[k] = round(float(np.mean([r[k] for r in res])) * 100, 1)
                row["found"] = [r["found"] for r in res]
                rows.append(row)
    print(f"{'method':<15}{'channel':<11}{'voices':>6}{'DER %':>8}{'miss':>7}{'FA':>6}{'conf':>7}{'count ok %':>11}")
    for r in rows:
        print(f"{r['method']:<15}{r['channel']:<11}{r['speakers']:>6}{r['der']:>8.1f}{r['missed']:>7.1f}{r['false_alarm']:>6.1f}"
              f"{r['confusion']:>7.1f}{r['count_right']:>11.0f}")
    out = {"rows": rows, "thresholds": {f"{m}/{t}": v for (m, t), v in chosen.items()},
           "embed_seconds_per_audio_minute": t_embed / (audio_s / 60), "groups": groups,
           "conversations_per_cell": 2 * args.conversations}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
