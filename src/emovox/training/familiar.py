"""Fitting a model's familiarity gate (:class:`~emovox.model.familiar.Familiarity`) with an honest threshold.

The threshold is what held-out speech scores, not training speech: the speakers are dealt into folds, statistics
are fitted without each fold's speakers and score them; with several corpora, also without each whole corpus
(new recording conditions, new languages). The threshold is the larger of the two :data:`PASS_RATE` quantiles,
so at least that share of speech from new speakers, and from a new corpus, still passes. The statistics kept
are then fitted on all the vectors.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import EmovoxError
from ..model.familiar import COMPONENTS, PASS_RATE, Familiarity


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
        parts, left = [], []
        for c in sorted(set(names)):
            others = names != c
            if others.sum() < 3 or len(set(voice[others])) < 2:
                continue  # too little speech without this corpus to stand for "a new corpus"
            parts.append(Familiarity.fit(x[others], y[others], components, seed).distances(x[~others]))
            left.append(c)
        if parts:
            by_corpus = float(np.quantile(np.concatenate(parts), pass_rate))
            info |= {"corpus_cv_quantile": round(by_corpus, 4), "corpora": left}
            threshold = max(threshold, by_corpus)
    return Familiarity.fit(x, y, components, seed).with_threshold(threshold, **info)


__all__ = ["fit_familiarity"]
