"""Fitting a model's familiarity gate (:class:`~emovox.model.familiar.Familiarity`) with an honest threshold.

The threshold is what held-out speech scores, not training speech: the speakers are dealt into folds, statistics
are fitted without each fold's speakers and score them; with several corpora, also without each whole corpus
(new recording conditions, new languages). The threshold is the larger of the two :data:`PASS_RATE` quantiles,
so at least that share of speech from new speakers, and from a new corpus, still passes. The statistics kept
are then fitted on all the vectors.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..corpora.base import Utterance
from ..errors import EmovoxError
from ..model.familiar import COMPONENTS, PASS_RATE, Familiarity
from .data import Log


def fit_familiarity(vectors: np.ndarray, labels: Sequence[int] | np.ndarray, speakers: Sequence[str],
                    corpora: Sequence[str] | None = None, *, components: int = COMPONENTS, folds: int = 6,
                    pass_rate: float = PASS_RATE, seed: int = 0) -> Familiarity:
    """Familiarity statistics of training ``vectors`` (with class ``labels``, the ``speakers`` of each and their
    ``corpora``), its threshold set by cross-validation over speakers (and corpora). Augmented copies (speaker
    ``"<speaker>~aug..."``) go with their source speaker."""
    from sklearn.model_selection import GroupKFold

    x = np.asarray(vectors, dtype=np.float32)
    y = np.asarray(labels)
    voice = np.array([str(s).split("~aug")[0] for s in speakers])
    if not len(x) == len(y) == len(voice):
        raise EmovoxError(f"{len(x)} vectors, {len(y)} labels and {len(voice)} speakers: one of each per vector")
    k = min(folds, len(set(voice)))
    if k < 2:
        raise EmovoxError("a familiarity threshold needs training speech of at least 2 speakers")
    held = np.zeros(len(x), dtype=np.float32)
    for fit_rows, test_rows in GroupKFold(n_splits=k).split(x, groups=voice):
        held[test_rows] = Familiarity.fit(x[fit_rows], y[fit_rows], components, seed).distances(x[test_rows])
    by_speaker = float(np.quantile(held, pass_rate))
    info: dict = {"pass_rate": pass_rate, "speaker_folds": int(k), "speaker_cv_quantile": round(by_speaker, 4)}
    threshold = by_speaker
    names = np.array([str(c) for c in corpora]) if corpora is not None else None
    if names is not None and len(set(names)) > 1:
        new_corpus = np.concatenate([Familiarity.fit(x[names != c], y[names != c], components, seed).distances(x[names == c])
                                     for c in sorted(set(names))])
        by_corpus = float(np.quantile(new_corpus, pass_rate))
        info |= {"corpus_cv_quantile": round(by_corpus, 4), "corpora": sorted(set(names))}
        threshold = max(threshold, by_corpus)
    return Familiarity.fit(x, y, components, seed).with_threshold(threshold, **info)


def add_familiarity(directory: str | Path, utts: Sequence[Utterance], *, exclude: Sequence[str] = (),
                    exclude_texts: Sequence[str] = (), cuts: bool | None = None, cache_dir: str | Path | None = None,
                    progress: bool = True, log: Log = print) -> Familiarity:
    """Fit the familiarity gate of an existing model folder on (some of) the speech it was trained on and write it
    there (``familiarity.safetensors`` + its ``config.json`` entry; the weights are not touched).

    ``exclude``: speaker keys left out (held-out test speakers); ``exclude_texts``: ``corpus:text`` left out;
    ``cuts``: also the timeline's cut of each file (default: as the model was trained, ``timeline_cuts``)."""
    from ..model import CONFIG_FILE, load_model
    from ..model.io import save_familiarity
    from .data import model_inputs, prepare
    from .train import augment_inputs

    directory = Path(directory)
    model, _, config = load_model(directory)
    if model.finetune != "none":
        raise EmovoxError(f"{directory}: a fine-tuned model's vectors are not cached; fit the gate when training it")
    skip, skip_texts = set(exclude), set(exclude_texts)
    keep = [u for u in utts if u.emotion in model.labels and u.speaker_key not in skip
            and f"{u.corpus}:{u.text}" not in skip_texts]
    if not keep:
        raise EmovoxError(f"none of the {len(utts)} utterances has one of the model's labels ({', '.join(model.labels)})")
    data = prepare(keep, model.encoders[0].preparer(), cache_dir=cache_dir, progress=progress, log=log)
    x = model_inputs(model, data, progress=progress).numpy()
    used = list(data.utts)
    if cuts if cuts is not None else bool(config.get("training", {}).get("timeline_cuts")):
        cut = augment_inputs(model, data, np.arange(len(used)), 1, progress=progress, kind="cut")
        x = np.concatenate([x, cut.vectors.numpy()])
        used += list(cut.utts)
    y = np.array([model.labels.index(u.emotion) for u in used])
    fam = fit_familiarity(x, y, [u.speaker_key for u in used], [u.corpus for u in used])
    entry = save_familiarity(fam, directory)
    raw = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps(raw | {"familiarity": entry}, indent=2) + "\n")
    log(f"{directory}: familiarity gate fitted on {len(x)} vectors of {len({u.speaker_key.split('~aug')[0] for u in used})} "
        f"speakers; threshold {fam.threshold:.3g}")
    return fam


__all__ = ["add_familiarity", "fit_familiarity"]
