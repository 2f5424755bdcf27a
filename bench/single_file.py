"""More of what a single file can tell: test-time augmentation, pitch/formant perturbation as training augmentation,
and an attentive-pooling head over frozen frame features, against the shipped recipe (L2 logistic regression on the
mean + std of every hidden state), in speaker-grouped cross-validation on two corpora.

    python bench/single_file.py --ravdess ../shared/data/ravdess --tess ../shared/data/tess \
        --weights /path/to/whisper-base-encoder [--encoder whisper_base] [--shift 1.5] \
        [--out bench/results/single_file.json]

Every file is decoded as the model decodes it (16 kHz, near-silence trimmed) and encoded three times: as it is,
and shifted up and down by ``--shift`` semitones (``librosa.effects.pitch_shift``: duration kept, the whole spectrum
-- harmonics and formants, i.e. the vocal-tract resonances -- scaled by 2^(+-shift/12), about 0.92 / 1.09 for
1.5 semitones, the range of vocal-tract-length perturbation). The original's frame features of every layer are
kept for the attentive head.

Variants, all scored on the unshifted test files:

- ``logreg``: the shipped recipe (standardise on the training rows, LogisticRegression C=0.01);
- ``tta``: the same model, probabilities averaged over the test file and its two shifted copies;
- ``vtlp``: trained on the training files and their shifted copies (each shifted copy of a speaker is a new speaker);
- ``vtlp+tta``: both;
- ``attentive``: softmax-weighted sum of the layers, frame-wise standardised, attentive statistics pooling
  (attention-weighted mean and std), dropout, linear; AdamW, 15 epochs (``--epochs``), the same folds; frames
  averaged in pairs (25 per second) to keep it cheap.

Each is scored per file (the file head) and per speaker (vectors z-scored within each test speaker, the speaker
head), except ``attentive`` (per file only). RAVDESS: speaker-grouped 6-fold over its actors (``speaker_kfold``,
seed 0); TESS: cross-speaker both ways.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emovox.audio import load_audio
from emovox.corpora import load_corpus
from emovox.encoders import build_encoder
from emovox.model.heads import speaker_normalize
from emovox.training.splits import cross_speaker, speaker_kfold

C = 0.01


def encode_corpus(enc, utts, shift: float, keep_frames: bool) -> tuple[np.ndarray, list, list]:
    """``(vectors (3, n, dim), frames per file (L, T, W) float16 or [], seconds)`` of the corpus."""
    import librosa

    prep = enc.preparer()
    vecs = [[], [], []]
    frames = []
    t0 = time.time()
    for i, u in enumerate(utts):
        y = prep(load_audio(u.path, 16000), 16000, str(u.path))
        for k, steps in enumerate((0.0, shift, -shift)):
            z = y if steps == 0 else librosa.effects.pitch_shift(y, sr=16000, n_steps=steps).astype(np.float32)
            x, n = enc.inputs(z)
            with torch.inference_mode():
                states = enc.hidden_states(x)
                states = [h[:, :n] if n else h for h in states]
                vecs[k].append(torch.cat([t for h in states for t in (h.mean(1), h.std(1, unbiased=False))], 1)[0].numpy())
                if k == 0 and keep_frames:
                    f = torch.stack([h[0] for h in states])  # (L, T, W)
                    f = f[:, : f.shape[1] // 2 * 2].reshape(f.shape[0], -1, 2, f.shape[2]).mean(2) if f.shape[1] > 1 else f
                    frames.append(f.half().numpy())
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(utts)} files, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return np.stack([np.stack(v) for v in vecs]), frames


def logreg(x_train, y_train, x_test_list):
    from sklearn.linear_model import LogisticRegression

    mu, sd = x_train.mean(0), np.maximum(x_train.std(0), 0.01 * x_train.std() + 1e-8)
    clf = LogisticRegression(C=C, max_iter=3000, random_state=0).fit((x_train - mu) / sd, y_train)
    return [clf.predict_proba((x - mu) / sd) for x in x_test_list], clf.classes_


class Attentive(nn.Module):
    def __init__(self, layers: int, width: int, classes: int, mean: torch.Tensor, std: torch.Tensor, hidden: int = 128):
        super().__init__()
        self.mix = nn.Parameter(torch.zeros(layers))
        self.register_buffer("mean", mean)  # (L, W) frame statistics of the training set, per layer
        self.register_buffer("std", std)
        self.att = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.out = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * width, classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x (B, L, T, W), mask (B, T)
        x = (x - self.mean[None, :, None]) / self.std[None, :, None]
        h = (torch.softmax(self.mix, 0)[None, :, None, None] * x).sum(1)
        a = self.att(h).squeeze(-1).masked_fill(~mask, -1e4).softmax(1)[..., None]
        mu = (a * h).sum(1)
        sd = ((a * h**2).sum(1) - mu**2).clamp_min(1e-6).sqrt()
        return self.out(torch.cat([mu, sd], 1))


def batch(frames, idx):
    t = max(frames[i].shape[1] for i in idx)
    x = torch.zeros(len(idx), frames[idx[0]].shape[0], t, frames[idx[0]].shape[2])
    mask = torch.zeros(len(idx), t, dtype=torch.bool)
    for j, i in enumerate(idx):
        f = torch.from_numpy(frames[i].astype(np.float32))
        x[j, :, : f.shape[1]] = f
        mask[j, : f.shape[1]] = True
    return x, mask


def attentive(frames, y, train, test, classes: int, epochs: int = 15, seed: int = 0) -> np.ndarray:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cat = np.concatenate([frames[i].astype(np.float32) for i in train], axis=1)  # (L, sum T, W)
    mean, std = torch.from_numpy(cat.mean(1)), torch.from_numpy(cat.std(1) + 1e-5)
    del cat
    net = Attentive(frames[0].shape[0], frames[0].shape[2], classes, mean, std)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    yt = torch.as_tensor(y)
    for _ in range(epochs):
        net.train()
        order = rng.permutation(train)
        for s in range(0, len(order), 32):
            idx = order[s : s + 32].tolist()
            x, m = batch(frames, idx)
            loss = nn.functional.cross_entropy(net(x, m), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(test), 64):
            idx = test[s : s + 64].tolist()
            out.append(net(*batch(frames, idx)).softmax(1).numpy())
    return np.concatenate(out)


def run_corpus(name: str, utts, splits, vecs, frames, epochs: int = 15, only_attentive: bool = False) -> dict:
    labels = sorted({u.emotion for u in utts})
    y = np.array([labels.index(u.emotion) for u in utts])
    spk = np.array([u.speaker_key for u in utts])
    # The speaker head's input: each (speaker, shift) group z-scored on its own.
    vecs_spk = np.stack([speaker_normalize(vecs[k], spk) for k in range(3)])
    acc: dict[str, list[float]] = {}

    def hit(key, p, classes, test):
        acc.setdefault(key, []).append(float(np.mean(classes[p.argmax(1)] == y[test])))

    for f, sp in enumerate(splits):
        train = np.concatenate([sp.train, sp.val])  # no early stopping here: validation speakers train too
        test = sp.test
        for head, v in () if only_attentive else (("file", vecs), ("speaker", vecs_spk)):
            probs, classes = logreg(v[0][train], y[train], [v[k][test] for k in range(3)])
            hit(f"logreg/{head}", probs[0], classes, test)
            hit(f"tta/{head}", np.mean(probs, 0), classes, test)
            aug_x = np.concatenate([v[k][train] for k in range(3)])
            probs, classes = logreg(aug_x, np.tile(y[train], 3), [v[k][test] for k in range(3)])
            hit(f"vtlp/{head}", probs[0], classes, test)
            hit(f"vtlp+tta/{head}", np.mean(probs, 0), classes, test)
        if frames:
            p = attentive(frames, y, train, test, len(labels), epochs)
            hit("attentive/file", p, np.arange(len(labels)), test)
        print(f"  {name} fold {f + 1}/{len(splits)}: " + ", ".join(f"{k} {v[-1]:.1%}" for k, v in acc.items()),
              file=sys.stderr, flush=True)
    return {k: {"mean": float(np.mean(v) * 100), "std": float(np.std(v) * 100), "folds": [x * 100 for x in v]}
            for k, v in acc.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path)
    ap.add_argument("--tess", type=Path)
    ap.add_argument("--encoder", default="whisper_base")
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--shift", type=float, default=1.5, help="pitch/formant shift in semitones (default %(default)s)")
    ap.add_argument("--no-attentive", action="store_true")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the attentive head (default %(default)s)")
    ap.add_argument("--store", type=Path, help="keep each corpus's encodings here (.npz) and reuse them")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    enc = build_encoder(args.encoder, args.weights).eval()
    results, corpora, t0 = {}, {}, time.time()
    for name, path in (("ravdess", args.ravdess), ("tess", args.tess)):
        if not path:
            continue
        utts = load_corpus(name, path)
        splits = speaker_kfold(utts, k=6, seed=0) if name == "ravdess" else cross_speaker(utts)
        print(f"{name}: {len(utts)} files, encoding x3 ...", file=sys.stderr, flush=True)
        stored = args.store / f"{name}-{args.encoder}-{args.shift:g}.npz" if args.store else None
        if stored is not None and stored.is_file():
            with np.load(stored) as z:
                vecs = z["vecs"]
                frames = [z[f"f{i}"] for i in range(len(utts))] if "f0" in z.files else []
        else:
            vecs, frames = encode_corpus(enc, utts, args.shift, not args.no_attentive)
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                np.savez(stored, vecs=vecs, **{f"f{i}": f for i, f in enumerate(frames)})
        corpora[name] = (utts, splits, vecs, frames)
        results[name] = run_corpus(name, utts, splits, vecs, [])
    if not args.no_attentive:  # the slow one last, once the quick variants are in
        for name, (utts, splits, vecs, frames) in corpora.items():
            results[name] |= run_corpus(name, utts, splits, vecs, frames, epochs=args.epochs, only_attentive=True)
    print(f"\n{args.encoder}, shift {args.shift:g} semitones, {time.time() - t0:.0f} s\n")
    variants = sorted({k for r in results.values() for k in r}, key=lambda k: (k.split("/")[1], k))
    print("| variant | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for k in variants:
        cells = [f"{r[k]['mean']:.1f} ± {r[k]['std']:.1f}" if k in r else "" for r in results.values()]
        print(f"| {k} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"encoder": args.encoder, "shift": args.shift, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
