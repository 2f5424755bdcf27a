"""Classification metrics for emotion recognition: accuracy, UAR, macro-F1, confusion."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Scores of predictions ``y_pred`` against ``y_true`` over the model's ``labels``.

    True labels the model does not know cannot be predicted correctly; they
    are counted under ``"unknown_labels"`` and left out of every score.
    UAR (unweighted average recall) is the mean recall over the classes
    present in ``y_true``.
    """
    labels = list(labels)
    known = set(labels)
    unknown = Counter(t for t in y_true if t not in known)
    pairs = [(t, p) for t, p in zip(y_true, y_pred) if t in known]
    out: dict[str, Any] = {"n": len(pairs), "labels": labels, "unknown_labels": dict(sorted(unknown.items()))}
    if not pairs:
        out.update(accuracy=float("nan"), uar=float("nan"), macro_f1=float("nan"), per_class={}, confusion=[])
        return out
    t, p = (np.array(x) for x in zip(*pairs))
    present = [lab for lab in labels if lab in set(t.tolist())]
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # here: prediction never needs scikit-learn

    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    out["accuracy"] = float(np.mean(t == p))
    out["uar"] = float(np.mean([r for lab, r in zip(labels, rec) if lab in present]))
    out["macro_f1"] = float(np.mean([f for lab, f in zip(labels, f1) if lab in present]))
    out["per_class"] = {
        lab: {"precision": float(pr), "recall": float(rc), "f1": float(f), "support": int(s)}
        for lab, pr, rc, f, s in zip(labels, prec, rec, f1, support)
    }
    out["confusion"] = confusion_matrix(t, p, labels=labels).tolist()
    return out


def format_metrics(m: dict[str, Any]) -> str:
    """A human-readable report of :func:`classification_metrics` output."""
    lines = [f"n={m['n']}  accuracy={m['accuracy']:.4f}  UAR={m['uar']:.4f}  macro-F1={m['macro_f1']:.4f}"]
    if m.get("unknown_labels"):
        skipped = ", ".join(f"{k} ({v})" for k, v in m["unknown_labels"].items())
        lines.append(f"left out (labels the model does not know): {skipped}")
    if m.get("per_class"):
        lines.append(f"{'label':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>5}")
        for lab, s in m["per_class"].items():
            lines.append(f"{lab:<10} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>6.3f} {s['support']:>5d}")
    return "\n".join(lines)


def plot_confusion(m: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix of ``m`` as a PNG (rows: true, columns: predicted; row-normalised colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(m["confusion"], dtype=float)
    labels = m["labels"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)), dpi=120)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {m['accuracy']:.1%}, UAR {m['uar']:.1%} (n={m['n']})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
