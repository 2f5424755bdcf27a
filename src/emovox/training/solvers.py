"""How a head is fitted: the solvers behind :func:`fit`.

``adam`` runs epochs of Adam + cross-entropy through whatever trains (only the head on cached vectors of frozen
encoders; the tail or the whole CNN when fine-tuning) and keeps the state best on validation. ``logreg`` fits the
head of frozen encoders as an L2 logistic regression in one go. Both read one :class:`Job` and return the
per-epoch history.
"""
from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..encoders.base import Standardize
from ..errors import EmovoxError
from ..model import EmotionClassifier
from .config import TrainConfig
from .data import forward_fn, head_of
from .splits import Split


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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


@dataclass
class Job:
    """One head to fit: the model, what it reads (``inputs``), class indices ``y`` and the labelled rows to train
    and validate on."""

    model: EmotionClassifier
    head: nn.Module
    inputs: torch.Tensor | Sequence[np.ndarray]
    y: torch.Tensor
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    cfg: TrainConfig
    speaker: bool = False
    corpora: Sequence[str] | None = None
    progress: bool = True


def fit(
    model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], y: torch.Tensor, split: Split, cfg: TrainConfig,
    *, progress: bool = True, speaker: bool = False,
    corpora: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model``'s ``file`` head (``speaker=True``: its ``speaker`` head, on speaker-normalised ``inputs``)
    on ``split.train`` with the solver ``cfg.solver``; returns the per-epoch history.

    ``inputs`` come from :func:`~emovox.training.data.model_inputs`: encoder vectors (frozen encoders: only the
    head runs), stem outputs (``last``) or spectrograms (``all``). ``y`` holds class indices, ``-1`` for labels
    the model does not know (left out). ``corpora`` names the corpus of every row (for ``cfg.balance_corpora``).
    """
    if cfg.solver not in SOLVERS:
        raise EmovoxError(f"solver must be one of {', '.join(SOLVERS)}, not {cfg.solver!r}")
    train_idx, val_idx = labelled(split.train, y), labelled(split.val, y)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise EmovoxError(f"nothing to train or validate on: {len(train_idx)} training, {len(val_idx)} validation utterances")
    job = Job(model, head_of(model, speaker), inputs, y, train_idx, val_idx, cfg, speaker, corpora, progress)
    return SOLVERS[cfg.solver](job)


def labelled(idx: Sequence[int], y: torch.Tensor) -> torch.Tensor:
    """The rows of ``idx`` whose label the model knows (``y >= 0``)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    return idx[y[idx] >= 0]


def encoder_blocks(model: EmotionClassifier) -> list[slice]:
    """The columns of each encoder's vectors in what the heads read (their concatenation, in order)."""
    ends = np.cumsum([0] + [e.dim for e in model.encoders])
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]


def fit_standardize(job: Job) -> None:
    """Fit the head's input standardisation on the training rows (on the tail's input when the tail trains)."""
    model, inputs, idx = job.model, job.inputs, job.train_idx
    standardize = [m for m in job.head.modules() if isinstance(m, Standardize)]
    if not standardize or model.finetune == "all":
        return
    with torch.inference_mode():
        emb = inputs[idx] if model.finetune == "none" else torch.cat(
            [model.encoders[0].stages[1].eval()(inputs[idx[i : i + 64]]) for i in range(0, len(idx), 64)])
    for module in standardize:
        module.fit(emb.clone())


def fit_adam(job: Job) -> list[dict[str, Any]]:
    """Epochs of Adam + cross-entropy; the state best on validation (accuracy, then loss) is kept."""
    from tqdm.auto import tqdm

    model, cfg, y = job.model, job.cfg, job.y
    gen = seed_everything(cfg.seed)
    fit_standardize(job)
    device = resolve_device(cfg.device)
    model.to(device)
    run = forward_fn(model, job.inputs, job.speaker, device)
    train_run = run
    if cfg.spec_augment and not isinstance(job.inputs, torch.Tensor):
        rng = np.random.default_rng(cfg.seed)
        train_run = forward_fn(model, job.inputs, job.speaker, device,
                               transform=lambda spec: spec_augment(spec, cfg.spec_augment, rng))
    opt = torch.optim.Adam(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = -(-len(job.train_idx) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, cfg.epochs * steps, cfg.warmup_epochs * steps, cfg.schedule))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y[job.train_idx], len(model.labels)).to(device) if cfg.balance else None)

    def run_epoch(idx: torch.Tensor, training: bool, bar: Any = None) -> tuple[float, float]:
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

    frozen = model.finetune != "all"
    history: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    epochs = tqdm(range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not job.progress, file=sys.stderr)
    for epoch in epochs:
        inner = None if frozen or not job.progress else tqdm(total=len(job.train_idx), desc=f"epoch {epoch}", unit="utt",
                                                             leave=False, file=sys.stderr)
        tr_loss, tr_acc = run_epoch(job.train_idx, True, inner)
        if inner is not None:
            inner.close()
        va_loss, va_acc = run_epoch(job.val_idx, False)
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


def fit_logreg(job: Job) -> list[dict[str, Any]]:
    """Fit the head (Standardize, Dropout, Linear) as an L2 logistic regression on frozen vectors, in one go."""
    from sklearn.linear_model import LogisticRegression

    model, head, inputs, y, train_idx, val_idx, cfg = job.model, job.head, job.inputs, job.y, job.train_idx, job.val_idx, job.cfg
    sample_weight = None
    if cfg.balance_corpora:
        if job.corpora is None or len(job.corpora) != len(y):
            raise EmovoxError("balance_corpora needs the corpus of every training row")
        sample_weight = group_weights([job.corpora[i] for i in train_idx.tolist()])

    if model.finetune != "none" or not isinstance(inputs, torch.Tensor):
        raise EmovoxError("solver 'logreg' fits a head on a frozen backbone (finetune='none')")
    standardize, linear = head[0], head[-1]
    standardize.fit(inputs[train_idx].clone())
    with torch.inference_mode():
        z = standardize(inputs).numpy()
    present = sorted(set(y[train_idx].tolist()))
    rows, target = z[train_idx.numpy()], y[train_idx].numpy()
    # One regression over every encoder's vectors, or (fusion "average") one per encoder with their logits
    # averaged: the same linear map over the concatenation, each encoder's block of columns from its own fit.
    blocks = encoder_blocks(model) if cfg.fusion == "average" else [slice(0, z.shape[1])]
    weight = torch.zeros_like(linear.weight)
    bias = torch.zeros(len(present), dtype=linear.bias.dtype)
    for cols in blocks:
        clf = LogisticRegression(C=cfg.logreg_c, max_iter=3000, random_state=cfg.seed,
                                 class_weight="balanced" if cfg.balance else None)
        clf.fit(rows[:, cols], target, sample_weight=sample_weight)
        coef, intercept = (clf.coef_, clf.intercept_) if len(present) > 2 else (
            np.vstack([-clf.coef_ / 2, clf.coef_ / 2]), np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2]))
        weight[present, cols] = torch.as_tensor(coef, dtype=weight.dtype) / len(blocks)
        bias += torch.as_tensor(intercept, dtype=bias.dtype) / len(blocks)
    full_bias = torch.full_like(linear.bias, -1e4)  # a label with no training example is never predicted
    full_bias[present] = bias
    bias = full_bias
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


#: The solvers by name (``TrainConfig.solver``).
SOLVERS: dict[str, Callable[[Job], list[dict[str, Any]]]] = {"adam": fit_adam, "logreg": fit_logreg}
