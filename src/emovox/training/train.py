"""Training runs: prepare a corpus, embed it, fit the heads (:mod:`emovox.training.solvers`), calibrate, save.

With a frozen backbone (``finetune="none"``) the body runs once over every
spectrogram (and its embeddings are cached on disk), and only the head trains
on them, so an epoch costs milliseconds instead of a full CNN pass.

The pieces (:func:`emovox.training.data.prepare`, :func:`emovox.training.data.embed`,
:func:`fit`, :func:`emovox.training.data.score`) are reused by the benchmark runner;
:func:`train` chains them and writes a run folder.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..corpora.base import Utterance
from ..errors import EmovoxError
from ..features import FeatureConfig
from ..labels import sort_labels
from ..model import EmotionClassifier, Familiarity, save_model
from .calibration import calibration_report, fit_temperature
from .config import RECIPES, SCHEDULES, SOLVER_NAMES, TrainConfig, recipe_config
from .familiar import fit_familiarity
from .data import Log, PreparedCorpus, encoder_vectors, logits_for, model_inputs, prepare, score, speaker_inputs
from .metrics import format_metrics, plot_confusion
from .solvers import (class_weights, fit, fit_adam, fit_logreg, group_weights, lr_factor, param_groups, resolve_device,
                      seed_everything, spec_augment)
from .splits import Split, make_split

__all__ = ["RECIPES", "SCHEDULES", "SOLVER_NAMES", "Augmented", "TrainConfig", "add_familiarity", "augment_inputs", "calibrate", "class_weights",
           "fit", "fit_adam", "fit_logreg", "group_weights", "lr_factor", "param_groups", "plot_curves", "recipe_config",
           "resolve_device", "seed_everything", "spec_augment", "train", "with_augmented"]


@dataclass
class Augmented:
    """Frozen-backbone vectors of ``copies`` augmented copies of the utterances ``source``, copy by copy."""

    source: np.ndarray
    copies: int
    vectors: torch.Tensor
    utts: list[Utterance]

    def rows(self, idx: Sequence[int]) -> np.ndarray:
        """Rows of every copy of the utterances ``idx``: copy 1 of each in the order of ``idx``, then copy 2 …"""
        idx = np.asarray(idx, dtype=np.int64)
        where = np.full(max(self.source.max(initial=-1), idx.max(initial=-1)) + 1, -1, dtype=np.int64)
        where[self.source] = np.arange(len(self.source))
        pos = where[idx]
        if (pos < 0).any():
            raise EmovoxError("some training utterances have no augmented copies")
        return (np.arange(self.copies)[:, None] * len(self.source) + pos).ravel()


def augment_inputs(
    model: EmotionClassifier, data: PreparedCorpus, idx: Sequence[int], copies: int, *, progress: bool = True,
    kind: str = "chain",
) -> Augmented:
    """Vectors of ``copies`` augmented copies of the prepared utterances ``idx`` (every encoder's input through its
    preparer; inputs and vectors cached like the originals'). ``kind="cut"``: one copy, the timeline's cut of each
    (:func:`~emovox.training.augment.cut_inputs`); ``kind="channel"``: copies through simulated rooms, telephone
    lines, codecs, babble and noise (:func:`~emovox.training.augment.channel_inputs`)."""
    from .augment import augmented_inputs, channel_inputs, cut_inputs

    if model.finetune != "none":
        raise EmovoxError("augmented copies are added to frozen-encoder vectors (finetune='none')")
    source = np.asarray(idx, dtype=np.int64)
    preparers = [e.preparer() for e in model.encoders]
    if kind == "cut":
        copies = 1
        utts, inputs, keys = cut_inputs([data.utts[i] for i in source], preparers, cache_dir=data.cache_root,
                                        progress=progress)
    elif kind == "channel":
        utts, inputs, keys = channel_inputs([data.utts[i] for i in source], copies, preparers, cache_dir=data.cache_root,
                                            progress=progress)
    else:
        utts, inputs, keys = augmented_inputs([data.utts[i] for i in source], copies, preparers,
                                              cache_dir=data.cache_root, progress=progress)
    parts = [encoder_vectors(enc, keys, lambda todo, col=col: (col[i] for i in todo), data.cache_root, progress=progress)
             for enc, col in zip(model.encoders, inputs)]
    return Augmented(source, copies, torch.from_numpy(np.concatenate(parts, axis=1)), utts)


def with_augmented(
    inputs: torch.Tensor, y: torch.Tensor, utts: Sequence[Utterance], split: Split, aug: Augmented,
) -> tuple[torch.Tensor, torch.Tensor, list[Utterance], Split]:
    """Append the augmented copies of the training files of ``split`` to ``inputs`` and its training part.

    Returns the extended ``(inputs, y, utterances, split)``; validation and
    test parts are unchanged.
    """
    train_idx = np.asarray(split.train, dtype=np.int64)
    src = train_idx[np.isin(train_idx, aug.source)]  # copies of the originals (not of other copies)
    rows = aug.rows(src)
    n = len(utts)
    return (torch.cat([inputs, aug.vectors[rows]]), torch.cat([y, y[np.tile(src, aug.copies)]]),
            list(utts) + [aug.utts[r] for r in rows],
            Split(np.concatenate([train_idx, np.arange(n, n + len(rows))]), split.val, split.test, split.description))


def calibrate(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], y: torch.Tensor, idx: Sequence[int],
              features: FeatureConfig | None = None, speaker: bool = False, *, cfg: TrainConfig | None = None,
              split: Split | None = None, utts: Sequence[Utterance] | None = None,
              corpora: Sequence[str] | None = None) -> float:
    """Fit the softmax temperature of the model's head (``speaker_head``) and set it; returns it.

    By default on the utterances ``idx`` (the validation part). With ``cfg.calibration == "oof"`` (and ``split``
    and ``utts`` given) on out-of-fold logits instead: see :func:`oof_logits`.
    """
    if cfg is not None and cfg.calibration == "oof" and split is not None and utts is not None:
        logits, target = oof_logits(model, inputs, y, split, cfg, utts, speaker=speaker, corpora=corpora)
    else:
        idx = np.asarray(list(idx), dtype=np.int64)
        logits, target = logits_for(model, inputs, idx, features, speaker), y[idx]
    t = fit_temperature(logits, target)
    model.calibrate(t, speaker)
    return t


def oof_logits(model: EmotionClassifier, inputs: torch.Tensor, y: torch.Tensor, split: Split, cfg: TrainConfig,
               utts: Sequence[Utterance], *, speaker: bool = False,
               corpora: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every training and validation utterance from a head that never saw its speaker.

    The speakers of ``split.train`` and ``split.val`` are dealt into ``cfg.calibration_folds`` groups; for each,
    a fresh head (same encoders, same settings) is fitted on the others and scores that group's utterances.
    Augmented copies (speaker ``"<speaker>~aug<k>"``) train with their source speaker and are never scored.
    Returns ``(logits, labels)`` of the scored utterances.
    """
    from sklearn.model_selection import GroupKFold

    rows = np.concatenate([split.train, split.val]).astype(np.int64)
    rows = rows[(y[rows] >= 0).numpy()]
    voice = np.array([utts[i].speaker_key.split("~aug")[0] for i in rows])
    k = min(cfg.calibration_folds, len(set(voice)))
    if k < 2:
        raise EmovoxError("out-of-fold calibration needs utterances of at least 2 speakers")
    original = np.array(["~aug" not in utts[i].speaker_key for i in rows])
    logits, target = [], []
    for fit_pos, held_pos in GroupKFold(n_splits=k).split(rows, groups=voice):
        held = rows[held_pos][original[held_pos]]
        if not len(held):
            continue
        probe = EmotionClassifier(list(model.encoders), model.labels, dropout=model.dropout, normalize=model.normalize)
        fit(probe, inputs, y, Split(rows[fit_pos], held, np.zeros(0, np.int64), "calibration fold"), cfg,
            progress=False, speaker=speaker, corpora=corpora)
        probe.eval()
        logits.append(logits_for(probe, inputs, held, None, speaker))
        target.append(y[held])
    return torch.cat(logits), torch.cat(target)


def train(
    utts: Sequence[Utterance],
    out_dir: str | Path,
    cfg: TrainConfig = TrainConfig(),
    features: FeatureConfig = FeatureConfig(),
    *,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Train a classifier on ``utts`` and write a run folder.

    ``out_dir`` receives ``model/`` (the best-on-validation model),
    ``history.json``, ``curves.png``, ``timings.json`` and, when the split has
    a test part, ``metrics.json`` and ``confusion.png``. Returns a summary dict.
    """
    out_dir = Path(out_dir)
    if (out_dir / "model").exists() and not overwrite:
        raise EmovoxError(f"{out_dir}: already holds a trained model; choose another --out or pass --overwrite")
    seed_everything(cfg.seed)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    encoders = cfg.build_encoders(features)
    data = prepare(utts, encoders[0].preparer(), workers=workers, cache_dir=cache_dir, use_cache=use_cache,
                   progress=progress, log=log)
    timings["features_s"] = time.perf_counter() - t0
    split = make_split(cfg.split, data.utts, seed=cfg.seed, test_speakers=cfg.test_speakers, val_speakers=cfg.val_speakers,
                       test_texts=cfg.test_texts)
    if len(split.train) == 0 or len(split.val) == 0:
        raise EmovoxError(f"split {cfg.split!r} left an empty part: {split.sizes()}")
    labels = sort_labels(data.utts[i].emotion for i in split.train)
    index = {lab: k for k, lab in enumerate(labels)}
    y = torch.tensor([index.get(u.emotion, -1) for u in data.utts])
    log(f"{len(data.utts)} utterances, labels: {', '.join(labels)}; split: {split.description} {split.sizes()}")

    model = EmotionClassifier(encoders, labels, finetune=cfg.finetune, dropout=cfg.dropout, normalize=cfg.normalize)
    t0 = time.perf_counter()
    inputs = model_inputs(model, data, progress=progress)
    if cfg.finetune != "all":
        timings["backbone_pass_s"] = time.perf_counter() - t0
    utts_all = list(data.utts)
    if cfg.augment or cfg.timeline_cuts or cfg.channels:
        t0 = time.perf_counter()
        extra = [augment_inputs(model, data, split.train, cfg.augment, progress=progress)] if cfg.augment else []
        extra += [augment_inputs(model, data, split.train, 1, progress=progress, kind="cut")] if cfg.timeline_cuts else []
        if cfg.channels:
            t1 = time.perf_counter()
            extra.append(augment_inputs(model, data, split.train, cfg.channels, progress=progress, kind="channel"))
            timings["channels_s"] = time.perf_counter() - t1
        for aug in extra:
            inputs, y, utts_all, split = with_augmented(inputs, y, utts_all, split, aug)
        timings["augment_s"] = time.perf_counter() - t0
        what = ([f"{cfg.augment} augmented copy(ies)"] if cfg.augment else []) + (["the timeline's cut"] if cfg.timeline_cuts else [])
        what += [f"{cfg.channels} channel copy(ies)"] if cfg.channels else []
        log(f"added {' and '.join(what)} of each training file: {split.sizes()}")
    t0 = time.perf_counter()
    corpora = [u.corpus for u in utts_all]
    history = fit(model, inputs, y, split, cfg, progress=progress, corpora=corpora)
    model.eval()
    calibrate(model, inputs, y, split.val, features, cfg=cfg, split=split, utts=utts_all, corpora=corpora)
    heads = [(False, inputs)]
    if model.normalize == "speaker":
        spk_inputs = speaker_inputs(inputs, utts_all)
        fit(model, spk_inputs, y, split, cfg, progress=progress, speaker=True, corpora=corpora)
        model.eval()
        calibrate(model, spk_inputs, y, split.val, features, speaker=True, cfg=cfg, split=split, utts=utts_all,
                  corpora=corpora)
        heads.append((True, spk_inputs))
    timings["epochs_s"] = time.perf_counter() - t0
    if cfg.familiarity and cfg.finetune == "none" and isinstance(inputs, torch.Tensor):
        t0 = time.perf_counter()
        model.familiarity = familiarity_of(inputs, y, split, utts_all, log=log)
        timings["familiarity_s"] = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    training = cfg.to_dict() | {"weights": _portable(cfg.weights), "split_description": split.description, "sizes": split.sizes(), "n_skipped": len(data.skipped)}
    if cfg.encoders:  # a local folder by its name only, as for --weights; the shorthand they replace is not recorded
        training["encoders"] = [f"hf:{Path(e[3:]).name}" if e.startswith("hf:") and Path(e[3:]).expanduser().is_dir() else e
                                for e in cfg.encoders]
        for shorthand in ("backbone", "weights", "acoustic"):
            training.pop(shorthand, None)
    save_model(model, out_dir / "model", features, training, overwrite=overwrite)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    plot_curves(history, out_dir / "curves.png")
    summary: dict[str, Any] = {"labels": labels, "split": split.description, "sizes": split.sizes(), "timings": timings, "history": history}
    if len(split.test):
        for speaker, head_inputs in heads:
            metrics, _ = score(model, head_inputs, split.test, data.utts, features, speaker)
            temperature = model.temperature_of(speaker)
            metrics["calibration"] = calibration_report(logits_for(model, head_inputs, split.test, features, speaker), y[split.test], temperature)
            suffix = "_speaker" if speaker else ""
            (out_dir / f"metrics{suffix}.json").write_text(json.dumps(metrics, indent=2) + "\n")
            plot_confusion(metrics, out_dir / f"confusion{suffix}.png")
            log(("test, speaker-normalised: " if speaker else "test: ") + format_metrics(metrics))
            summary["metrics_speaker" if speaker else "metrics"] = metrics
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return summary


def familiarity_of(inputs: torch.Tensor, y: torch.Tensor, split: Split, utts: Sequence[Utterance], *,
                   log: Log = print) -> Familiarity | None:
    """The familiarity gate of a run's training and validation vectors (``None``, said, when it cannot be fitted)."""
    rows = np.concatenate([split.train, split.val]).astype(np.int64)
    rows = rows[(y[rows] >= 0).numpy()]
    try:
        fam = fit_familiarity(inputs[rows].numpy(), y[rows].numpy(), [utts[i].speaker_key for i in rows],
                              [utts[i].corpus for i in rows])
    except EmovoxError as err:
        log(f"no familiarity gate: {err}")
        return None
    log(f"familiarity gate: {fam.components} directions, threshold {fam.threshold:.3g} "
        f"(99.5 % of held-out speakers' speech below it), speech ceiling {fam.speech_ceiling:.3g}")
    return fam


def familiarity_vectors(model: EmotionClassifier, utts: Sequence[Utterance], cuts: bool, *, channels: int = 0,
                        channel_exclude: Sequence[str] = (), cache_dir: str | Path | None = None, progress: bool = True,
                        log: Log = print) -> tuple[np.ndarray, list[Utterance]]:
    """The vectors a frozen-encoder ``model`` reads of the utterances with one of its labels (and, with ``cuts``, of
    the timeline's cut of each, speaker ``"<speaker>~aug-cut"``; with ``channels``, of that many channel copies of
    each whose speaker is not in ``channel_exclude``, the validation speakers, as training makes them), cached like
    training's, with their utterances."""
    keep = [u for u in utts if u.emotion in model.labels]
    if not keep:
        raise EmovoxError(f"none of the {len(utts)} utterances has one of the model's labels ({', '.join(model.labels)})")
    data = prepare(keep, model.encoders[0].preparer(), cache_dir=cache_dir, progress=progress, log=log)
    x = model_inputs(model, data, progress=progress).numpy()
    used = list(data.utts)
    extra = [augment_inputs(model, data, np.arange(len(used)), 1, progress=progress, kind="cut")] if cuts else []
    if channels:
        skip = set(channel_exclude)
        rows = [i for i, u in enumerate(used) if u.speaker_key not in skip]
        extra.append(augment_inputs(model, data, rows, channels, progress=progress, kind="channel"))
    for aug in extra:
        x, used = np.concatenate([x, aug.vectors.numpy()]), used + list(aug.utts)
    return x, used


def add_familiarity(directory: str | Path, utts: Sequence[Utterance], *, exclude: Sequence[str] = (),
                    exclude_texts: Sequence[str] = (), cuts: bool | None = None, channels: int | None = None,
                    cache_dir: str | Path | None = None, progress: bool = True, log: Log = print) -> Familiarity:
    """Fit the familiarity gate of an existing model folder on (some of) the speech it was trained on and write it
    there (``familiarity.safetensors`` + its ``config.json`` entry; the weights are not touched).

    ``exclude``: speaker keys left out (held-out test speakers); ``exclude_texts``: ``corpus:text`` left out;
    ``cuts``: also the timeline's cut of each file, ``channels``: that many channel copies of each training file
    (defaults for both: as the model was trained, ``timeline_cuts`` and ``channels``; the validation speakers get
    no channel copies, as in training)."""
    from ..model import edit_config, load_model
    from ..model.io import save_familiarity

    directory = Path(directory)
    model, _, config = load_model(directory)
    if model.finetune != "none":
        raise EmovoxError(f"{directory}: a fine-tuned model's vectors are not cached; fit the gate when training it")
    skip, skip_texts = set(exclude), set(exclude_texts)
    keep = [u for u in utts if u.speaker_key not in skip and f"{u.corpus}:{u.text}" not in skip_texts]
    training = config.get("training", {})
    cuts = cuts if cuts is not None else bool(training.get("timeline_cuts"))
    channels = channels if channels is not None else int(training.get("channels") or 0)
    x, used = familiarity_vectors(model, keep, cuts, channels=channels, channel_exclude=training.get("val_speakers") or (),
                                  cache_dir=cache_dir, progress=progress, log=log)
    y = np.array([model.labels.index(u.emotion) for u in used])
    fam = fit_familiarity(x, y, [u.speaker_key for u in used], [u.corpus for u in used])
    entry = save_familiarity(fam, directory)
    edit_config(directory, lambda raw: raw.update(familiarity=entry), intact=False)  # loaded whole above
    log(f"{directory}: familiarity gate fitted on {len(x)} vectors of {len({u.speaker_key.split('~aug')[0] for u in used})} "
        f"speakers; threshold {fam.threshold:.3g}, speech ceiling {fam.speech_ceiling:.3g}")
    return fam


def _portable(weights: str | Path | None) -> str | None:
    """What the config records of ``--weights``: a keyword as it is, a file or folder by its name only (the weights
    themselves travel in the model folder)."""
    if weights is None or str(weights) in ("imagenet", "pretrained"):
        return None if weights is None else str(weights)
    return Path(weights).name


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train vs validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="validation")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train")
    a2.plot(ep, [h["val_acc"] for h in history], "o-", label="validation")
    a2.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
