"""Training: Adam + cross-entropy over a pretrained backbone, best-on-validation kept.

With a frozen backbone (``finetune="none"``) the body runs once over every
spectrogram and only the head trains on the cached embeddings, so an epoch
costs milliseconds instead of a full CNN pass.
"""
from __future__ import annotations

import json
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

from .corpora.base import Utterance
from .backbones import Standardize
from .errors import EmovoxError
from .extract import extract_features
from .features import FeatureConfig, to_image
from .labels import sort_labels
from .metrics import classification_metrics, format_metrics, plot_confusion
from .model import EmotionClassifier, save_model
from .splits import make_split


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved in the model's config)."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    finetune: str = "none"
    split: str = "random"
    test_speakers: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.2
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test_speakers"] = list(self.test_speakers) if self.test_speakers else None
        return d


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.inference_mode()
def images_to_embeddings(
    model: EmotionClassifier, specs: Sequence[np.ndarray], features: FeatureConfig, batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """Run the body once over ``specs`` (list of spectrograms): ``(n, embed_dim)``."""
    from tqdm.auto import tqdm

    model.eval()
    out = []
    for start in tqdm(range(0, len(specs), batch_size), desc="embeddings", unit="batch", disable=not progress, file=sys.stderr):
        batch = _images(specs[start : start + batch_size], model, features)
        out.append(model.embed(batch))
    return torch.cat(out) if out else torch.empty(0, model.embed_dim)


def _images(specs: Sequence[np.ndarray], model: EmotionClassifier, features: FeatureConfig) -> torch.Tensor:
    if len({s.shape for s in specs}) > 1:
        return torch.stack([_images([s], model, features)[0] for s in specs])
    return to_image(np.stack(specs), features.image_size, model.spec.mean, model.spec.std, features.kind)


@torch.inference_mode()
def predict_logits(model: EmotionClassifier, specs: Sequence[np.ndarray], features: FeatureConfig, batch_size: int = 32) -> torch.Tensor:
    """Logits of the full model for a list of spectrograms."""
    model.eval()
    out = [model(_images(specs[i : i + batch_size], model, features)) for i in range(0, len(specs), batch_size)]
    return torch.cat(out) if out else torch.empty(0, len(model.labels))


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
    log=print,
) -> dict[str, Any]:
    """Train a classifier on ``utts`` and write a run folder.

    ``out_dir`` receives ``model/`` (the best-on-validation model),
    ``history.json``, ``curves.png`` and, when the split has a test part,
    ``metrics.json`` and ``confusion.png``. Returns a summary dict.
    """
    out_dir = Path(out_dir)
    if (out_dir / "model").exists() and not overwrite:
        raise EmovoxError(f"{out_dir}: already holds a trained model; choose another --out or pass --overwrite")
    gen = seed_everything(cfg.seed)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    ext = extract_features([u.path for u in utts], features, workers=workers, cache_dir=cache_dir, use_cache=use_cache, progress=progress)
    timings["features_s"] = time.perf_counter() - t0
    for i, err in ext.errors.items():
        log(f"skipped: {err}")
    keep = ext.ok
    if not keep:
        raise EmovoxError("no usable audio: every file failed to load")
    utts = [utts[i] for i in keep]
    specs = [ext.specs[i] for i in keep]

    split = make_split(cfg.split, utts, seed=cfg.seed, test_speakers=cfg.test_speakers)
    if len(split.train) == 0 or len(split.val) == 0:
        raise EmovoxError(f"split {cfg.split!r} left an empty part: {split.sizes()}")
    labels = sort_labels(utts[i].emotion for i in split.train)
    index = {lab: k for k, lab in enumerate(labels)}
    y = torch.tensor([index.get(u.emotion, -1) for u in utts])
    log(f"{len(utts)} utterances, labels: {', '.join(labels)}; split: {split.description} {split.sizes()}")

    model = EmotionClassifier(cfg.backbone, labels, weights=cfg.weights, finetune=cfg.finetune, dropout=cfg.dropout)
    if cfg.finetune == "none":
        t0 = time.perf_counter()
        x_all = images_to_embeddings(model, specs, features, batch_size=max(cfg.batch_size, 32), progress=progress)
        timings["backbone_pass_s"] = time.perf_counter() - t0
        for module in model.head.modules():
            if isinstance(module, Standardize):
                module.fit(x_all[torch.as_tensor(split.train)])
        forward = model.head
        fetch = lambda idx: x_all[idx]  # noqa: E731
    else:
        forward = model
        fetch = lambda idx: _images([specs[i] for i in idx.tolist()], model, features)  # noqa: E731

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    train_idx = torch.as_tensor(split.train)
    train_idx = train_idx[y[train_idx] >= 0]
    val_idx = torch.as_tensor(split.val)
    val_idx = val_idx[y[val_idx] >= 0]

    def run_epoch(idx: torch.Tensor, training: bool) -> tuple[float, float]:
        model.train(training)
        if training:
            idx = idx[torch.randperm(len(idx), generator=gen)]
        total_loss, correct = 0.0, 0
        with torch.set_grad_enabled(training):
            for start in range(0, len(idx), cfg.batch_size):
                b = idx[start : start + cfg.batch_size]
                logits = forward(fetch(b))
                loss = loss_fn(logits, y[b])
                if training:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                total_loss += loss.item() * len(b)
                correct += int((logits.argmax(1) == y[b]).sum())
        return total_loss / max(len(idx), 1), correct / max(len(idx), 1)

    from tqdm.auto import tqdm

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress, file=sys.stderr)
    for epoch in bar:
        tr_loss, tr_acc = run_epoch(train_idx, True)
        va_loss, va_acc = run_epoch(val_idx, False)
        history.append({"epoch": epoch, "train_loss": tr_loss, "train_acc": tr_acc, "val_loss": va_loss, "val_acc": va_acc})
        bar.set_postfix(loss=f"{tr_loss:.3f}", acc=f"{tr_acc:.3f}", val_loss=f"{va_loss:.3f}", val_acc=f"{va_acc:.3f}")
        if best is None or (va_acc, -va_loss) > best:
            best = (va_acc, -va_loss)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history[-1]["best"] = True
    timings["epochs_s"] = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    training = cfg.to_dict() | {"split_description": split.description, "sizes": split.sizes(), "n_skipped": len(ext.errors)}
    save_model(model, out_dir / "model", features, training, overwrite=overwrite)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    plot_curves(history, out_dir / "curves.png")
    summary: dict[str, Any] = {"labels": labels, "split": split.description, "sizes": split.sizes(), "timings": timings, "history": history}
    if len(split.test):
        logits = model.head(x_all[torch.as_tensor(split.test)]) if cfg.finetune == "none" else predict_logits(model, [specs[i] for i in split.test], features)
        pred = [labels[k] for k in logits.argmax(1).tolist()]
        metrics = classification_metrics([utts[i].emotion for i in split.test], pred, labels)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plot_confusion(metrics, out_dir / "confusion.png")
        log("test: " + format_metrics(metrics))
        summary["metrics"] = metrics
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return summary


def plot_curves(history: list[dict[str, float]], path: str | Path) -> Path:
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
