"""What emovox answers: a :class:`Prediction` per input, a :class:`Timeline` of :class:`Segment` s for long audio,
and the one way each becomes a record (:func:`scored`, :func:`flat`) for JSON, HTTP answers, CSV and Parquet rows.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import UNCERTAIN_BELOW


def scored(label: str, probabilities: dict[str, float], threshold: float = UNCERTAIN_BELOW,
           labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The record of one classified input or segment: ``label``, ``confidence``, ``uncertain`` (top probability
    below ``threshold``) and ``probabilities`` (in the order of ``labels`` when given)."""
    confidence = probabilities[label]
    probs = {lab: probabilities[lab] for lab in labels} if labels is not None else dict(probabilities)
    return {"label": label, "confidence": confidence, "uncertain": confidence < threshold, "probabilities": probs}


def flat(record: dict[str, Any]) -> dict[str, Any]:
    """A record of :func:`scored` with its probabilities as ``prob_<label>`` columns (tables: CSV, Parquet)."""
    out = {k: v for k, v in record.items() if k != "probabilities"}
    return out | {f"prob_{lab}": p for lab, p in record["probabilities"].items()}


def table_columns(labels: Sequence[str], first: Sequence[str] = (), *, speaker: bool = False, head: bool = False,
                  ood: bool = False) -> list[str]:
    """The columns of every table of answers emovox writes (the CLI's CSV, a timeline's, the web page's, and the
    answer columns of a batch dataset), in this order: ``first`` (``file``, or ``start, end``), ``speaker``,
    ``label``, ``confidence``, ``uncertain``, ``prob_<label>`` per label, ``head``, ``ood_score``."""
    return [*first, *(["speaker"] if speaker else []), "label", "confidence", "uncertain",
            *(f"prob_{lab}" for lab in labels), *(["head"] if head else []), *(["ood_score"] if ood else [])]


def csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows (records flattened by :func:`flat`) as CSV: times to the millisecond, scores to 4 decimals, booleans as
    ``true``/``false``, missing values empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(csv_cells(row, columns))
    return buf.getvalue()


def csv_cells(row: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """One row's cells as :func:`csv_text` writes them (for tables written a row at a time)."""
    return [_cell(c, row.get(c)) for c in columns]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}" if column in ("start", "end") else f"{value:.4f}"
    return str(value)


def prediction_of(probs: np.ndarray, labels: Sequence[str], source: str | None = None, speaker: str | None = None,
                  head: str | None = None, ood_score: float | None = None) -> Prediction:
    """The :class:`Prediction` of a row of probabilities over ``labels``."""
    return Prediction(labels[int(np.argmax(probs))], {lab: float(v) for lab, v in zip(labels, probs)}, source, speaker, head,
                      ood_score)


@dataclass(frozen=True)
class Prediction:
    """The predicted ``label`` and the probability of every label."""

    label: str
    probabilities: dict[str, float]
    source: str | None = None
    #: the speaker key it was predicted under (``predict(..., speaker=KEY)``), if any
    speaker: str | None = None
    #: which head answered when speaker keys were given: ``"speaker"`` (normalised by that speaker's running
    #: statistics) or ``"file"`` (an unknown speaker, or too few of its recordings so far)
    head: str | None = None
    #: distance from the model's training speech as a multiple of its threshold (below 1 here: familiar);
    #: ``None`` when the model has no familiarity gate
    ood_score: float | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def is_uncertain(self, threshold: float = UNCERTAIN_BELOW) -> bool:
        """True when the top probability is below ``threshold``: a guess, not an answer."""
        return self.confidence < threshold

    def to_dict(self, threshold: float = UNCERTAIN_BELOW) -> dict[str, Any]:
        extra = {"speaker": self.speaker, "head": self.head} if self.head is not None else {}
        extra |= {"ood_score": round(self.ood_score, 4)} if self.ood_score is not None else {}
        return {"source": self.source} | scored(self.label, self.probabilities, threshold) | extra


@dataclass(frozen=True)
class Segment:
    """One classified window: ``start``/``end`` in seconds, its label and probabilities; ``head``: which head
    answered (``"file"`` or ``"speaker"``) where that was decided per segment (a live stream, a conversation);
    ``speaker``: whose voice it is (``"S1"``, ``"S2"`` ...) when the recording's speakers were told apart."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]
    head: str | None = None
    speaker: str | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self, threshold: float = UNCERTAIN_BELOW) -> dict[str, Any]:
        """Its window and :func:`scored` record (``uncertain`` below ``threshold``), its ``head`` and ``speaker``
        where known."""
        extra = {"head": self.head} if self.head is not None else {}
        extra |= {"speaker": self.speaker} if self.speaker is not None else {}
        return {"start": round(self.start, 3), "end": round(self.end, 3)} | scored(self.label, self.probabilities, threshold) | extra


@dataclass
class Timeline:
    """Emotion predictions over time for one recording.

    Attributes:
        source: file name (or ``"<array>"``).
        duration: length of the recording, seconds.
        labels: the model's labels, in its order.
        speech: speech regions ``(start, end)`` in seconds.
        segments: classified windows inside the speech regions, in time order.
        vad: the voice-activity method used (``"silero"`` or ``"energy"``).
        message: why the timeline is empty, when it is.
        adaptation: ``"speaker"`` when the segments were normalised with the recording's own statistics and
            classified by the speaker-normalised head, ``"none"`` when each was classified alone.
        adaptation_note: why adaptation was or was not used.
        speaker_notes: per speaker (``"S1"`` ...), which head classified its segments and why, when the
            recording's speakers were told apart (``speakers="auto"`` or a number).
        unknown: windows of voice activity left out because they are unlike all the speech the model knows
            (their ``ood_score`` is above 1: a tone, music, noise), ``(start, end)`` in seconds.
    """

    source: str
    duration: float
    labels: list[str]
    speech: list[tuple[float, float]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    vad: str = "energy"
    message: str | None = None
    adaptation: str = "none"
    adaptation_note: str | None = None
    speaker_notes: dict[str, str] = field(default_factory=dict)
    unknown: list[tuple[float, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    @property
    def speech_seconds(self) -> float:
        return float(sum(e - s for s, e in self.speech))

    def overall(self) -> dict[str, float] | None:
        """Length-weighted mean probabilities over all segments (``None`` if there are none)."""
        if not self.segments:
            return None
        w = np.array([max(s.end - s.start, 1e-6) for s in self.segments])
        p = np.array([[s.probabilities[lab] for lab in self.labels] for s in self.segments])
        mean = (w[:, None] * p).sum(0) / w.sum()
        return {lab: float(v) for lab, v in zip(self.labels, mean)}

    @property
    def label(self) -> str | None:
        """The most probable label over the whole recording, or ``None`` without speech."""
        probs = self.overall()
        return max(probs, key=probs.__getitem__) if probs else None

    @property
    def speakers(self) -> list[str]:
        """The speakers told apart, in order of first appearance (empty when they were not)."""
        return list(dict.fromkeys(s.speaker for s in self.segments if s.speaker is not None))

    def by_speaker(self, peaks: int = 3) -> list[dict[str, Any]]:
        """Per speaker: talk time (its windows, overlaps counted once), segments, the head used, the
        length-weighted share of each emotion, the most probable one, and its ``peaks`` most intense moments
        (the segments whose top non-neutral emotion is most probable)."""
        out = []
        for who in self.speakers:
            segs = [s for s in self.segments if s.speaker == who]
            spans = sorted((s.start, s.end) for s in segs)
            talk, end = 0.0, -np.inf
            for a, b in spans:
                talk += max(0.0, b - max(a, end))
                end = max(end, b)
            w = np.array([max(s.end - s.start, 1e-6) for s in segs])
            p = np.array([[s.probabilities[lab] for lab in self.labels] for s in segs])
            shares = {lab: float(v) for lab, v in zip(self.labels, (w[:, None] * p).sum(0) / w.sum())}
            moving = [lab for lab in self.labels if lab not in ("neutral", "calm")] or list(self.labels)
            top = sorted(segs, key=lambda s: -max(s.probabilities[lab] for lab in moving))[:peaks]
            out.append({"speaker": who, "talk_seconds": round(talk, 3), "segments": len(segs),
                        "head": self.speaker_notes.get(who), "label": max(shares, key=shares.__getitem__),
                        "shares": shares,
                        "peaks": [{"start": round(s.start, 3), "end": round(s.end, 3),
                                   "label": max(moving, key=lambda lab, s=s: s.probabilities[lab]),
                                   "probability": max(s.probabilities[lab] for lab in moving)} for s in top]})
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per segment: start, end, label, confidence, probabilities."""
        return [s.to_dict() for s in self.segments]

    def to_dict(self) -> dict[str, Any]:
        overall = self.overall()
        return {
            "source": self.source,
            "duration": round(self.duration, 3),
            "vad": self.vad,
            "adaptation": self.adaptation,
            "adaptation_note": self.adaptation_note,
            "labels": list(self.labels),
            "speech": [{"start": round(s, 3), "end": round(e, 3)} for s, e in self.speech],
            "segments": self.rows(),
            "overall": None if overall is None else {"label": self.label, "probabilities": overall},
            "message": self.message,
        } | ({"speakers": self.by_speaker()} if self.speakers else {}) \
          | ({"unknown": [{"start": round(s, 3), "end": round(e, 3)} for s, e in self.unknown]} if self.unknown else {})

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """The timeline as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_csv(self, path: str | Path | None = None, threshold: float = UNCERTAIN_BELOW) -> str:
        """One CSV row per segment in the columns of :func:`table_columns` (start, end, the speaker when speakers were
        told apart, label, confidence, uncertain, ``prob_<label>`` per label, the head where it was decided per
        segment); also written to ``path`` when given."""
        heads = any(s.head is not None for s in self.segments)
        columns = table_columns(self.labels, ("start", "end"), speaker=bool(self.speakers), head=heads)
        text = csv_text((flat(s.to_dict(threshold)) for s in self.segments), columns)
        if path is not None:
            Path(path).write_text(text)
        return text
