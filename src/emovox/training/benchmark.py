"""``emovox benchmark``: a matrix of corpus x protocol x backbone, one Markdown report.

The configuration is a TOML file::

    [data]                       # corpus name -> folder (relative to this file)
    tess = "../../shared/data/tess"

    [defaults]                   # TrainConfig fields for every cell
    epochs = 10
    backbone = "efficientnet_lite0"

    [[cell]]
    recipe = "robust"            # optional: a preset of emovox.training.train.RECIPES
    corpus = "tess"              # or "tess,ravdess" to merge
    protocol = "cross-speaker"   # see emovox.splits.PROTOCOLS
    finetune = ["none", "last"]  # a list expands the matrix (backbone too)
    folds = 6                    # for speaker-kfold
    encoders = ["whisper_tiny_en", "whisper_base"]          # one model of both encoders ("a,b" too)
    encoders = [["whisper_tiny_en"], ["whisper_base"]]      # a list of such lists expands the matrix

Spectrograms and frozen-backbone embeddings are cached on disk, so running a
matrix again recomputes neither.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
import tomllib
import copy
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..corpora import load_corpus
from ..errors import EmovoxError
from ..features import FeatureConfig
from ..labels import sort_labels
from ..model import EmotionClassifier
from .calibration import calibration_report
from .data import Log, PreparedCorpus, logits_for, model_inputs, prepare, score, speaker_inputs
from .metrics import classification_metrics, plot_confusion
from .splits import protocol_folds
from .train import RECIPES, TrainConfig, augment_inputs, calibrate, fit, seed_everything, with_augmented

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
        defaults = cfg.get("defaults", {})
        recipe = cell.get("recipe", defaults.get("recipe"))
        if recipe is not None and recipe not in RECIPES:
            raise EmovoxError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
        # A recipe's settings override the defaults; the cell's own settings override both.
        merged = {**defaults, **(RECIPES[recipe] if recipe else {}), **cell}
        merged.pop("recipe", None)
        unknown = set(merged) - _TRAIN_FIELDS - _FEATURE_FIELDS - {"corpus", "protocol", "folds", "test_corpus", "name", "restrict_labels"}
        if unknown:
            raise EmovoxError(f"unknown benchmark setting(s): {', '.join(sorted(unknown))}")
        if "encoders" in merged:  # one model's encoders: a list of names (or "a,b"); a list of lists expands
            given = merged["encoders"]
            if isinstance(given, str):
                given = [e.strip() for e in given.split(",") if e.strip()]
            merged["encoders"] = [tuple(g) for g in given] if given and isinstance(given[0], list) else tuple(given)
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
    prepared: dict[tuple[str, FeatureConfig, bool], PreparedCorpus] = {}
    rows: list[dict[str, Any]] = []
    for cell in expand_cells(cfg):
        t_cell = time.perf_counter()
        corpora = [c.strip() for c in cell["corpus"].split(",")]
        missing = [c for c in corpora if c not in data_paths]
        if missing:
            raise EmovoxError(f"no folder for corpus {', '.join(missing)} in the [data] table of {config}")
        features = FeatureConfig(**{k: v for k, v in cell.items() if k in _FEATURE_FIELDS})
        train_fields = {k: v for k, v in cell.items() if k in _TRAIN_FIELDS}
        if train_fields.get("weights") not in (None, "imagenet", "pretrained"):  # a local file or folder, relative to the config
            train_fields["weights"] = str(cfg["_base"] / Path(train_fields["weights"]).expanduser())
        tc = TrainConfig(**train_fields)
        encoders = tc.build_encoders(features)
        preparer = encoders[0].preparer()
        key = (cell["corpus"], preparer)
        if key not in prepared:
            utts = load_corpus(corpora, [data_paths[c] for c in corpora])
            prepared[key] = prepare(utts, preparer, workers=workers, cache_dir=cache_dir, progress=progress, log=log)
        data = prepared[key]
        folds = protocol_folds(cell["protocol"], data.utts, seed=tc.seed, folds=cell.get("folds", 5), test_corpus=cell.get("test_corpus"))
        probe = EmotionClassifier(encoders, sort_labels({u.emotion for u in data.utts}), finetune=tc.finetune)
        inputs = model_inputs(probe, data, progress=progress)
        # Augmented copies of every file some fold trains on, computed once for all folds.
        trained = np.unique(np.concatenate([f.train for f in folds]))
        extra = [augment_inputs(probe, data, trained, tc.augment, progress=progress)] if tc.augment else []
        extra += [augment_inputs(probe, data, trained, 1, progress=progress, kind="cut")] if tc.timeline_cuts else []
        variants = [("per file", False, False)] + ([("per speaker", True, False)] if tc.normalize == "speaker" else [])
        if cell.get("restrict_labels"):  # the same heads, argmax over the labels the test part uses
            variants += [(f"{name}, test labels", speaker, True) for name, speaker, _ in variants]
        results: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in variants}
        for f, split in enumerate(folds):
            labels = sort_labels(data.utts[i].emotion for i in split.train)
            index = {lab: k for k, lab in enumerate(labels)}
            y = torch.tensor([index.get(u.emotion, -1) for u in data.utts])
            seed_everything(tc.seed)  # every fold starts from the same initialisation, whatever ran before
            # The probe's pretrained encoders (a fresh copy when they train); the new heads keep their seeded
            # fresh initialisation.
            fold_encoders = list(probe.encoders) if tc.finetune == "none" else copy.deepcopy(list(probe.encoders))
            model = EmotionClassifier(fold_encoders, labels, finetune=tc.finetune, dropout=tc.dropout, normalize=tc.normalize)
            fold_inputs, fold_y, fold_utts = inputs, y, data.utts
            for aug in extra:  # copies of this fold's training files join its training part only
                fold_inputs, fold_y, fold_utts, split = with_augmented(fold_inputs, fold_y, fold_utts, split, aug)
            fitted: set[bool] = set()
            for variant, speaker, restricted in variants:
                t_fold = time.perf_counter()
                head_inputs = speaker_inputs(fold_inputs, fold_utts) if speaker else fold_inputs
                if speaker not in fitted:
                    fit(model, head_inputs, fold_y, split, tc, progress=False, speaker=speaker,
                        corpora=[u.corpus for u in fold_utts])
                    calibrate(model, head_inputs, fold_y, split.val, features, speaker, cfg=tc, split=split,
                              utts=fold_utts, corpora=[u.corpus for u in fold_utts])
                    fitted.add(speaker)
                allowed = sort_labels(data.utts[i].emotion for i in split.test) if restricted else None
                metrics, probs = score(model, head_inputs, split.test, data.utts, features, speaker, restrict=allowed)
                temperature = model.temperature_of(speaker)
                metrics["calibration"] = calibration_report(logits_for(model, head_inputs, split.test, features, speaker),
                                                            fold_y[split.test], temperature)
                pred = [labels[k] for k in probs.argmax(1)]
                results[variant].append({"split": split.description, "metrics": metrics,
                                         "test_speakers": sorted({data.utts[i].speaker_key for i in split.test}), "seconds": time.perf_counter() - t_fold,
                                         "true": [data.utts[i].emotion for i in split.test], "pred": pred, "labels": labels})
                log(f"{cell['corpus']} {cell['protocol']} {_method(tc)} [{variant}] {split.description}: "
                    f"accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}")
        for variant, _, _ in variants:
            rows.extend(_rows(cell, tc, features, variant, results[variant], len(rows), out_dir, time.perf_counter() - t_cell))
        print(f"done: {cell['corpus']} {cell['protocol']} {_method(tc)}", file=sys.stderr)
    write_report(rows, out_dir)
    return rows


def _method(tc: TrainConfig) -> str:
    """Short name of what a cell trains: backbone/finetune, plus acoustic features, solver, augmentation
    and, for Adam, the learning rate and its schedule."""
    shown = [(tc.acoustic, f"+{tc.acoustic}"), (tc.solver != "adam", f" {tc.solver}"),
             (tc.solver == "logreg" and tc.logreg_c != TrainConfig.logreg_c, f" C={tc.logreg_c:g}"), (tc.augment, f" aug×{tc.augment}"), (tc.timeline_cuts, " +cuts"),
             (tc.balance, " balanced"), (tc.balance_corpora, " corpora balanced"),
             (tc.encoders and len(tc.encoders) > 1, f" ({tc.fusion})"), (tc.calibration != "validation", f" T:{tc.calibration}")]
    if tc.solver == "adam" and tc.finetune != "none":
        shown += [(True, f" lr {tc.lr:g}"), (tc.body_lr_scale != 1.0, f" (CNN ×{tc.body_lr_scale:g})"),
                  (tc.warmup_epochs, f" warm-up {tc.warmup_epochs}"), (tc.schedule != "constant", f" {tc.schedule}"),
                  (tc.spec_augment, f" SpecAugment {tc.spec_augment}")]
    body = "+".join(tc.encoders) if tc.encoders else tc.backbone
    return f"{body}/{tc.finetune}" + "".join(text for on, text in shown if on)


def _rows(cell: dict[str, Any], tc: TrainConfig, features: FeatureConfig, variant: str, results: list[dict[str, Any]], first: int,
          out_dir: Path, cell_s: float) -> list[dict[str, Any]]:
    """Report rows of one cell's results: one row, or one per fold for the protocols whose folds are directions."""
    rows = []
    groups = [[r] for r in results] if cell["protocol"] in PER_FOLD_ROWS else [results]
    for group in groups:
        name = cell.get("name") or f"{cell['corpus']} · {cell['protocol']}"
        if cell["protocol"] == "cross-speaker":
            name += f" (test {', '.join(group[0]['test_speakers'])})"
        elif cell["protocol"] in PER_FOLD_ROWS:
            name += f" ({group[0]['split'].split(' (')[0]})"
        method = _method(tc)
        all_labels = sort_labels(itertools.chain.from_iterable(r["labels"] for r in group))
        pooled = classification_metrics(sum((r["true"] for r in group), []), sum((r["pred"] for r in group), []), all_labels)
        slug = f"{first + len(rows):02d}-" + "".join(ch if ch.isalnum() else "-" for ch in f"{name}-{method}-{variant}").strip("-").lower()
        plot_confusion(pooled, out_dir / f"{slug}.png", title=f"{name}\n{method}, normalised {variant}")
        rows.append({
            "name": name, "corpus": cell["corpus"], "protocol": cell["protocol"], "backbone": tc.backbone, "finetune": tc.finetune,
            "method": method, "normalized": variant,
            "folds": len(group), "n": int(sum(r["metrics"]["n"] for r in group)),
            "accuracy": [r["metrics"]["accuracy"] for r in group], "uar": [r["metrics"]["uar"] for r in group],
            "macro_f1": [r["metrics"]["macro_f1"] for r in group],
            "ece_before": [r["metrics"]["calibration"]["ece_before"] for r in group],
            "ece_after": [r["metrics"]["calibration"]["ece_after"] for r in group],
            "nll_before": [r["metrics"]["calibration"]["nll_before"] for r in group],
            "nll_after": [r["metrics"]["calibration"]["nll_after"] for r in group],
            "wall_s": round(cell_s if len(groups) == 1 else sum(r["seconds"] for r in group), 1),
            "confusion_png": f"{slug}.png", "pooled": pooled, "splits": [r["split"] for r in group],
            "train": tc.to_dict(), "features": features.to_dict(),
        })
    return rows


def report_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| corpus · protocol | method | normalised | folds | n | accuracy | UAR | macro-F1 | ECE before → after | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r.get('method', r['backbone'] + '/' + r['finetune'])} | {r.get('normalized', 'per file')} | "
                     f"{r['folds']} | {r['n']} | {_mean_std(r['accuracy'])} | "
                     f"{_mean_std(r['uar'])} | {_mean_std(r['macro_f1'])} | {np.mean(r['ece_before']):.3f} → {np.mean(r['ece_after']):.3f} | {r['wall_s']} |")
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = ["# emovox benchmark", "", "Mean ± standard deviation over folds; n counts test utterances over all folds.", "",
          report_table(rows), "", "Confusion matrices (pooled over folds):", ""]
    md += [f"- {r['name']} ({r.get('method', r['backbone'])}, normalised {r.get('normalized', 'per file')}): "
           f"[{r['confusion_png']}]({r['confusion_png']})" for r in rows]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
