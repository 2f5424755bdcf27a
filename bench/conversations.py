"""Conversations: who spoke when (speaker attribution, number of speakers), and emotion per segment with adaptation
per voice, against one adaptation for the whole recording and none.

    python bench/conversations.py --ravdess ../shared/data/ravdess --tess ../shared/data/tess \
        --nemo ../shared/data/nemo [--weights DIR] [--encoders whisper_base] [--folds 6] \
        [--out bench/results/conversations.json]

Conversations are built from real clips: 2 or 3 speakers taking alternating turns of 1-3 clips each (the next
speaker drawn among the others), 0.3-1.5 s of room noise between turns, and one turn in ten starting 0.3-0.8 s
before the previous one ends (an overlap). 16 kHz.

**Voices** (``--voices N`` conversations per speaker count): speakers drawn across RAVDESS actors, TESS's two
speakers and nEMO's actors, so conversations mix corpora and languages. Each timeline window (the timeline's own
voice activity and windows) is embedded by the GE2E speaker encoder; its true speaker is the one whose clip covers
most of it. The cut-off of ``speakers="auto"`` is chosen by cross-validation over speakers: the speakers are split
in two halves, the cut-off that attributes best on conversations of one half is scored on the other, and the other
way round. Reported: segment attribution accuracy (clusters matched to speakers one-to-one, Hungarian), how often
the number of speakers is right, and the cut-off each half picks.

**Emotions** (``--folds K``): the speech recipe (``--encoders``, corpora balanced) is trained K times with one
speaker-grouped fold of RAVDESS actors held out (TESS and nEMO always train); conversations of the held-out actors
(every pair, and the fold's three together; each speaker 24-30 clips) go through the timeline with no adaptation,
with one adaptation for the whole recording (``speakers=1``) and with adaptation per voice (``speakers="auto"``);
and each actor's same clips as a single-voice recording, adapted (the single-voice figure). Per-segment accuracy,
true emotion = that of the clip covering most of the window. Cost: the timeline's time with and without
``speakers="auto"``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.audio import load_audio
from emovox.audio.vad import speech_regions
from emovox.corpora import load_corpus
from emovox.inference import segment_file, windows
from emovox.inference.voices import VoiceEmbedder, cluster_voices
from emovox.training.splits import speaker_kfold
from emovox.training.train import recipe_config, train

RATE = 16000


def build(turns: list[tuple[str, list]], rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float, str, str]]]:
    """Mix the turns (speaker, clips) into one signal; the (start, end, speaker, emotion) of every clip."""
    pieces: list[tuple[int, np.ndarray]] = []
    spans = []
    t = int(rng.uniform(0.3, 1.0) * RATE)
    for k, (who, clips) in enumerate(turns):
        if k and rng.random() < 0.1:
            t = max(0, t - int(rng.uniform(0.3, 0.8) * RATE))  # starts before the previous turn ends
        else:
            t += int(rng.uniform(0.3, 1.5) * RATE)
        for u in clips:
            y = load_audio(u.path, RATE)
            pieces.append((t, y))
            spans.append((t / RATE, (t + y.size) / RATE, who, u.emotion))
            t += y.size
    total = t + int(0.8 * RATE)
    out = (np.random.default_rng(int(rng.integers(1 << 31))).standard_normal(total) * 5e-4).astype(np.float32)
    for start, y in pieces:
        out[start : start + y.size] += y
    return np.clip(out, -1, 1), spans


def conversation(pool: dict[str, list], speakers: list[str], rng: np.random.Generator, clips_each: int | None = None):
    """Alternating turns of 1-3 clips; ``clips_each``: clips per speaker (drawn without repeats), else 8-12 turns."""
    left = {s: [pool[s][i] for i in rng.permutation(len(pool[s]))] for s in speakers}
    budget = {s: clips_each if clips_each else 10**9 for s in speakers}
    turns, who = [], speakers[int(rng.integers(len(speakers)))]
    n_turns = int(rng.integers(8, 13)) if clips_each is None else 10**9
    while len(turns) < n_turns and any(budget[s] > 0 and left[s] for s in speakers):
        if budget[who] > 0 and left[who]:
            k = min(int(rng.integers(1, 4)), budget[who], len(left[who]))
            turns.append((who, [left[who].pop() for _ in range(k)]))
            budget[who] -= k
        others = [s for s in speakers if s != who and budget[s] > 0 and left[s]] or [s for s in speakers if s != who] or [who]
        who = others[int(rng.integers(len(others)))]
    return build(turns, rng)


def overlap_owner(s: float, e: float, spans, field: int) -> str | None:
    best, owner = 0.0, None
    for span in spans:
        ov = min(span[1], e) - max(span[0], s)
        if ov > best:
            best, owner = ov, span[field]
    return owner


def attribution(pred: np.ndarray, truth: list[str]) -> float:
    """Share of windows whose cluster maps to their speaker (one-to-one matching that maximises it)."""
    from scipy.optimize import linear_sum_assignment

    names = sorted(set(truth))
    m = np.zeros((pred.max() + 1, len(names)))
    for p, t in zip(pred, truth):
        m[p, names.index(t)] += 1
    rows, cols = linear_sum_assignment(-m)
    return float(m[rows, cols].sum() / len(truth))


def voices(pools: dict[str, list], n_conv: int, embedder: VoiceEmbedder, tmp: Path) -> dict:
    rng = np.random.default_rng(0)
    names = sorted(pools)
    half = set(rng.permutation(names)[: len(names) // 2].tolist())
    groups = {"A": [s for s in names if s in half], "B": [s for s in names if s not in half]}
    data = {g: [] for g in groups}
    t_embed = 0.0
    for g, members in groups.items():
        for n_spk in (1, 2, 3):
            for _ in range(n_conv):
                spk = [members[i] for i in rng.choice(len(members), n_spk, replace=False)]
                y, spans = conversation(pools, spk, rng)
                wins = windows(speech_regions(y, RATE, vad="auto"), 4.0, 2.0)
                truth = [overlap_owner(s, e, spans, 2) for s, e in wins]
                keep = [i for i, t in enumerate(truth) if t is not None]
                t0 = time.perf_counter()
                emb = embedder.embed_many([y[int(wins[i][0] * RATE) : int(wins[i][1] * RATE)] for i in keep])
                t_embed += time.perf_counter() - t0
                data[g].append({"speakers": n_spk, "emb": emb, "truth": [truth[i] for i in keep],
                                "seconds": y.size / RATE})
    grid = np.round(np.arange(0.2, 0.71, 0.05), 3)

    def score(convs, thr):
        acc = [attribution(cluster_voices(c["emb"], "auto", thr), c["truth"]) for c in convs]
        right = [len(set(cluster_voices(c["emb"], "auto", thr).tolist())) == c["speakers"] for c in convs]
        return float(np.mean(acc)), float(np.mean(right))

    out: dict = {"cv": []}
    for tune, test in (("A", "B"), ("B", "A")):
        best = max(grid, key=lambda thr: score(data[tune], thr)[0] + score(data[tune], thr)[1])
        for n_spk in (1, 2, 3):
            convs = [c for c in data[test] if c["speakers"] == n_spk]
            acc, right = score(convs, best)
            known = float(np.mean([attribution(cluster_voices(c["emb"], n_spk), c["truth"]) for c in convs]))
            out["cv"].append({"tuned_on": tune, "tested_on": test, "threshold": float(best), "speakers": n_spk,
                              "attribution_auto": acc * 100, "count_right": right * 100, "attribution_known_n": known * 100,
                              "conversations": len(convs)})
    allc = data["A"] + data["B"]
    out["threshold_all"] = float(max(grid, key=lambda thr: score(allc, thr)[0] + score(allc, thr)[1]))
    out["embed_seconds_per_audio_minute"] = t_embed / (sum(c["seconds"] for c in allc) / 60)
    out["groups"] = {g: m for g, m in groups.items()}
    return out


def models(utts_r, others, args, tmp: Path):
    """``(fold, held-out actors, recognizer)``: ``--model`` folders (their held-out RAVDESS actors), then the
    ``--folds`` fold models."""
    for m in args.model:
        rec = EmotionRecognizer.load(m)
        held = sorted(k for k in rec.config.get("training", {}).get("test_speakers") or [] if k.startswith("ravdess:"))
        yield Path(m).name, held, rec
    if args.folds:
        for k, split in enumerate(speaker_kfold(utts_r, k=args.folds, seed=0)):
            test = sorted({utts_r[i].speaker_key for i in split.test})
            enc = {"encoders": tuple(args.encoders.split(","))} if args.encoders else {"weights": args.weights}
            cfg = recipe_config("speech", **enc, split="speaker", test_speakers=tuple(test), seed=0, balance_corpora=True)
            train(others + utts_r, tmp / f"fold{k}", cfg, progress=False, log=lambda m: None)
            yield k + 1, test, EmotionRecognizer.load(tmp / f"fold{k}" / "model")


def emotions(utts_r, others, args, tmp: Path) -> list[dict]:
    rows = []
    by_actor: dict[str, list] = {}
    for u in utts_r:
        by_actor.setdefault(u.speaker_key, []).append(u)
    for k, test, rec in models(utts_r, others, args, tmp):
        rng = np.random.default_rng(100 + len(rows))
        groups = [list(p) for p in itertools.combinations(test, 2)] + ([test] if len(test) >= 3 else [])
        for spk in groups:
            y, spans = conversation(by_actor, spk, rng, clips_each=30 if len(spk) == 2 else 24)
            path = tmp / f"conv{k}-{'-'.join(a[-2:] for a in spk)}.flac"
            sf.write(path, y, RATE)
            res = {"fold": k, "speakers": len(spk), "actors": spk, "seconds": round(y.size / RATE, 1)}
            for tag, opts in (("off", {"adapt": "off"}), ("one", {"adapt": "auto", "speakers": 1}),
                              ("per_voice", {"adapt": "auto", "speakers": "auto"})):
                t0 = time.perf_counter()
                tl = segment_file(rec, path, **opts)
                res[f"{tag}_seconds"] = time.perf_counter() - t0
                hits = [s.label == overlap_owner(s.start, s.end, spans, 3) for s in tl.segments]
                res[tag] = float(np.mean(hits)) * 100
                if tag == "per_voice":
                    truth = [overlap_owner(s.start, s.end, spans, 2) for s in tl.segments]
                    pred = np.array([int(s.speaker[1:]) - 1 for s in tl.segments])
                    res["attribution"] = attribution(pred, truth) * 100
                    res["found_speakers"] = len(tl.speakers)
            rows.append(res)
            print(f"  fold {k} {spk}: off {res['off']:.1f}, one {res['one']:.1f}, per voice {res['per_voice']:.1f} "
                  f"(attribution {res['attribution']:.1f}, {res['found_speakers']} found)", file=sys.stderr, flush=True)
        for actor in test:  # the single-voice figure: the same model, one actor's clips in one recording, adapted
            y, spans = conversation(by_actor, [actor], rng, clips_each=30)
            path = tmp / f"solo{k}-{actor[-2:]}.flac"
            sf.write(path, y, RATE)
            tl = segment_file(rec, path, adapt="auto")
            hits = [s.label == overlap_owner(s.start, s.end, spans, 3) for s in tl.segments]
            rows.append({"fold": k, "speakers": 1, "actors": [actor], "single_voice": float(np.mean(hits)) * 100})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, required=True)
    ap.add_argument("--tess", type=Path)
    ap.add_argument("--nemo", type=Path)
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--encoders", default="whisper_base")
    ap.add_argument("--voices", type=int, default=20, help="conversations per speaker count and speaker half (default %(default)s)")
    ap.add_argument("--folds", type=int, default=6, help="emotion part: RAVDESS folds (0: none)")
    ap.add_argument("--model", action="append", default=[], help="emotion part: a trained model folder, scored on the "
                                                                 "RAVDESS actors its config lists as held out (repeatable)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    utts_r = load_corpus("ravdess", args.ravdess)
    others = []
    for name, path in (("tess", args.tess), ("nemo", args.nemo)):
        if path:
            others += load_corpus(name, path)
    pools: dict[str, list] = {}
    for u in utts_r + others:
        pools.setdefault(u.speaker_key, []).append(u)
    t0 = time.time()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        result["voices"] = voices(pools, args.voices, VoiceEmbedder.shared(), tmp)
        print(f"voices: {json.dumps(result['voices']['cv'])}", file=sys.stderr, flush=True)
        if args.folds or args.model:
            result["emotions"] = emotions(utts_r, others, args, tmp)
    print(f"\n{len(pools)} speakers, {time.time() - t0:.0f} s\n")
    print("| speakers | tuned on / tested on | cut-off | attribution, auto | number right | attribution, number given |")
    print("|---|---|---|---|---|---|")
    for r in result["voices"]["cv"]:
        print(f"| {r['speakers']} | {r['tuned_on']} / {r['tested_on']} | {r['threshold']:.3f} | {r['attribution_auto']:.1f} | "
              f"{r['count_right']:.0f} % | {r['attribution_known_n']:.1f} |")
    print(f"\ncut-off on all conversations: {result['voices']['threshold_all']:.3f}; embedding: "
          f"{result['voices']['embed_seconds_per_audio_minute']:.2f} s per minute of audio")
    if result.get("emotions"):
        conv = [r for r in result["emotions"] if r["speakers"] > 1]
        solo = [r["single_voice"] for r in result["emotions"] if r["speakers"] == 1]
        print("\n| conversation | n | no adaptation | one adaptation (speakers=1) | per voice (speakers=auto) | attribution | "
              "single-voice figure | cost of speakers=auto |")
        print("|---|---|---|---|---|---|---|---|")
        for n_spk in (2, 3):
            sel = [r for r in conv if r["speakers"] == n_spk]
            if not sel:
                continue
            m = {k: np.mean([r[k] for r in sel]) for k in ("off", "one", "per_voice", "attribution")}
            cost = np.mean([r["per_voice_seconds"] / r["one_seconds"] - 1 for r in sel]) * 100
            print(f"| {n_spk} speakers | {len(sel)} | {m['off']:.1f} | {m['one']:.1f} | {m['per_voice']:.1f} | "
                  f"{m['attribution']:.1f} | {np.mean(solo):.1f} | {cost:+.0f} % |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        clean = json.loads(json.dumps(result, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        args.out.write_text(json.dumps(clean, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
