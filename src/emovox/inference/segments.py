"""Emotion over time for long recordings.

A recording is read in blocks (memory stays bounded for hour-long files),
voice activity detection finds the speech regions (:mod:`emovox.audio.vad`),
long regions are cut into overlapping windows of at most ``max_segment_s``
seconds, and every window is classified. The result is a
:class:`~emovox.inference.results.Timeline`; :class:`SegmentOptions` holds
every setting, passed whole.

>>> from emovox import EmotionRecognizer
>>> from emovox.inference import segment_file, plot_timeline
>>> rec = EmotionRecognizer.load("runs/tess/model")          # doctest: +SKIP
>>> tl = segment_file(rec, "interview.flac")                  # doctest: +SKIP
>>> tl.to_csv("interview.csv"); plot_timeline(tl, "interview.png")  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.decode import SILENCE_PEAK
from ..audio.stream import MAX_WHOLE_MB, ArraySource, Source, cut_spans, open_source
from ..audio.vad import VAD_METHODS, VAD_RATE, detect
from ..defaults import HOP_S, REGION_MIN_S, REGION_MIN_SILENCE_S, REGION_PAD_S, WINDOW_S
from ..errors import AudioError, EmovoxError
from .results import Segment, Timeline
from .scoring import Scorer
from .turns import pieces, speaker_turns
from .voices import VOICE_THRESHOLD, VoiceEmbedder, cluster_voices, parse_speakers, speaker_name


#: Speaker adaptation (``adapt="auto"``) needs at least this many segments: with fewer, a recording's own
#: statistics are too noisy to normalise by. Measured on long recordings of held-out RAVDESS actors
#: (bench/timeline_adapt.py): adaptation loses on average below 10 segments and gains from 10 on (+3 points
#: at 10, +4 at 20, +12 at 60).
ADAPT_MIN_SEGMENTS = 10
ADAPT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class SegmentOptions:
    """How a recording becomes a timeline (every face passes one of these whole).

    Attributes:
        max_segment_s, hop_s: windows of at most ``max_segment_s`` seconds cut from longer speech regions,
            at most ``hop_s`` apart.
        vad: voice-activity detector, ``auto``, ``silero`` or ``energy``.
        min_speech_s, min_silence_s, pad_s: shortest speech region kept, shortest pause that splits two,
            padding added around each (seconds).
        block_s: seconds read at a time.
        batch_size: windows classified together.
        max_whole_mb: files libsndfile cannot stream are decoded whole up to this size.
        adapt: speaker adaptation, ``auto`` (from :data:`ADAPT_MIN_SEGMENTS` segments on), ``on`` or ``off``
            (``True``/``False`` accepted).
        adapt_min_segments: segments ``adapt="auto"`` needs.
        max_duration_s: longer files are refused (``None``: no limit).
        speakers: ``1`` (one voice: today's recording-wide adaptation), a number of speakers, or ``"auto"``
            (estimated): windows are told apart by voice (:mod:`emovox.inference.voices`), each gets its
            ``speaker`` (``S1``, ``S2`` ...) and each speaker is adapted to on its own.
        voice_threshold: cosine distance at which ``speakers="auto"`` stops merging voices.
    """

    max_segment_s: float = WINDOW_S
    hop_s: float = HOP_S
    vad: str = "auto"
    min_speech_s: float = REGION_MIN_S
    min_silence_s: float = REGION_MIN_SILENCE_S
    pad_s: float = REGION_PAD_S
    block_s: float = 30.0
    batch_size: int = 16
    max_whole_mb: float = MAX_WHOLE_MB
    adapt: str = "auto"
    adapt_min_segments: int = ADAPT_MIN_SEGMENTS
    max_duration_s: float | None = None
    speakers: str | int = 1
    voice_threshold: float = VOICE_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapt", _adapt_mode(self.adapt))
        object.__setattr__(self, "speakers", parse_speakers(self.speakers))
        if not 0 < self.voice_threshold < 2:
            raise EmovoxError(f"voice_threshold must be a cosine distance between 0 and 2, not {self.voice_threshold}")
        if self.vad not in VAD_METHODS:
            raise EmovoxError(f"vad must be one of {', '.join(VAD_METHODS)}, not {self.vad!r}")
        if self.block_s <= 0:
            raise EmovoxError(f"block_s must be positive, not {self.block_s}")
        if self.batch_size < 1:
            raise EmovoxError(f"batch_size must be at least 1, not {self.batch_size}")
        windows([], self.max_segment_s, self.hop_s)  # validates the window options before any long pass

    @classmethod
    def of(cls, options: SegmentOptions | None = None, **changes: Any) -> SegmentOptions:
        """``options`` (default: the defaults) with ``changes``; an unknown name is an error that names it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise EmovoxError(f"unknown timeline option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(options or cls(), **changes)


def windows(regions: Iterable[tuple[float, float]], max_segment_s: float = WINDOW_S, hop_s: float = HOP_S) -> list[tuple[float, float]]:
    """Cut regions longer than ``max_segment_s`` into windows of that length.

    A region's windows start at its start and every ``hop_s`` seconds after, as long as they end inside it; a last
    window ends where the region ends. Each window but the last depends only on the region's start, so a live
    stream can classify it as soon as its audio is in (:mod:`emovox.inference.live`), before the region ends.
    """
    if max_segment_s <= 0:
        raise EmovoxError(f"max_segment_s must be positive, not {max_segment_s}")
    if not 0 < hop_s <= max_segment_s:
        raise EmovoxError(f"hop_s must be positive and at most max_segment_s ({max_segment_s}), not {hop_s}")
    out: list[tuple[float, float]] = []
    for a, b in regions:
        if b - a <= max_segment_s + 1e-9:
            out.append((a, b))
            continue
        k = 0
        while a + k * hop_s + max_segment_s < b - 1e-6:
            out.append((a + k * hop_s, a + k * hop_s + max_segment_s))
            k += 1
        out.append((b - max_segment_s, b))
    return [(round(float(s), 4), round(float(e), 4)) for s, e in out]


def _adapt_mode(adapt: str | bool) -> str:
    mode = str(adapt).strip().lower()
    mode = {"true": "on", "false": "off"}.get(mode, mode)
    if mode not in ADAPT_MODES:
        raise EmovoxError(f"adapt must be one of {', '.join(ADAPT_MODES)} (or true/false), not {adapt!r}")
    return mode


def timeline_of(recognizer: Scorer, source: Source, options: SegmentOptions) -> Timeline:
    """Timeline of an open :class:`~emovox.audio.stream.Source` (see :func:`segment_file`)."""
    o = options
    mode = o.adapt
    can_adapt = recognizer.can_adapt
    if mode == "on" and not can_adapt:
        raise EmovoxError("adapt='on' needs a model with a speaker-normalised head (trained with --recipe speech or robust)")
    regions, duration, method, peak = detect(source, o.vad, o.block_s, o.min_speech_s, o.min_silence_s, o.pad_s)
    tl = Timeline(source.name, duration, recognizer.labels, regions, [], method)
    if not regions:
        why = "it is silent" if peak < SILENCE_PEAK else f"the {method} voice-activity detector found no speech"
        tl.message = f"{source.name}: no speech found ({why}); the timeline is empty"
        return tl
    voices = VoiceEmbedder.shared() if o.speakers != 1 else None
    if voices is not None:  # who speaks when first: the windows are cut from each voice's turns, never across two
        turns = voice_turns(source, regions, voices, o)
        spans, voice_of = [], []  # in time order: turns follow each other, a turn's windows start inside it
        for a, b, k in turns:
            for w in windows([(a, b)], o.max_segment_s, o.hop_s):
                spans.append(w)
                voice_of.append(k)
    else:
        spans, voice_of = windows(regions, o.max_segment_s, o.hop_s), []
    rate = recognizer.sample_rate
    labels = recognizer.labels
    keep_vectors = can_adapt and mode != "off"
    done: list[tuple[float, float]] = []
    done_voice: list[int] = []
    probs: list[np.ndarray] = []
    vectors: list[Any] = []  # the heads' input per segment, kept (a few KB each) when adaptation may follow
    pending: list[tuple[tuple[float, float], Any, int]] = []

    def flush() -> None:
        if not pending:
            return
        scores = recognizer.score([spec for _, spec, _ in pending], keep_vectors=keep_vectors, batch_size=o.batch_size)
        keep = scores.known  # unlike any speech the model knows: no emotion for it
        tl.unknown.extend(span for (span, _, _), k in zip(pending, keep) if not k)
        pending[:] = [p for p, k in zip(pending, keep) if k]
        if not pending:
            return
        if keep_vectors:
            vectors.append(torch.from_numpy(scores.vectors[keep]))
        probs.extend(scores.probabilities[keep])
        done.extend(span for span, _, _ in pending)
        done_voice.extend(v for _, _, v in pending)
        pending.clear()

    for i, y in cut_spans(source, spans, rate, o.block_s):
        s, e = spans[i]
        try:
            spec = recognizer.featurize(y, rate, source=f"{source.name} [{s:.2f}-{e:.2f} s]", gate=False)
        except AudioError:
            continue  # a window that is silent after all: no prediction for it
        pending.append(((s, e), spec, voice_of[i] if voices is not None else 0))
        if len(pending) >= o.batch_size:
            flush()
    flush()
    n = len(done)
    if voices is not None:
        who = _first_appearance(np.asarray(done_voice, dtype=int))
        heads = _adapt_each(recognizer, tl, o, who, probs, vectors, can_adapt)
        tl.segments = [Segment(s, e, *_labelled(p, labels), heads[k], speaker_name(int(who[k])))
                       for k, ((s, e), p) in enumerate(zip(done, probs))]
        if not tl.segments:
            tl.message = _empty_message(source.name, tl)
        return tl
    if mode == "off":
        tl.adaptation_note = "turned off"
    elif not can_adapt:
        tl.adaptation_note = "the model has no speaker-normalised head"
    elif n < o.adapt_min_segments and mode == "auto":
        tl.adaptation_note = f"{n} segment(s), fewer than the {o.adapt_min_segments} needed to learn the speaker's baseline"
    elif n >= 2:

        probs = list(recognizer.classify(torch.cat(vectors), same_speaker=True))
        tl.adaptation = "speaker"
        tl.adaptation_note = f"normalised with this recording's own statistics over {n} segments (one speaker assumed)"
    else:
        tl.adaptation_note = f"{n} segment(s): too few to normalise"
    tl.segments = [Segment(s, e, *_labelled(p, labels)) for (s, e), p in zip(done, probs)]
    if not tl.segments:
        tl.message = _empty_message(source.name, tl)
    return tl


def voice_turns(source: Source, regions: list[tuple[float, float]], embedder: VoiceEmbedder,
                o: SegmentOptions) -> list[tuple[float, float, int]]:
    """Speaker turns of the speech ``regions`` of ``source`` (:mod:`.turns`): short pieces embedded, clustered into
    ``o.speakers`` voices (or as many as found), a voice per 50 ms."""
    spans = pieces(regions)
    emb: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for _, y in cut_spans(source, spans, VAD_RATE, o.block_s):
        batch.append(y)
        if len(batch) >= 64:
            emb.append(embedder.embed_many(batch))
            batch = []
    if batch:
        emb.append(embedder.embed_many(batch))
    labels = cluster_voices(np.concatenate(emb) if emb else np.zeros((0, 256)), o.speakers, o.voice_threshold)
    return speaker_turns(regions, spans, labels)


def _first_appearance(who: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for w in who.tolist():
        order.setdefault(w, len(order))
    return np.array([order[w] for w in who.tolist()], dtype=int)


def _empty_message(name: str, tl: Timeline) -> str:
    if tl.unknown:
        return (f"{name}: the voice activity found is unlike all the speech the model knows (a tone, music, noise?); "
                "the timeline is empty")
    return f"{name}: the speech regions were too quiet to classify; the timeline is empty"


def _adapt_each(recognizer: Scorer, tl: Timeline, o: SegmentOptions, who: np.ndarray, probs: list[np.ndarray],
                vectors: list[Any], can_adapt: bool) -> list[str]:
    """Adapt to each speaker on its own (its segments normalised by its own statistics, the speaker head), where
    it has enough segments; fills ``probs`` in place, the notes in ``tl``; the head of every segment."""
    heads = ["file"] * len(who)
    need = 2 if o.adapt == "on" else o.adapt_min_segments
    stacked = None
    if can_adapt and o.adapt != "off" and vectors:

        stacked = torch.cat(vectors)
    for k in sorted(set(who.tolist())):
        rows = np.flatnonzero(who == k)
        name = speaker_name(k)
        if o.adapt == "off":
            tl.speaker_notes[name] = "file head (adaptation turned off)"
        elif not can_adapt:
            tl.speaker_notes[name] = "file head (the model has no speaker-normalised head)"
        elif len(rows) < need:
            tl.speaker_notes[name] = f"file head: {len(rows)} segment(s), fewer than the {need} needed to learn this voice"
        else:
            for r, p in zip(rows, recognizer.classify(stacked[rows], same_speaker=True)):
                probs[r] = p
                heads[r] = "speaker"
            tl.speaker_notes[name] = f"speaker head: normalised with this speaker's own statistics over {len(rows)} segments"
    count = len(set(who.tolist()))
    tl.adaptation = "speaker" if "speaker" in heads else "none"
    tl.adaptation_note = (f"{count} speaker(s) told apart by voice; each adapted to on its own where it has {need} "
                          f"segments or more" if o.adapt != "off" else f"{count} speaker(s) told apart by voice; adaptation turned off")
    return heads


def _labelled(p: np.ndarray, labels: list[str]) -> tuple[str, dict[str, float]]:
    return labels[int(np.argmax(p))], {lab: float(v) for lab, v in zip(labels, p)}


def segment_file(recognizer: Scorer, path: str | Path, options: SegmentOptions | None = None,
                 **changes: Any) -> Timeline:
    """Timeline of emotions in the audio file ``path`` (``options``, with ``changes`` by name on top).

    The file is read twice in blocks of ``block_s`` seconds (voice activity,
    then the windows), so memory does not grow with its length. A recording
    without speech gives an empty timeline whose ``message`` says so.
    Raises :class:`AudioError` for a missing, empty or unreadable file, or
    one longer than ``max_duration_s`` seconds (no limit by default).
    """
    o = SegmentOptions.of(options, **changes)
    source = open_source(path, o.max_whole_mb)
    seconds = source.frames / source.sample_rate
    if o.max_duration_s is not None and seconds > o.max_duration_s:
        raise AudioError(path, f"is {seconds / 60:.1f} min long; the limit here is {o.max_duration_s / 60:g} min")
    return timeline_of(recognizer, source, o)


def segment_signal(recognizer: Scorer, y: np.ndarray, sample_rate: int, options: SegmentOptions | None = None,
                   *, source: str = "<array>", **changes: Any) -> Timeline:
    """Timeline of emotions in an in-memory signal sampled at ``sample_rate`` (see :func:`segment_file`)."""
    return timeline_of(recognizer, ArraySource(y, sample_rate, source), SegmentOptions.of(options, **changes))
