"""Training: Adam + cross-entropy over a pretrained backbone, best-on-validation kept.

With a frozen backbone (``finetune="none"``) the body runs once over every
spectrogram (and its embeddings are cached on disk), and only the head trains
on them, so an epoch costs milliseconds instead of a full CNN pass.

The pieces (:func:`emovox.inputs.prepare`, :func:`emovox.inputs.embed`,
:func:`fit`, :func:`emovox.inputs.score`) are reused by the benchmark runner;
:func:`train` chains them and writes a run folder.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..corpora.base import Utterance
from ..encoders.base import Standardize
from ..errors import EmovoxError
from ..features import FeatureConfig
from ..labels import sort_labels
from ..model import EmotionClassifier, save_model
from ..encoders import build_encoder
from ..model.classifier import shorthand
from .calibration import calibration_report, fit_temperature
from .data import Log, Prepared, encoder_vectors, forward_fn, head_of, logits_for, model_inputs, prepare, score, speaker_inputs
from .metrics import format_metrics, plot_confusion
from .splits import Split, make_split


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved in the model's config)."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    finetune: str = "none"
    split: str = "random"
    test_speakers: tuple[str, ...] | None = None
    val_speakers: tuple[str, ...] | None = None
    #: words/sentences (``corpus:text``) whose utterances all go to the test part (``split="speaker"``)
    test_texts: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.2
    seed: int = 0
    #: the model's encoders by name, in order (e.g. two speech encoders; each with its standard weights or, for
    #: ``hf:FOLDER``, those of the folder); overrides ``backbone``, ``weights`` and ``acoustic``
    encoders: tuple[str, ...] | None = None
    #: acoustic functionals appended to the embeddings (``"compare"``, ``"egemaps"``; frozen backbone only)
    acoustic: str | None = None
    #: ``"speaker"``: also train a head on per-speaker normalised vectors (see :mod:`emovox.acoustic`)
    normalize: str = "none"
    #: how the head is fitted: ``"adam"`` (epochs of Adam, best on validation) or ``"logreg"``
    #: (L2-regularised multinomial logistic regression, scikit-learn's L-BFGS; frozen backbone only)
    solver: str = "adam"
    #: inverse L2 strength of ``solver="logreg"``
    logreg_c: float = 0.01
    #: seeded augmented copies of every training file (:mod:`emovox.augment`; frozen backbone only)
    augment: int = 0
    #: learning-rate schedule of ``solver="adam"``: ``"constant"`` or ``"cosine"`` (decay to 0 by the last epoch)
    schedule: str = "constant"
    #: epochs of linear learning-rate warm-up from 0 (``solver="adam"``)
    warmup_epochs: int = 0
    #: learning rate of the trainable backbone layers relative to the head's (discriminative rates; ``finetune`` last/all)
    body_lr_scale: float = 1.0
    #: stop after this many epochs without a better validation score (``None``: run every epoch)
    patience: int | None = None
    #: SpecAugment on training spectrograms (``finetune="all"``): this many time masks and as many frequency masks
    spec_augment: int = 0
    #: where ``solver="adam"`` trains: ``"cpu"``, ``"cuda"`` or ``"auto"`` (a GPU when there is one)
    device: str = "cpu"
    #: weight every class by the inverse of its share of the training part (both solvers)
    balance: bool = False
    #: weight every corpus by the inverse of its share of the training part, so that a corpus of many files
    #: from few voices does not dominate the head (``solver="logreg"``)
    balance_corpora: bool = False

    def __post_init__(self) -> None:
        if self.encoders is not None:
            object.__setattr__(self, "encoders", tuple(self.encoders) or None)
        if self.acoustic in ("none", ""):
            object.__setattr__(self, "acoustic", None)  # the spelling TOML and the command line allow
        if self.solver not in ("adam", "logreg"):
            raise EmovoxError(f"solver must be 'adam' or 'logreg', not {self.solver!r}")
        if self.augment < 0:
            raise EmovoxError(f"augment must be 0 or more copies, not {self.augment}")
        if self.schedule not in SCHEDULES:
            raise EmovoxError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= max(self.epochs, 1):
            raise EmovoxError(f"warmup_epochs must be at least 0 and fewer than the {self.epochs} epochs, not {self.warmup_epochs}")
        if self.body_lr_scale <= 0:
            raise EmovoxError(f"body_lr_scale must be positive, not {self.body_lr_scale}")
        if self.patience is not None and self.patience < 1:
            raise EmovoxError(f"patience must be 1 or more epochs, not {self.patience}")
        if self.spec_augment < 0:
            raise EmovoxError(f"spec_augment must be 0 or more masks, not {self.spec_augment}")
        if self.balance_corpora and self.solver != "logreg":
            raise EmovoxError("balance_corpora weights the logistic-regression head (solver='logreg')")
        if self.device not in ("cpu", "cuda", "auto"):
            raise EmovoxError(f"device must be 'cpu', 'cuda' or 'auto', not {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test_speakers"] = list(self.test_speakers) if self.test_speakers else None
        d["val_speakers"] = list(self.val_speakers) if self.val_speakers else None
        d["test_texts"] = list(self.test_texts) if self.test_texts else None
        d["encoders"] = list(self.encoders) if self.encoders else None
        return d

    def build_encoders(self, features: FeatureConfig | None = None) -> list:
        """The encoders this configuration names (see :attr:`encoders`)."""
        if self.encoders:
            return [build_encoder(name, features=features) for name in self.encoders]
        return shorthand(self.backbone, self.weights, self.acoustic, features)


SCHEDULES = ("constant", "cosine")

#: Named presets for ``emovox train --recipe``: TrainConfig fields, chosen by cross-validation
#: (README, "Unseen speakers"). ``plain``: the original recipe (frozen CNN, linear
#: head, Adam, 10 epochs). ``robust``: frozen EfficientNet-Lite0 embeddings with
#: pooled intermediate stages, ComParE functionals, two augmented copies of each
#: training file, per-speaker normalisation, L2 logistic regression. ``speech``: the frozen
#: Whisper tiny.en encoder (mean/std of every hidden state), per-speaker normalisation,
#: L2 logistic regression.
RECIPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "robust": {"backbone": "efficientnet_lite0_stages", "finetune": "none", "acoustic": "compare", "normalize": "speaker",
               "solver": "logreg", "logreg_c": 0.01, "augment": 2},
    "speech": {"backbone": "whisper_tiny_en", "finetune": "none", "acoustic": None, "normalize": "speaker", "solver": "logreg",
               "logreg_c": 0.01, "augment": 0},
}


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name``, with ``overrides`` on top."""
    if name not in RECIPES:
        raise EmovoxError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return TrainConfig(**(RECIPES[name] | overrides))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
    model: EmotionClassifier, data: Prepared, idx: Sequence[int], copies: int, tag: str | None = None, *, progress: bool = True,
) -> Augmented:
    """Vectors of ``copies`` augmented copies of the prepared utterances ``idx`` (every encoder's input through its
    preparer; inputs and vectors cached like the originals'). ``tag`` is accepted for compatibility."""
    from .augment import augmented_inputs

    del tag
    if model.finetune != "none":
        raise EmovoxError("augmented copies are added to frozen-encoder vectors (finetune='none')")
    source = np.asarray(idx, dtype=np.int64)
    utts, inputs, keys = augmented_inputs([data.utts[i] for i in source], copies, [e.preparer() for e in model.encoders],
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
    rows = aug.rows(train_idx)
    n = len(utts)
    return (torch.cat([inputs, aug.vectors[rows]]), torch.cat([y, y[np.tile(train_idx, aug.copies)]]),
            list(utts) + [aug.utts[r] for r in rows],
            Split(np.concatenate([train_idx, np.arange(n, n + len(rows))]), split.val, split.test, split.description))


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """Per-row weights ``n / (k * count(group))``: each of the ``k`` groups (corpora) weighs as much in all."""
    keys, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return (len(groups) / (len(keys) * counts))[inverse]


def class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (k * count)`` for each of the ``k`` classes present in ``y`` (scikit-learn's "balanced"); 0 for absent ones."""
    counts = torch.bincount(y, minlength=n_classes).float()
    present = counts > 0
    weights = torch.zeros(n_classes)
    weights[present] = len(y) / (int(present.sum()) * counts[present])
    return weights


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (the GPU when PyTorch sees one) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EmovoxError("device 'cuda' was asked for, but PyTorch sees no GPU; use device 'cpu' or 'auto'")
    return torch.device(name)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at optimiser step ``step`` of ``total``: linear
    warm-up over the first ``warmup`` steps, then constant or a cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def param_groups(model: EmotionClassifier, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimiser groups: the heads at ``cfg.lr``, trainable backbone layers at ``cfg.lr * cfg.body_lr_scale``."""
    body = [p for p in model.encoders.parameters() if p.requires_grad]
    in_body = {id(p) for p in body}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in in_body]
    groups = [{"params": rest, "lr": cfg.lr}]
    if body:
        groups.append({"params": body, "lr": cfg.lr * cfg.body_lr_scale})
    return groups


def spec_augment(spec: np.ndarray, masks: int, rng: np.random.Generator) -> np.ndarray:
    """SpecAugment masking: ``masks`` time masks (each up to 10 % of the frames)
    and ``masks`` frequency masks (each up to 15 % of the bands), filled with the
    spectrogram's mean. Returns a copy."""
    out = np.array(spec, copy=True)
    n_freq, n_time = out.shape[-2:]
    fill = out.mean()
    for _ in range(masks):
        width = int(rng.integers(0, n_time // 10 + 1))
        start = int(rng.integers(0, n_time - width + 1))
        out[..., start : start + width] = fill
        height = int(rng.integers(0, n_freq * 15 // 100 + 1))
        start = int(rng.integers(0, n_freq - height + 1))
        out[..., start : start + height, :] = fill
    return out


def fit(
    model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], y: torch.Tensor, split: Split, cfg: TrainConfig,
    features: FeatureConfig, *, progress: bool = True, speaker: bool = False, corpora: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``split.train`` for ``cfg.epochs``; keep the state best on ``split.val``.

    ``corpora`` names the corpus of every row of ``inputs`` (needed by ``cfg.balance_corpora``).

    ``speaker=True`` trains ``model.speaker_head`` (on speaker-normalised
    ``inputs``, see :func:`speaker_inputs`) instead of ``model.head``.
    ``cfg.solver="logreg"`` fits the head in one go (no epochs).

    ``inputs`` come from :func:`model_inputs`: body embeddings (frozen
    backbone: only the head runs), stem outputs (``last``: tail and head run)
    or spectrograms (``all``: the whole network runs). ``y`` holds class
    indices, ``-1`` for labels the model does not know (left out).
    Returns the per-epoch history.
    """
    from tqdm.auto import tqdm

    gen = seed_everything(cfg.seed)
    train_idx = torch.as_tensor(split.train, dtype=torch.long)
    train_idx = train_idx[y[train_idx] >= 0]
    val_idx = torch.as_tensor(split.val, dtype=torch.long)
    val_idx = val_idx[y[val_idx] >= 0]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise EmovoxError(f"nothing to train or validate on: {len(train_idx)} training, {len(val_idx)} validation utterances")
    head = head_of(model, speaker)
    if cfg.solver == "logreg":
        weights = None
        if cfg.balance_corpora:
            if corpora is None or len(corpora) != len(y):
                raise EmovoxError("balance_corpora needs the corpus of every training row")
            weights = group_weights([corpora[i] for i in train_idx.tolist()])
        return _fit_logreg(model, head, inputs, y, train_idx, val_idx, cfg, weights)
    if cfg.solver != "adam":
        raise EmovoxError(f"solver must be 'adam' or 'logreg', not {cfg.solver!r}")
    standardize = [m for m in head.modules() if isinstance(m, Standardize)]
    if standardize and model.finetune != "all":
        with torch.inference_mode():
            emb = inputs[train_idx] if model.finetune == "none" else torch.cat(
                [model.encoders[0].stages[1].eval()(inputs[train_idx[i : i + 64]]) for i in range(0, len(train_idx), 64)])
        for module in standardize:
            module.fit(emb.clone())
    device = resolve_device(cfg.device)
    model.to(device)
    run = forward_fn(model, inputs, speaker, device)
    train_run = run
    if cfg.spec_augment and not isinstance(inputs, torch.Tensor):
        rng = np.random.default_rng(cfg.seed)
        train_run = forward_fn(model, inputs, speaker, device, transform=lambda spec: spec_augment(spec, cfg.spec_augment, rng))
    frozen = model.finetune != "all"

    opt = torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = -(-len(train_idx) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, cfg.epochs * steps, cfg.warmup_epochs * steps, cfg.schedule))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y[train_idx], len(model.labels)).to(device) if cfg.balance else None)

    def run_epoch(idx: torch.Tensor, training: bool, bar=None) -> tuple[float, float]:
        model.train(training)
        if training:
            idx = idx[torch.randperm(len(idx), generator=gen)]
        total_loss, correct = 0.0, 0
        with torch.set_grad_enabled(training):
            for start in range(0, len(idx), cfg.batch_size):
                b = idx[start : start + cfg.batch_size]
                logits = (train_run if training else run)(b)
                target = y[b].to(device)
                loss = loss_fn(logits, target)
                if training:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                total_loss += loss.item() * len(b)
                correct += int((logits.argmax(1) == target).sum())
                if bar is not None:
                    bar.update(len(b))
        return total_loss / len(idx), correct / len(idx)

    history: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    epochs = tqdm(range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress, file=sys.stderr)
    for epoch in epochs:
        inner = None if frozen or not progress else tqdm(total=len(train_idx), desc=f"epoch {epoch}", unit="utt", leave=False, file=sys.stderr)
        tr_loss, tr_acc = run_epoch(train_idx, True, inner)
        if inner is not None:
            inner.close()
        va_loss, va_acc = run_epoch(val_idx, False)
        history.append({"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss, "val_acc": va_acc,
                        "lr": opt.param_groups[0]["lr"]})
        epochs.set_postfix(loss=f"{tr_loss:.3f}", acc=f"{tr_acc:.3f}", val_loss=f"{va_loss:.3f}", val_acc=f"{va_acc:.3f}")
        if best is None or (va_acc, -va_loss) > best:
            best, best_epoch = (va_acc, -va_loss), epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            history[-1]["best"] = True
        elif cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            history[-1]["stopped_early"] = True
            break
    epochs.close()
    model.to("cpu")
    model.load_state_dict(best_state)
    return history


def _fit_logreg(model: EmotionClassifier, head: nn.Module, inputs: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor,
                val_idx: torch.Tensor, cfg: TrainConfig, sample_weight: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Fit ``head`` (Standardize, Dropout, Linear) as an L2 logistic regression on frozen ``inputs``."""
    from sklearn.linear_model import LogisticRegression

    if model.finetune != "none" or not isinstance(inputs, torch.Tensor):
        raise EmovoxError("solver 'logreg' fits a head on a frozen backbone (finetune='none')")
    standardize, linear = head[0], head[-1]
    standardize.fit(inputs[train_idx].clone())
    with torch.inference_mode():
        z = standardize(inputs).numpy()
    present = sorted(set(y[train_idx].tolist()))
    clf = LogisticRegression(C=cfg.logreg_c, max_iter=3000, random_state=cfg.seed, class_weight="balanced" if cfg.balance else None)
    clf.fit(z[train_idx.numpy()], y[train_idx].numpy(), sample_weight=sample_weight)
    weight = torch.zeros_like(linear.weight)
    bias = torch.full_like(linear.bias, -1e4)  # a label with no training example is never predicted
    weight[present] = torch.as_tensor(clf.coef_, dtype=weight.dtype) if len(present) > 2 else torch.as_tensor(
        np.vstack([-clf.coef_ / 2, clf.coef_ / 2]), dtype=weight.dtype)
    bias[present] = torch.as_tensor(clf.intercept_, dtype=bias.dtype) if len(present) > 2 else torch.as_tensor(
        [-clf.intercept_[0] / 2, clf.intercept_[0] / 2], dtype=bias.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    model.eval()

    def summary(idx: torch.Tensor) -> tuple[float, float]:
        with torch.inference_mode():
            logits = head(inputs[idx])
        return float(nn.functional.cross_entropy(logits, y[idx])), float((logits.argmax(1) == y[idx]).float().mean())

    (tr_loss, tr_acc), (va_loss, va_acc) = summary(train_idx), summary(val_idx)
    return [{"epoch": 1, "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss, "val_acc": va_acc, "best": True}]


def calibrate(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], y: torch.Tensor, idx: Sequence[int],
              features: FeatureConfig, speaker: bool = False) -> float:
    """Fit the softmax temperature of the model's head (``speaker_head``) on the utterances ``idx`` (its validation part)."""
    idx = np.asarray(list(idx), dtype=np.int64)
    t = fit_temperature(logits_for(model, inputs, idx, features, speaker), y[idx])
    model.calibrate(t, speaker)
    return t


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
    if cfg.augment:
        t0 = time.perf_counter()
        aug = augment_inputs(model, data, split.train, cfg.augment, progress=progress)
        inputs, y, utts_all, split = with_augmented(inputs, y, data.utts, split, aug)
        timings["augment_s"] = time.perf_counter() - t0
        log(f"added {cfg.augment} augmented copy(ies) of each training file: {split.sizes()}")
    t0 = time.perf_counter()
    corpora = [u.corpus for u in utts_all]
    history = fit(model, inputs, y, split, cfg, features, progress=progress, corpora=corpora)
    model.eval()
    calibrate(model, inputs, y, split.val, features)
    heads = [(False, inputs)]
    if model.normalize == "speaker":
        spk_inputs = speaker_inputs(inputs, utts_all)
        fit(model, spk_inputs, y, split, cfg, features, progress=progress, speaker=True, corpora=corpora)
        model.eval()
        calibrate(model, spk_inputs, y, split.val, features, speaker=True)
        heads.append((True, spk_inputs))
    timings["epochs_s"] = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    training = cfg.to_dict() | {"weights": _portable(cfg.weights), "split_description": split.description, "sizes": split.sizes(), "n_skipped": len(data.skipped)}
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
