"""Fitting a model's familiarity gate (:class:`~emovox.model.familiar.Familiarity`) with an honest threshold.

The threshold is what held-out speech scores, not training speech: the speakers are dealt into folds, statistics
are fitted without each fold's speakers and score them; with several corpora, also without each whole corpus
(new recording conditions, new languages). The threshold is the larger of the two :data:`PASS_RATE` quantiles,
so at least that share of speech from new speakers, and from a new corpus, still passes. The statistics kept
are then fitted on all the vectors. Channel copies of the training files (rooms, telephone lines, babble: speaker
``"<speaker>~aug-ch<k>"``) count as their speaker's speech, so the threshold is also what held-out speech through
those channels scores. Beyond it, up to the ``speech_ceiling`` (where :data:`CONFIRMED_RATE` of the held-out
speech lies), an input passes when the neural voice-activity detector hears speech in it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import EmovoxError
from ..model.familiar import COMPONENTS, CONFIRMED_RATE, PASS_RATE, UNCONFIRMED_RATE, Familiarity


def held_out_distances(vectors: np.ndarray, labels: Sequence[int] | np.ndarray, speakers: Sequence[str],
                       corpora: Sequence[str] | None = None, *, components: int = COMPONENTS, folds: int = 6,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Each vector's distance from statistics fitted without its speaker's fold, and (with several ``corpora``)
    without its whole corpus: ``(by_speaker, by_corpus, folds)``. ``by_corpus`` is NaN for a corpus without which
    too little speech is left to fit, ``None`` with one corpus. Augmented copies (speaker ``"<speaker>~aug..."``)
    go with their source speaker."""
    from sklearn.model_selection import GroupKFold

    x = np.asarray(vectors, dtype=np.float32)
    y = np.asarray(labels)
    voice = np.array([str(s).split("~aug")[0] for s in speakers])
    if not len(x) == len(y) == len(voice):
        raise EmovoxError(f"{len(x)} vectors, {len(y)} labels and {len(voice)} speakers: one of each per vector")
    k = min(folds, len(set(voice)))
    if k < 2:
        raise EmovoxError("a familiarity threshold needs training speech of at least 2 speakers")
    by_speaker = np.zeros(len(x), dtype=np.float32)
    for fit_rows, test_rows in GroupKFold(n_splits=k).split(x, groups=voice):
        by_speaker[test_rows] = Familiarity.fit(x[fit_rows], y[fit_rows], components, seed).distances(x[test_rows])
    names = np.array([str(c) for c in corpora]) if corpora is not None else None
    if names is None or len(set(names)) < 2:
        return by_speaker, None, k
    by_corpus = np.full(len(x), np.nan, dtype=np.float32)
    for c in sorted(set(names)):
        others = names != c
        if others.sum() >= 3 and len(set(voice[others])) >= 2:  # else too little speech stands for "a new corpus"
            by_corpus[~others] = Familiarity.fit(x[others], y[others], components, seed).distances(x[~others])
    return by_speaker, by_corpus, k


def fit_familiarity(vectors: np.ndarray, labels: Sequence[int] | np.ndarray, speakers: Sequence[str],
                    corpora: Sequence[str] | None = None, *, components: int = COMPONENTS, folds: int = 6,
                    pass_rate: float = PASS_RATE, confirmed_rate: float | None = CONFIRMED_RATE,
                    seed: int = 0) -> Familiarity:
    """Familiarity statistics of training ``vectors`` (with class ``labels``, the ``speakers`` of each and their
    ``corpora``), its threshold set by cross-validation over speakers (and corpora): see
    :func:`held_out_distances`.

    Without a second opinion (``confirmed_rate=None``) the threshold is the larger of the ``pass_rate`` quantiles of
    the held-out distances by speaker and by corpus. With one (the default), the threshold is the
    :data:`~emovox.model.familiar.UNCONFIRMED_RATE` quantile of the distances of new speakers, a stricter one, and
    the ``speech_ceiling`` reaches to the ``confirmed_rate`` quantile of the distances of new speakers and of new
    corpora: speech between the two passes when the neural voice-activity detector hears it as speech
    (:attr:`~emovox.model.familiar.Familiarity.speech_ceiling`), so noise and tones near the speech of a channel
    are still refused."""
    by_speaker, by_corpus, k = held_out_distances(vectors, labels, speakers, corpora, components=components,
                                                  folds=folds, seed=seed)
    plain = float(np.quantile(by_speaker, pass_rate))
    info: dict = {"pass_rate": pass_rate, "speaker_folds": int(k), "speaker_cv_quantile": round(plain, 4)}
    held = [by_speaker]
    if by_corpus is not None and np.isfinite(by_corpus).any():
        scored = np.isfinite(by_corpus)
        q = float(np.quantile(by_corpus[scored], pass_rate))
        info |= {"corpus_cv_quantile": round(q, 4), "corpora": sorted({str(c) for c, s in zip(corpora, scored) if s})}
        plain = max(plain, q)
        held.append(by_corpus[scored])
    threshold = plain
    if confirmed_rate is not None:
        threshold = float(np.quantile(by_speaker, UNCONFIRMED_RATE))
        far = max(float(np.quantile(d, confirmed_rate)) for d in held)
        info |= {"unconfirmed_rate": UNCONFIRMED_RATE, "confirmed_rate": confirmed_rate,
                 "plain_threshold": round(plain, 4), "speech_ceiling": round(max(1.0, far / threshold), 3)}
    return Familiarity.fit(vectors, labels, components, seed).with_threshold(threshold, **info)


__all__ = ["fit_familiarity"]
