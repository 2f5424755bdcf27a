"""``emovox benchmark``: a matrix of corpus x protocol x backbone, one Markdown report.

The configuration is a TOML file::

    [data]                       # corpus name -> folder (relative to this file)
    tess = "../../shared/data/tess"

    [defaults]                   # TrainConfig fields for every cell
    epochs = 10
    backbone = "efficientnet_lite0"

    [[cell]]
    corpus = "tess"              # or "tess,ravdess" to merge
    protocol = "cross-speaker"   # see emovox.splits.PROTOCOLS
    finetune = ["none", "last"]  # a list expands the matrix (backbone too)
    folds = 6                    # for speaker-kfold

Spectrograms and frozen-backbone embeddings are cached on disk, so running a
matrix again recomputes neither.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .corpora import load_corpus
from .errors import EmovoxError
from .features import FeatureConfig
from .labels import sort_labels
from .metrics import classification_metrics, plot_confusion
from .model import EmotionClassifier
from .splits import protocol_folds
from .calibration import calibration_report
from .train import Log, Prepared, TrainConfig, calibrate, fit, logits_for, model_inputs, prepare, score, seed_everything, weights_tag

#: Protocols whose folds are different experiments (directions), reported one row each.
PER_FOLD_ROWS = {"cross-speaker", "cross-corpus"}
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
_FEATURE_FIELDS = {f.name for f in fields(FeatureConfig)}


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        cfg = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EmovoxError(f"{path}: benchmark config not found") from None
    except tomllib.TOMLDecodeError as err:
        raise EmovoxError(f"{path}: invalid TOML ({err})") from None
    if not cfg.get("cell"):
        raise EmovoxError(f"{path}: no [[cell]] entries")
    cfg["_base"] = path.parent
    return cfg


def expand_cells(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cell of the config with defaults applied and list values expanded."""
    out = []
    for cell in cfg["cell"]:
        merged = {**cfg.get("defaults", {}), **cell}
        unknown = set(merged) - _TRAIN_FIELDS - _FEATURE_FIELDS - {"corpus", "protocol", "folds", "test_corpus", "name"}
        if unknown:
            raise EmovoxError(f"unknown benchmark setting(s): {', '.join(sorted(unknown))}")
        multi = {k: v for k, v in merged.items() if isinstance(v, list)}
        for combo in itertools.product(*multi.values()) if multi else [()]:
            out.append({**merged, **dict(zip(multi, combo))})
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1%}"
    return f"{np.mean(values):.1%} ± {np.std(values):.1%}"


def run_benchmark(
    config: str | Path, out_dir: str | Path, *, workers: int | None = None, cache_dir: str | Path | None = None,
    progress: bool = True, overwrite: bool = False, log: Log = print,
) -> list[dict[str, Any]]:
    """Run every cell of ``config``; write ``report.md``, ``results.json`` and a confusion PNG per row."""
    cfg = load_config(config)
    out_dir = Path(out_dir)
    if (out_dir / "report.md").exists() and not overwrite:
        raise EmovoxError(f"{out_dir}: already holds a report; choose another --out or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    data_paths = {k: (cfg["_base"] / v) for k, v in cfg.get("data", {}).items()}
    prepared: dict[tuple[str, FeatureConfig], Prepared] = {}
    rows: list[dict[str, Any]] = []
    for cell in expand_cells(cfg):
        t_cell = time.perf_counter()
        corpora = [c.strip() for c in cell["corpus"].split(",")]
        missing = [c for c in corpora if c not in data_paths]
        if missing:
            raise EmovoxError(f"no folder for corpus {', '.join(missing)} in the [data] table of {config}")
        features = FeatureConfig(**{k: v for k, v in cell.items() if k in _FEATURE_FIELDS})
        key = (cell["corpus"], features)
        if key not in prepared:
            utts = load_corpus(corpora, [data_paths[c] for c in corpora])
            prepared[key] = prepare(utts, features, workers=workers, cache_dir=cache_dir, progress=progress, log=log)
        data = prepared[key]
        tc = TrainConfig(**{k: v for k, v in cell.items() if k in _TRAIN_FIELDS})
        folds = protocol_folds(cell["protocol"], data.utts, seed=tc.seed, folds=cell.get("folds", 5), test_corpus=cell.get("test_corpus"))
        probe = EmotionClassifier(tc.backbone, sort_labels({u.emotion for u in data.utts}), weights=tc.weights, finetune=tc.finetune)
        inputs = model_inputs(probe, data, weights_tag(tc.backbone, tc.weights), progress=progress)
        results = []
        for f, split in enumerate(folds):
            t_fold = time.perf_counter()
            labels = sort_labels(data.utts[i].emotion for i in split.train)
            index = {lab: k for k, lab in enumerate(labels)}
            y = torch.tensor([index.get(u.emotion, -1) for u in data.utts])
            seed_everything(tc.seed)  # every fold starts from the same initialisation, whatever ran before
            model = EmotionClassifier(tc.backbone, labels, weights=None, finetune=tc.finetune, dropout=tc.dropout)
            # Pretrained layers from the probe; the new last layer keeps its fresh initialisation.
            own = model.state_dict()
            model.load_state_dict({k: v for k, v in probe.state_dict().items() if own[k].shape == v.shape}, strict=False)
            fit(model, inputs, y, split, tc, features, progress=False)
            calibrate(model, inputs, y, split.val, features)
            metrics, probs = score(model, inputs, split.test, data.utts, features)
            metrics["calibration"] = calibration_report(logits_for(model, inputs, split.test, features), y[split.test], model.temperature)
            pred = [labels[k] for k in probs.argmax(1)]
            results.append({"split": split.description, "metrics": metrics,
                            "test_speakers": sorted({data.utts[i].speaker_key for i in split.test}), "seconds": time.perf_counter() - t_fold,
                            "true": [data.utts[i].emotion for i in split.test], "pred": pred, "labels": labels})
            log(f"{cell['corpus']} {cell['protocol']} {tc.backbone}/{tc.finetune} {split.description}: "
                f"accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}")
        groups = [[r] for r in results] if cell["protocol"] in PER_FOLD_ROWS else [results]
        for group in groups:
            name = cell.get("name") or f"{cell['corpus']} · {cell['protocol']}"
            if cell["protocol"] == "cross-speaker":
                name += f" (test {', '.join(group[0]['test_speakers'])})"
            elif cell["protocol"] in PER_FOLD_ROWS:
                name += f" ({group[0]['split'].split(' (')[0]})"
            all_labels = sort_labels(itertools.chain.from_iterable(r["labels"] for r in group))
            pooled = classification_metrics(sum((r["true"] for r in group), []), sum((r["pred"] for r in group), []), all_labels)
            slug = f"{len(rows):02d}-" + "".join(ch if ch.isalnum() else "-" for ch in f"{name}-{tc.backbone}-{tc.finetune}").strip("-").lower()
            plot_confusion(pooled, out_dir / f"{slug}.png", title=f"{name}\n{tc.backbone}, finetune={tc.finetune}")
            rows.append({
                "name": name, "corpus": cell["corpus"], "protocol": cell["protocol"], "backbone": tc.backbone, "finetune": tc.finetune,
                "folds": len(group), "n": int(sum(r["metrics"]["n"] for r in group)),
                "accuracy": [r["metrics"]["accuracy"] for r in group], "uar": [r["metrics"]["uar"] for r in group],
                "macro_f1": [r["metrics"]["macro_f1"] for r in group],
                "ece_before": [r["metrics"]["calibration"]["ece_before"] for r in group],
                "ece_after": [r["metrics"]["calibration"]["ece_after"] for r in group],
                "nll_before": [r["metrics"]["calibration"]["nll_before"] for r in group],
                "nll_after": [r["metrics"]["calibration"]["nll_after"] for r in group],
                "wall_s": round(time.perf_counter() - t_cell if len(groups) == 1 else sum(r["seconds"] for r in group), 1),
                "confusion_png": f"{slug}.png", "pooled": pooled, "splits": [r["split"] for r in group],
                "train": tc.to_dict(), "features": features.to_dict(),
            })
        print(f"done: {cell['corpus']} {cell['protocol']} {tc.backbone}/{tc.finetune}", file=sys.stderr)
    write_report(rows, out_dir)
    return rows


def report_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| corpus · protocol | backbone | finetune | folds | n | accuracy | UAR | macro-F1 | ECE before → after | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['backbone']} | {r['finetune']} | {r['folds']} | {r['n']} | {_mean_std(r['accuracy'])} | "
                     f"{_mean_std(r['uar'])} | {_mean_std(r['macro_f1'])} | {np.mean(r['ece_before']):.3f} → {np.mean(r['ece_after']):.3f} | {r['wall_s']} |")
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = ["# emovox benchmark", "", "Mean ± standard deviation over folds; n counts test utterances over all folds.", "",
          report_table(rows), "", "Confusion matrices (pooled over folds):", ""]
    md += [f"- {r['name']} ({r['backbone']}, {r['finetune']}): [{r['confusion_png']}]({r['confusion_png']})" for r in rows]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
