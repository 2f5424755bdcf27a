"""Who speaks when, at the resolution of the voices rather than of the emotion windows: speaker turns.

The speech regions of a recording are covered by short overlapping pieces (:data:`PIECE_S` seconds every
:data:`PIECE_HOP_S`; a region shorter than a piece is one piece: a "yes" or an "mm" keeps its own voice), each piece
is embedded by the GE2E speaker encoder (:mod:`.voices`) and the pieces are clustered into voices. Every
:data:`STEP_S` of speech takes the voice most of the pieces covering it have, so that a voice change inside one
speech region (a reply with no pause) splits the region there; a run shorter than :data:`MIN_TURN_S` inside a
region joins its neighbours. The result: turns ``(start, end, voice)`` that the timeline cuts its emotion windows
from, a window never spanning two voices.

>>> turns = speaker_turns(regions, pieces, labels)            # doctest: +SKIP

:func:`diarization_error` scores turns against a reference with ``pyannote.metrics`` (missed speech, false alarm and
speaker confusion over the reference's speech time, a forgiveness collar around each reference boundary).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import EmovoxError

#: Length and hop of the pieces a speech region is embedded in (seconds).
PIECE_S = 1.5
PIECE_HOP_S = 0.75
#: Resolution of the turn boundaries (seconds).
STEP_S = 0.05
#: A run of one voice shorter than this inside a speech region joins its neighbours (seconds).
MIN_TURN_S = 0.6

Span = tuple[float, float]


def pieces(regions: Sequence[Span], length: float = PIECE_S, hop: float = PIECE_HOP_S) -> list[Span]:
    """The pieces that cover ``regions``: every ``hop`` seconds a piece of ``length`` (the last ends with the
    region); a region shorter than ``length`` is one piece."""
    out: list[Span] = []
    for a, b in regions:
        if b - a <= length + 1e-9:
            out.append((a, b))
            continue
        t = a
        while t + length < b - 1e-6:
            out.append((t, t + length))
            t += hop
        out.append((b - length, b))
    return [(round(float(s), 4), round(float(e), 4)) for s, e in out]


def speaker_turns(regions: Sequence[Span], spans: Sequence[Span], labels: Sequence[int],
                  min_turn_s: float = MIN_TURN_S, step_s: float = STEP_S) -> list[tuple[float, float, int]]:
    """Turns ``(start, end, voice)`` of ``regions`` given the voice ``labels`` of the pieces ``spans``."""
    if len(spans) != len(labels):
        raise EmovoxError(f"{len(labels)} voice labels for {len(spans)} pieces")
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    labels_a = np.asarray(labels, dtype=int)
    n_voices = int(labels_a.max()) + 1 if labels_a.size else 1
    turns: list[tuple[float, float, int]] = []
    for a, b in regions:
        n = max(1, int(round((b - a) / step_s)))
        centres = a + (np.arange(n) + 0.5) * (b - a) / n
        votes = np.zeros((n, n_voices))
        inside = np.flatnonzero((starts < b) & (ends > a))
        for k in inside:
            cover = (centres >= starts[k]) & (centres < ends[k])
            if cover.any():  # nearer a piece's middle, the more its vote counts
                mid, half = (starts[k] + ends[k]) / 2, max((ends[k] - starts[k]) / 2, 1e-3)
                votes[cover, labels_a[k]] += 1.0 - 0.5 * np.abs(centres[cover] - mid) / half
        if not votes.any():
            continue
        who = votes.argmax(1)
        who = _absorb_short_runs(who, votes, max(1, int(round(min_turn_s / ((b - a) / n)))))
        edges = np.flatnonzero(np.diff(who)) + 1
        bounds = [0, *edges.tolist(), n]
        for i, j in zip(bounds[:-1], bounds[1:]):
            turns.append((round(a + i * (b - a) / n, 3), round(a + j * (b - a) / n, 3), int(who[i])))
    return turns


def _absorb_short_runs(who: np.ndarray, votes: np.ndarray, min_steps: int) -> np.ndarray:
    """Runs shorter than ``min_steps`` take the voice of the neighbour the run's votes favour (repeatedly, the
    shortest first), unless the run is the whole region."""
    who = who.copy()
    while True:
        edges = np.flatnonzero(np.diff(who)) + 1
        bounds = [0, *edges.tolist(), len(who)]
        runs = list(zip(bounds[:-1], bounds[1:]))
        if len(runs) < 2:
            return who
        short = [(j - i, r) for r, (i, j) in enumerate(runs) if j - i < min_steps]
        if not short:
            return who
        _, r = min(short)
        i, j = runs[r]
        options = [who[runs[r - 1][0]]] if r > 0 else []
        options += [who[runs[r + 1][0]]] if r + 1 < len(runs) else []
        who[i:j] = max(options, key=lambda v: votes[i:j, v].sum())


def diarization_error(reference: Sequence[tuple[float, float, str]], hypothesis: Sequence[tuple[float, float, str]],
                      collar: float = 0.25, skip_overlap: bool = False) -> dict[str, float]:
    """Diarization error rate of ``hypothesis`` turns against ``reference`` turns (``(start, end, speaker)``),
    with ``pyannote.metrics``: ``{"der", "missed", "false_alarm", "confusion"}`` as shares of the reference's speech
    time (``collar``: seconds around each reference boundary not scored, pyannote's total collar)."""
    try:
        from pyannote.core import Annotation, Segment
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        raise EmovoxError("diarization error rates need pyannote.metrics: pip install pyannote.metrics") from None

    def annotation(turns) -> Annotation:
        ann = Annotation()
        for k, (s, e, who) in enumerate(turns):
            if e > s:
                ann[Segment(float(s), float(e)), k] = str(who)
        return ann

    import warnings

    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "uem approximated by the union of the extents": what is meant here
        parts = metric(annotation(reference), annotation(hypothesis), detailed=True)
    total = max(parts["total"], 1e-9)
    return {"der": float(parts["diarization error rate"]), "missed": parts["missed detection"] / total,
            "false_alarm": parts["false alarm"] / total, "confusion": parts["confusion"] / total,
            "scored_s": float(parts["total"])}


__all__ = ["MIN_TURN_S", "PIECE_HOP_S", "PIECE_S", "STEP_S", "diarization_error", "pieces", "speaker_turns"]
