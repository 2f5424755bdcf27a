"""Deterministic train / validation / test splits of a list of utterances.

Every function returns a :class:`Split` of index arrays into the list it was
given. Speaker grouping uses :attr:`Utterance.speaker_key`, so merged corpora
never mix speakers by accident.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..corpora.base import Utterance
from ..errors import EmovoxError

SPLITS = ("random", "speaker", "words", "all")
#: Protocols that yield several folds (see :func:`protocol_folds`).
PROTOCOLS = ("random", "words", "speaker", "speaker-kfold", "loso", "cross-speaker", "cross-corpus")


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    description: str = ""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _stratified(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, part) with ``part`` a stratified ``fraction``."""
    if fraction <= 0 or len(idx) == 0:
        return idx, idx[:0]
    counts = np.unique(labels[idx], return_counts=True)[1]
    strat = labels[idx] if counts.min() >= 2 else None
    from sklearn.model_selection import train_test_split  # imported here: the CLI starts without scikit-learn

    rest, part = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(rest), np.sort(part)


def random_split(utts: Sequence[Utterance], val: float = 0.15, test: float = 0.15, seed: int = 0) -> Split:
    """Stratified random split (the tutorial protocol: speakers and words leak)."""
    labels = np.array([u.emotion for u in utts])
    idx = np.arange(len(utts))
    rest, test_idx = _stratified(idx, labels, test, seed)
    train_idx, val_idx = _stratified(rest, labels, val / (1 - test) if test < 1 else 0, seed + 1)
    return Split(train_idx, val_idx, test_idx, f"random stratified {1 - val - test:.0%}/{val:.0%}/{test:.0%}")


def _group_parts(groups: np.ndarray, fractions: Sequence[float], seed: int) -> list[set]:
    """Shuffle the unique groups and cut them into parts of the given fractions (each ≥ 1 group)."""
    uniq = np.array(sorted(set(groups.tolist())))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    parts, start = [], 0
    for f in fractions:
        n = max(1, int(round(f * len(uniq))))
        parts.append(set(uniq[start : start + n].tolist()))
        start += n
    parts.append(set(uniq[start:].tolist()))
    return parts


def group_split(
    utts: Sequence[Utterance],
    groups: Sequence[str],
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    what: str = "group",
) -> Split:
    """Split so that no group (speaker, word …) is in two parts.

    With fewer than three groups there cannot be three disjoint parts: the
    validation part is then a stratified share of the training groups.
    """
    groups = np.asarray(groups)
    n_groups = len(set(groups.tolist()))
    labels = np.array([u.emotion for u in utts])
    idx = np.arange(len(utts))
    if n_groups < 2:
        raise EmovoxError(f"a {what}-independent split needs at least 2 {what}s, found {n_groups}")
    if n_groups < 3:
        test_set, _ = _group_parts(groups, [test], seed)
        test_idx = idx[np.isin(groups, list(test_set))]
        train_idx, val_idx = _stratified(idx[~np.isin(groups, list(test_set))], labels, val, seed)
        return Split(train_idx, val_idx, test_idx, f"{what}-independent test ({', '.join(sorted(test_set))}); validation shares training {what}s")
    test_set, val_set, _ = _group_parts(groups, [test, val], seed)
    test_idx = idx[np.isin(groups, list(test_set))]
    val_idx = idx[np.isin(groups, list(val_set))]
    train_idx = idx[~np.isin(groups, list(test_set | val_set))]
    return Split(train_idx, val_idx, test_idx, f"{what}-independent: {len(test_set)} test, {len(val_set)} validation {what}s")


def _select_speakers(utts: Sequence[Utterance], wanted: Sequence[str], role: str) -> np.ndarray:
    """Mask of utterances whose speaker id (or ``corpus:id``) is in ``wanted``."""
    wanted_set = set(wanted)
    mask = np.array([u.speaker in wanted_set or u.speaker_key in wanted_set for u in utts])
    found = {u.speaker for u, m in zip(utts, mask) if m} | {u.speaker_key for u, m in zip(utts, mask) if m}
    unknown = wanted_set - found
    if unknown:
        known = sorted({u.speaker_key for u in utts})
        raise EmovoxError(f"{role} speaker(s) {', '.join(sorted(unknown))} not in the data; speakers are {', '.join(known)}")
    return mask


def speaker_split(
    utts: Sequence[Utterance],
    test_speakers: Sequence[str] | None = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    val_speakers: Sequence[str] | None = None,
    test_texts: Sequence[str] | None = None,
) -> Split:
    """Speaker-independent split.

    ``test_speakers`` and ``val_speakers`` (ids or ``corpus:id``) fix those
    parts; otherwise speakers are drawn with ``seed``. With fewer than three
    speakers left for training and validation, validation is a stratified
    share of the training speakers' utterances. ``test_texts`` (``corpus:text``)
    also moves every utterance of those words or sentences to the test part,
    whoever speaks them (e.g. TESS words held out from a model that trains on
    both TESS voices).
    """
    if test_texts:
        wanted = set(test_texts)
        by_text = np.array([f"{u.corpus}:{u.text}" in wanted for u in utts])
        missing = wanted - {f"{u.corpus}:{u.text}" for u in utts}
        if missing:
            raise EmovoxError(f"test text(s) {', '.join(sorted(missing)[:5])} not in the data")
        idx = np.arange(len(utts))
        rest = speaker_split([u for u, t in zip(utts, by_text) if not t], test_speakers, val, test, seed, val_speakers)
        keep = idx[~by_text]
        return Split(keep[rest.train], keep[rest.val], np.sort(np.concatenate([keep[rest.test], idx[by_text]])),
                     f"{rest.description}; test words/sentences: {len(wanted)} ({', '.join(sorted(wanted)[:3])}, ...)")
    keys = np.array([u.speaker_key for u in utts])
    if not test_speakers and not val_speakers:
        return group_split(utts, keys, val, test, seed, what="speaker")
    idx = np.arange(len(utts))
    in_test = _select_speakers(utts, test_speakers, "test") if test_speakers else np.zeros(len(utts), bool)
    if val_speakers:
        in_val = _select_speakers(utts, val_speakers, "validation")
        if (in_val & in_test).any():
            raise EmovoxError("a speaker cannot be both a test and a validation speaker")
        if (in_val | in_test).all():
            raise EmovoxError("every speaker is a test or validation speaker: nothing left to train on")
        return Split(idx[~in_val & ~in_test], idx[in_val], idx[in_test],
                     f"test speakers {', '.join(sorted(test_speakers or [])) or 'none'}; validation speakers {', '.join(sorted(val_speakers))}")
    test_idx, rest = idx[in_test], idx[~in_test]
    if len(rest) == 0:
        raise EmovoxError("every speaker is a test speaker: nothing left to train on")
    rest_keys = keys[rest]
    wanted = ", ".join(sorted(test_speakers))
    if len(set(rest_keys.tolist())) >= 3:
        val_set, _ = _group_parts(rest_keys, [val], seed)
        is_val = np.isin(rest_keys, list(val_set))
        return Split(rest[~is_val], rest[is_val], test_idx, f"test speakers {wanted}; validation speakers {', '.join(sorted(val_set))}")
    labels = np.array([u.emotion for u in utts])
    train_idx, val_idx = _stratified(rest, labels, val, seed)
    return Split(train_idx, val_idx, test_idx, f"test speakers {wanted}; validation shares training speakers")


def words_split(utts: Sequence[Utterance], val: float = 0.15, test: float = 0.15, seed: int = 0) -> Split:
    """No word (or sentence) in two parts: for TESS, whose speakers say every word in every emotion."""
    if any(u.text is None for u in utts):
        raise EmovoxError("the 'words' split needs the spoken word of every utterance (TESS has it)")
    return group_split(utts, [f"{u.corpus}:{u.text}" for u in utts], val, test, seed, what="word")


def all_split(utts: Sequence[Utterance], val: float = 0.1, seed: int = 0) -> Split:
    """Train on everything but a small stratified validation part for model selection; no test part."""
    labels = np.array([u.emotion for u in utts])
    train_idx, val_idx = _stratified(np.arange(len(utts)), labels, val, seed)
    return Split(train_idx, val_idx, val_idx[:0], f"all data; stratified {val:.0%} validation, no test part")


def make_split(
    name: str, utts: Sequence[Utterance], seed: int = 0, test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None, test_texts: Sequence[str] | None = None,
) -> Split:
    """Dispatch on a split name from :data:`SPLITS`."""
    if name == "random":
        return random_split(utts, seed=seed)
    if name == "speaker":
        return speaker_split(utts, test_speakers, seed=seed, val_speakers=val_speakers, test_texts=test_texts)
    if test_texts:
        raise EmovoxError("test_texts works with the 'speaker' split")
    if name == "words":
        return words_split(utts, seed=seed)
    if name == "all":
        return all_split(utts, seed=seed)
    raise EmovoxError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")


def speaker_kfold(utts: Sequence[Utterance], k: int = 5, seed: int = 0, test_corpus: str | None = None) -> list[Split]:
    """Speaker-grouped k-fold: each fold tests on 1/k of the speakers.

    Validation speakers are those of the next fold, so train, validation and
    test never share a speaker (needs at least 3 speakers). ``test_corpus``:
    only that corpus's speakers are cut into folds; the other corpora always
    train (e.g. TESS + nEMO + most RAVDESS actors -> held-out RAVDESS actors).
    """
    keys = np.array([u.speaker_key for u in utts])
    if test_corpus is not None and not any(u.corpus == test_corpus for u in utts):
        raise EmovoxError(f"test corpus {test_corpus!r} is not among {sorted({u.corpus for u in utts})}")
    speakers = np.array(sorted({u.speaker_key for u in utts if test_corpus is None or u.corpus == test_corpus}))
    if len(speakers) < 3:
        raise EmovoxError(f"speaker k-fold needs at least 3 speakers, found {len(speakers)}")
    k = min(k, len(speakers))
    if k < 3:
        raise EmovoxError("speaker k-fold needs k >= 3 (test, validation and training speakers)")
    rng = np.random.default_rng(seed)
    rng.shuffle(speakers)
    groups = [set(g.tolist()) for g in np.array_split(speakers, k)]
    idx = np.arange(len(utts))
    folds = []
    for f in range(k):
        test_set, val_set = groups[f], groups[(f + 1) % k]
        in_test, in_val = np.isin(keys, list(test_set)), np.isin(keys, list(val_set))
        folds.append(Split(idx[~in_test & ~in_val], idx[in_val], idx[in_test],
                           f"fold {f + 1}/{k}: test speakers {', '.join(sorted(test_set))}"))
    return folds


def leave_one_speaker_out(utts: Sequence[Utterance], seed: int = 0) -> list[Split]:
    """One fold per speaker (validation: the next speaker in a seeded order)."""
    return speaker_kfold(utts, k=len({u.speaker_key for u in utts}), seed=seed)


def cross_speaker(utts: Sequence[Utterance], seed: int = 0) -> list[Split]:
    """Each speaker in turn is the whole test set; the others train (TESS: OAF -> YAF and YAF -> OAF)."""
    speakers = sorted({u.speaker_key for u in utts})
    return [speaker_split(utts, [s], seed=seed) for s in speakers]


def cross_corpus(utts: Sequence[Utterance], test_corpus: str, seed: int = 0, val: float = 0.15) -> Split:
    """Train on every corpus but ``test_corpus``, test on it, scoring only labels the training corpora have.

    Validation is speaker-independent when the training corpora have at least
    three speakers.
    """
    idx = np.arange(len(utts))
    in_test = np.array([u.corpus == test_corpus for u in utts])
    if not in_test.any() or in_test.all():
        raise EmovoxError(f"cross-corpus needs {test_corpus!r} and at least one other corpus; have {sorted({u.corpus for u in utts})}")
    rest = idx[~in_test]
    shared = {utts[i].emotion for i in rest}
    test_idx = np.array([i for i in idx[in_test] if utts[i].emotion in shared], dtype=int)
    keys = np.array([utts[i].speaker_key for i in rest])
    if len(set(keys.tolist())) >= 3:
        val_set, _ = _group_parts(keys, [val], seed)
        is_val = np.isin(keys, list(val_set))
        train_idx, val_idx = rest[~is_val], rest[is_val]
    else:
        labels = np.array([u.emotion for u in utts])
        train_idx, val_idx = _stratified(rest, labels, val, seed)
    trained_on = ", ".join(sorted({utts[i].corpus for i in rest}))
    return Split(train_idx, val_idx, test_idx, f"train {trained_on} -> test {test_corpus} (shared labels: {', '.join(sorted(shared & {utts[i].emotion for i in idx[in_test]}))})")


def protocol_folds(name: str, utts: Sequence[Utterance], *, seed: int = 0, folds: int = 5, test_corpus: str | None = None) -> list[Split]:
    """The folds of an evaluation protocol from :data:`PROTOCOLS`."""
    if name in ("random", "words", "speaker"):
        return [make_split(name, utts, seed=seed)]
    if name == "speaker-kfold":
        return speaker_kfold(utts, folds, seed, test_corpus)
    if name == "loso":
        return leave_one_speaker_out(utts, seed)
    if name == "cross-speaker":
        return cross_speaker(utts, seed)
    if name == "cross-corpus":
        corpora = sorted({u.corpus for u in utts})
        targets = [test_corpus] if test_corpus else corpora
        return [cross_corpus(utts, c, seed) for c in targets]
    raise EmovoxError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
