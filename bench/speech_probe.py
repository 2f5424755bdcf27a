"""Probe: cheap head/pooling changes for speaker-independent SER with a frozen Whisper tiny.en encoder on RAVDESS.

    python bench/speech_probe.py --ravdess ../shared/data/ravdess \
        --weights ../shared/models/whisper-tiny.en-encoder [--out bench/results/speech_probe.json] \
        [--variants baseline,C=0.03,...] [--cache /tmp/whisper_stats.npz] [--no-mlp]

What it measures: 6-fold speaker-grouped cross-validation (``protocol_folds("speaker-kfold", seed=0, folds=6)``;
each fold fits on train+val, scores on the 3 held-out actors) of heads on top of the frozen encoder's hidden
states, two numbers per variant, mean ± std over folds:

* per file    -- features standardised on the training rows (what a deployed model sees for a new voice);
* per speaker -- ``emovox.model.speaker_normalize`` first (z-score within every actor, the test actors
  included: needs several recordings of the new voice), then standardised.

Variants (``--variants`` picks by name; default all):

* a  logistic regression (lbfgs, max_iter 3000) on standardised mean+std of all 6 states (4,608-d, the
     product's recipe), C in {0.003, 0.01, 0.03, 0.1};
* b  state subsets (no conv-output state; last 3 states; transformer layers 1-4 only) and pooling
     variants (mean only; mean+std+max; mean+std+std-of-deltas), C=0.01;
* c  per-state block scaling: (i) standardise, then scale every 768-d state block by 1/sqrt(768) -- with equal
     block sizes this is just a global rescale, i.e. C/768; (ii) block-RMS: centre each dimension, divide every
     state block by its RMS, so that blocks are balanced but keep their within-block relative scales;
* d  a one-hidden-layer MLP (256, GELU, dropout 0.2 in / 0.5 hidden, AdamW wd 1e-2, label smoothing 0.1),
     early-stopped on the fold's speaker-grouped validation actors, then refitted on train+val for that many
     epochs.

The encoder runs once per file (``SpeechEncoder.hidden_states`` on the encoder's ``preparer().file``: 16 kHz, trimmed at 60 dB,
own length) and every pooled statistic is kept, so each variant only re-fits heads.

Time on 1 CPU thread (OMP/MKL/torch threads = 1), 1,080 files: encoding about 75 s; each logistic-regression
variant 40-65 s (12 fits); the MLP about 2-4 min; all variants about 20 min. Prints a Markdown table; writes
JSON (per-fold accuracies, wall time per variant) with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from emovox.model import speaker_normalize
from emovox.corpora import load_corpus
from emovox.encoders.speech import SpeechEncoder
from emovox.training.splits import protocol_folds

STATS = ("mean", "std", "max", "dstd")


# -- features ------------------------------------------------------------------------------------------------------
def state_statistics(enc: SpeechEncoder, paths: Sequence[Path], cache: Path | None = None) -> np.ndarray:
    """``(files, states, stats, width)``: mean, std, max and std of first differences over time of every hidden state."""
    if cache and cache.is_file():
        return np.load(cache)["stats"]
    out = np.empty((len(paths), enc.n_states, len(STATS), enc.width), dtype=np.float32)
    t0 = time.time()
    with torch.inference_mode():
        for i, path in enumerate(paths):
            x, n = enc.inputs(enc.preparer().file(path), str(path))
            for s, h in enumerate(enc.hidden_states(x)):
                h = h[0, :n] if n else h[0]
                d = h[1:] - h[:-1] if len(h) > 1 else torch.zeros_like(h)
                out[i, s] = torch.stack([h.mean(0), h.std(0, unbiased=False), h.max(0).values, d.std(0, unbiased=False)]).numpy()
            if (i + 1) % 200 == 0:
                print(f"  encoded {i + 1}/{len(paths)} files ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    if cache:
        np.savez(cache, stats=out)
    return out


def vectors(stats: np.ndarray, states: Sequence[int] | None = None, pool: Sequence[str] = ("mean", "std")) -> np.ndarray:
    """Concatenate ``pool`` statistics of ``states``, state after state (``mean, std`` of all = the product's 4,608-d vector)."""
    states = range(stats.shape[1]) if states is None else states
    sel = stats[:, list(states)][:, :, [STATS.index(p) for p in pool]]
    return sel.reshape(len(stats), -1)


# -- heads: fit on (X, y) train rows, predict test rows ----------------------------------------------------------
Head = Callable[[np.ndarray, np.ndarray, np.ndarray, dict], np.ndarray]


def logistic(C: float = 0.01, block_scale: int = 0, block_rms: int = 0) -> Head:
    def run(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, ctx: dict) -> np.ndarray:
        if block_rms:  # centre per dimension, then each block divided by its RMS (blocks balanced, relative scales kept)
            mu = xtr.mean(0)
            a, b = xtr - mu, xte - mu
            for s in range(0, a.shape[1], block_rms):
                r = np.sqrt((a[:, s : s + block_rms] ** 2).mean()) + 1e-8
                a[:, s : s + block_rms] /= r
                b[:, s : s + block_rms] /= r
        else:
            sc = StandardScaler().fit(xtr)
            a, b = sc.transform(xtr), sc.transform(xte)
            if block_scale:  # every block of block_scale standardised dims times 1/sqrt(block_scale)
                a, b = a / np.sqrt(block_scale), b / np.sqrt(block_scale)
        return LogisticRegression(C=C, max_iter=3000).fit(a, ytr).predict(b)

    return run


class MLP(nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.5), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp(hidden: int = 256, lr: float = 1e-3, wd: float = 1e-2, max_epochs: int = 60, patience: int = 8) -> Head:
    """Early stopping on the fold's speaker-grouped validation actors picks the epoch count; then refit on train+val."""

    def epoch(m: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor, seed: int, bs: int = 32) -> None:
        m.train()
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        for s in range(0, len(x), bs):
            b = order[s : s + bs]
            loss = F.cross_entropy(m(x[b]), t[b], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def fresh(dim: int, classes: int, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        m = MLP(dim, classes, hidden)
        return m, torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd)

    def run(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, ctx: dict) -> np.ndarray:
        inner = ctx["inner"]  # bool mask over the training rows: True = the fold's train part, False = its val actors
        sc = StandardScaler().fit(xtr[inner])
        a, v = (torch.from_numpy(sc.transform(z).astype(np.float32)) for z in (xtr[inner], xtr[~inner]))
        ta, tv = torch.from_numpy(ytr[inner]), ytr[~inner]
        classes = int(ytr.max()) + 1
        m, opt = fresh(a.shape[1], classes, 0)
        best, best_ep, bad = -1.0, 1, 0
        for ep in range(1, max_epochs + 1):
            epoch(m, opt, a, ta, ep)
            m.eval()
            with torch.no_grad():
                acc = float((m(v).argmax(1).numpy() == tv).mean())
            if acc > best + 1e-9:
                best, best_ep, bad = acc, ep, 0
            elif (bad := bad + 1) >= patience:
                break
        ctx.setdefault("epochs", []).append(best_ep)
        sc = StandardScaler().fit(xtr)
        a, b = (torch.from_numpy(sc.transform(z).astype(np.float32)) for z in (xtr, xte))
        m, opt = fresh(a.shape[1], classes, 100)
        for ep in range(1, best_ep + 1):
            epoch(m, opt, a, torch.from_numpy(ytr), 100 + ep)
        m.eval()
        with torch.no_grad():
            return m(b).argmax(1).numpy()

    return run


# -- protocol ---------------------------------------------------------------------------------------------------
def cross_validate(x: np.ndarray, y: np.ndarray, speakers: list[str], folds: list, head: Head) -> dict[str, list[float]]:
    """Per-fold test accuracy, per file (plain) and per speaker (``speaker_normalize`` over every actor first)."""
    out: dict[str, list[float]] = {}
    for mode, z in (("per_file", x), ("per_speaker", speaker_normalize(x, speakers))):
        accs = []
        for split in folds:
            fit = np.concatenate([split.train, split.val])
            ctx = {"inner": np.r_[np.ones(len(split.train), bool), np.zeros(len(split.val), bool)]}
            pred = head(z[fit], y[fit], z[split.test], ctx)
            accs.append(float((pred == y[split.test]).mean()))
        out[mode] = accs
    return out


def variants(stats: np.ndarray, with_mlp: bool) -> dict[str, tuple[Callable[[], np.ndarray], Head]]:
    """name -> (features, head)."""
    full = lambda: vectors(stats)  # noqa: E731
    v: dict[str, tuple[Callable[[], np.ndarray], Head]] = {"baseline: 6 states mean+std (C=0.01)": (full, logistic(0.01))}
    for C in (0.003, 0.03, 0.1):
        v[f"C={C}"] = (full, logistic(C))
    n = stats.shape[1]
    for name, states in (("no conv state", range(1, n)), ("last 3 states", range(n - 3, n)), ("layers 1-4 only", range(1, n - 1))):
        v[name] = (lambda s=states: vectors(stats, s), logistic(0.01))
    for pool in (("mean",), ("mean", "std", "max"), ("mean", "std", "dstd")):
        v["pool " + "+".join(pool)] = (lambda p=pool: vectors(stats, pool=p), logistic(0.01))
    width2 = 2 * stats.shape[-1]
    v["std + 1/sqrt(768) per state block (C=0.01)"] = (full, logistic(0.01, block_scale=width2))
    for C in (0.01, 0.03):
        v[f"block-RMS per state (C={C})"] = (full, logistic(C, block_rms=width2))
    if with_mlp:
        v["MLP 256 (early stop on val actors)"] = (full, mlp())
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", required=True, help="RAVDESS folder (Actor_01 ...)")
    ap.add_argument("--weights", default="pretrained", help="local whisper-tiny.en (encoder) folder; default: hub / $EMOVOX_WEIGHTS")
    ap.add_argument("--out", type=Path, help="write JSON results here")
    ap.add_argument("--cache", type=Path, help="npz of the pooled hidden-state statistics (written once, then reused)")
    ap.add_argument("--variants", help="comma-separated substrings of variant names to run, e.g. 'baseline,C=0.03,MLP' (default: all)")
    ap.add_argument("--no-mlp", action="store_true", help="skip the MLP head")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    utts = load_corpus("ravdess", args.ravdess)
    folds = protocol_folds("speaker-kfold", utts, seed=0, folds=6)
    classes = sorted({u.emotion for u in utts})
    y = np.array([classes.index(u.emotion) for u in utts])
    speakers = [str(u.speaker) for u in utts]
    enc = SpeechEncoder.pretrained("whisper_tiny_en", args.weights)
    t0 = time.time()
    stats = state_statistics(enc, [u.path for u in utts], args.cache)
    print(f"{len(utts)} files, {len(set(speakers))} actors, {len(classes)} emotions; statistics in {time.time() - t0:.0f} s", file=sys.stderr)

    wanted = [w.strip() for w in args.variants.split(",")] if args.variants else None
    rows, results = [], {}
    print("| variant | dim | per file (%) | per speaker (%) | wall s |\n|---|---|---|---|---|", flush=True)
    for name, (features, head) in variants(stats, not args.no_mlp).items():
        if wanted and not any(w in name for w in wanted):
            continue
        t = time.time()
        x = features()
        res = cross_validate(x, y, speakers, folds, head)
        secs = time.time() - t
        f, s = np.array(res["per_file"]) * 100, np.array(res["per_speaker"]) * 100
        row = f"| {name} | {x.shape[1]} | {f.mean():.1f} ± {f.std():.1f} | {s.mean():.1f} ± {s.std():.1f} | {secs:.0f} |"
        print(row, flush=True)
        rows.append(row)
        results[name] = {**res, "dim": int(x.shape[1]), "seconds": round(secs, 1)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"protocol": "speaker-kfold, 6 folds, seed 0", "encoder": "whisper_tiny_en",
                                        "files": len(utts), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
