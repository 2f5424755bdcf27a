"""Live audio: the emotion of someone speaking now, from blocks of samples as they arrive.

>>> from emovox import EmotionRecognizer
>>> rec = EmotionRecognizer.load()                                   # doctest: +SKIP
>>> stream = rec.stream(sample_rate=48000)                           # doctest: +SKIP
>>> for block in microphone_blocks():                                # doctest: +SKIP
...     for event in stream.feed(block):
...         print(event.to_dict())
>>> stream.close()                                                   # doctest: +SKIP

A stream resamples what it is fed, tracks voice activity frame by frame (:class:`~emovox.audio.vad.VoiceTracker`),
cuts the speech into the timeline's windows (:func:`~emovox.inference.segments.windows`) and classifies each window
as soon as its audio is in: a window inside a long speech region before the region ends, the last window of a region
once enough silence follows it that nothing can join it. The windows and, without adaptation, the labels are those
:func:`~emovox.inference.segments.segment_file` gives for the same audio (with the ``silero`` detector exactly; the
``energy`` detector sets its threshold from what it has heard so far).

Speaker adaptation grows as it listens: each window's vector joins the session's running statistics, and once
``adapt_min_segments`` windows are in (``adapt="auto"``; from the second with ``"on"``) each new window is normalised
by them and classified by the speaker-normalised head. Every segment event says which head answered.

Events go out at once, so the first segments of a session are classified before its statistics are any good. The
session catches up: whenever the speaker head answers (``revise=True``, the default), every earlier segment is
classified again with the statistics as they are now, and each whose label changes is sent again as a ``revised``
event (the same window, its new label, probabilities and head); :meth:`EmotionStream.timeline` always holds the
revised segments, so that a session's timeline ends where the file timeline of the same audio is (its adaptation
normalises the whole recording at once).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.decode import check_sample_rate
from ..audio.vad import FRAME_S, VAD_RATE, VoiceTracker
from ..errors import AudioError, EmovoxError
from .results import UNCERTAIN_BELOW, Segment, Timeline, scored
from .scoring import Scorer
from .segments import SegmentOptions, windows
from .speakers import SpeakerBook


#: Sample formats of raw PCM bytes (:func:`pcm_samples`): 16-bit signed and 32-bit float, little-endian.
PCM_FORMATS = ("s16le", "f32le")
SESSION = "session"


def pcm_samples(data: bytes, fmt: str = "s16le", channels: int = 1, source: str = "<stream>") -> np.ndarray:
    """Mono float32 samples of raw interleaved PCM bytes; :class:`AudioError` when the bytes do not fit the format."""
    if fmt not in PCM_FORMATS:
        raise EmovoxError(f"PCM format must be one of {', '.join(PCM_FORMATS)}, not {fmt!r}")
    width = 2 if fmt == "s16le" else 4
    if len(data) % (width * channels):
        raise AudioError(source, f"{len(data)} bytes is not a whole number of {fmt} frames of {channels} channel(s) "
                                 f"({width * channels} bytes each)")
    y = np.frombuffer(data, dtype="<i2" if width == 2 else "<f4")
    y = y.astype(np.float32) / 32768.0 if width == 2 else y.astype(np.float32)
    if channels > 1:
        y = y.reshape(-1, channels).mean(axis=1)
    if width == 4 and y.size and not np.all(np.isfinite(y)):
        raise AudioError(source, "float samples contain NaN or infinity")
    return y


class _Resampler:
    """Blocks at one rate -> the same signal at another, without seams (soxr's streaming resampler, as
    :meth:`emovox.audio.stream.Source.blocks` uses for files)."""

    def __init__(self, rate: int, target: int):
        self.same = rate == target
        if not self.same:
            import soxr

            self.stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")

    def __call__(self, y: np.ndarray, last: bool = False) -> np.ndarray:
        return y if self.same else self.stream.resample_chunk(y, last=last)


@dataclass(frozen=True)
class StreamEvent:
    """What a stream noticed: ``speech_start`` / ``speech_end`` of a region (at ``time``, seconds into the
    stream), a classified ``segment`` (its window, label, probabilities and head), a ``revised`` segment (an earlier
    window whose label changed once the session's statistics grew), or an ``unknown`` window: voice activity unlike
    all the speech the model knows (``span`` and its ``ood_score``), given no emotion."""

    kind: str
    time: float
    segment: Segment | None = None
    span: tuple[float, float] | None = None
    ood_score: float | None = None

    @property
    def adapted(self) -> bool:
        return self.segment is not None and self.segment.head == "speaker"

    def to_dict(self, threshold: float = UNCERTAIN_BELOW) -> dict[str, Any]:
        """JSON-ready: ``type``, ``time``, and for a segment its window, :func:`~emovox.inference.results.scored`
        record (``uncertain`` below ``threshold``), ``head`` and ``adapted``."""
        out: dict[str, Any] = {"type": self.kind, "time": round(self.time, 3)}
        if self.segment is not None:
            s = self.segment
            out |= {"start": round(s.start, 3), "end": round(s.end, 3)} | scored(s.label, s.probabilities, threshold)
            out |= {"head": s.head, "adapted": self.adapted}
        if self.span is not None:
            out |= {"start": round(self.span[0], 3), "end": round(self.span[1], 3)}
        if self.ood_score is not None:
            out["ood_score"] = round(self.ood_score, 4)
        return out


class EmotionStream:
    """A live session: :meth:`feed` it blocks of samples (any size), read the events, :meth:`close` at the end.

    ``sample_rate``: the rate of what is fed; ``channels``: interleaved channels of 2-D ``(samples, channels)``
    blocks and of PCM bytes. The timeline options (``options`` and ``changes`` by name: ``vad``, ``max_segment_s``,
    ``hop_s``, ``adapt`` ...) are those of :func:`~emovox.inference.segments.segment_file`.
    """

    def __init__(self, recognizer: Scorer, sample_rate: int, options: SegmentOptions | None = None, *,
                 channels: int = 1, name: str = "<stream>", revise: bool = True, **changes: Any):
        o = SegmentOptions.of(options, **changes)
        if o.speakers != 1:
            raise EmovoxError("a live stream is one voice; telling speakers apart (speakers=) is for recorded timelines")
        self.recognizer, self.options, self.name = recognizer, o, name
        self.sample_rate = check_sample_rate(sample_rate, name)
        if channels < 1:
            raise EmovoxError(f"channels must be at least 1, not {channels}")
        self.channels = int(channels)
        self.tracker = VoiceTracker(o.vad, o.min_speech_s, o.min_silence_s, o.pad_s)
        self.rate = recognizer.sample_rate  # what the model's encoders read
        self._to_vad = _Resampler(self.sample_rate, VAD_RATE)
        self._to_model = _Resampler(self.sample_rate, self.rate)
        self._audio = np.zeros(0, np.float32)  # model-rate samples from _audio_start on
        self._audio_start = 0
        self._pending: list[tuple[float, float]] = []  # windows cut, waiting for their audio
        self._given: dict[float, int] = {}  # region start -> windows of it already queued
        self._ahead: dict[tuple[float, float], tuple[np.ndarray, Any]] = {}  # a region's likely last window, encoded early
        self._announced: set[float] = set()
        self.regions: list[tuple[float, float]] = []  # final speech regions
        self.segments: list[Segment] = []  # as revised so far
        self._segment_vectors: list[np.ndarray] = []  # what the heads read, per segment (a few KB each)
        self.revise = bool(revise)
        #: windows of voice activity given no segment: unlike all the speech the model knows (``ood_score`` above 1)
        self.unknown: list[tuple[float, float]] = []
        can_adapt = recognizer.can_adapt
        if o.adapt == "on" and not can_adapt:
            raise EmovoxError("adapt='on' needs a model with a speaker-normalised head (trained with --recipe speech or robust)")
        self.adapting = can_adapt and o.adapt != "off"
        self.book = SpeakerBook(min_files=2 if o.adapt == "on" else max(2, o.adapt_min_segments))
        self.adaptation_note = ("turned off" if o.adapt == "off" else "the model has no speaker-normalised head"
                                if not can_adapt else f"the speaker head answers from segment {self.book.min_files} on, "
                                f"normalised with this session's running statistics (one speaker assumed)")
        self.closed = False
        self._fed = 0

    @property
    def seconds(self) -> float:
        """Seconds of audio fed so far."""
        return self._fed / self.sample_rate

    @property
    def vad(self) -> str:
        return self.tracker.method

    def feed(self, block: np.ndarray | bytes, fmt: str = "s16le") -> list[StreamEvent]:
        """Take the next samples (an array: float in [-1, 1] or int16; or raw PCM bytes in ``fmt``); the events
        they complete."""
        if self.closed:
            raise EmovoxError(f"{self.name}: the stream is closed")
        y = self._samples(block, fmt)
        if not y.size:
            return []
        self._fed += y.size
        self._append(self._to_model(y))
        return self._advance(self.tracker.push(self._to_vad(y)))

    def close(self) -> list[StreamEvent]:
        """End of the stream: the events still due (the last region's windows and its end)."""
        if self.closed:
            return []
        self.closed = True
        empty = np.zeros(0, np.float32)
        self._append(self._to_model(empty, last=True))
        tail = self._to_vad(empty, last=True)
        done = self.tracker.push(tail) if tail.size else []
        done += self.tracker.close()
        events = self._advance(done)
        events += self._classify(self._pending)  # windows reaching past the last sample (rounding)
        return events

    def timeline(self) -> Timeline:
        """The session so far as a :class:`~emovox.inference.results.Timeline` (download it as CSV/JSON)."""
        tl = Timeline(self.name, self.seconds, self.recognizer.labels, list(self.regions) + list(self.tracker.open_regions),
                      list(self.segments), self.vad, unknown=list(self.unknown))
        tl.adaptation = "speaker" if any(s.head == "speaker" for s in self.segments) else "none"
        tl.adaptation_note = self.adaptation_note
        if not self.segments:
            tl.message = f"{self.name}: no speech classified yet"
        return tl

    # -- internals --------------------------------------------------------------
    def _samples(self, block: np.ndarray | bytes, fmt: str) -> np.ndarray:
        if isinstance(block, (bytes, bytearray, memoryview)):
            return pcm_samples(bytes(block), fmt, self.channels, self.name)
        y = np.asarray(block)
        if y.dtype == np.int16:
            y = y.astype(np.float32) / 32768.0
        y = y.astype(np.float32, copy=False)
        if y.ndim == 2:
            if y.shape[1] != self.channels:
                raise AudioError(self.name, f"a block of shape {y.shape}: expected (samples, {self.channels})")
            y = y.mean(axis=1)
        if y.ndim != 1:
            raise AudioError(self.name, f"a block of shape {y.shape}: expected 1-D samples or (samples, channels)")
        if y.size and (not np.all(np.isfinite(y)) or float(np.max(np.abs(y))) > 1.5):
            raise AudioError(self.name, "samples must be finite floats within +-1 (or int16)")
        return y

    def _append(self, y: np.ndarray) -> None:
        if y.size:
            self._audio = np.concatenate([self._audio, y]) if self._audio.size else y.astype(np.float32)

    def _advance(self, done: list[tuple[float, float]]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        opts = self.options
        for region in done:
            events += self._start(region)
            spans = windows([region], opts.max_segment_s, opts.hop_s)
            self._pending += spans[self._given.pop(region[0], 0):]
            events += self._classify(self._ready())
            self.regions.append(region)
            self._announced.discard(region[0])
            events.append(StreamEvent("speech_end", region[1]))
        for region in self.tracker.open_regions:
            events += self._start(region)
            sure = windows([region], opts.max_segment_s, opts.hop_s)[:-1]  # the last one waits for the region's end
            k = self._given.get(region[0], 0)
            if len(sure) > k:
                self._pending += sure[k:]
                self._given[region[0]] = len(sure)
        events += self._classify(self._ready())
        self._look_ahead()
        self._trim()
        return _ordered(events)

    def _start(self, region: tuple[float, float]) -> list[StreamEvent]:
        if region[0] in self._announced:
            return []
        self._announced.add(region[0])
        return [StreamEvent("speech_start", region[0])]

    def _ready(self) -> list[tuple[float, float]]:
        """The pending windows whose audio is all in, taken off the queue."""
        end = self._audio_start + self._audio.size
        k = 0
        while k < len(self._pending) and int(round(self._pending[k][1] * self.rate)) <= end:
            k += 1
        ready, self._pending = self._pending[:k], self._pending[k:]
        return ready

    def _vectors(self, spans: list[tuple[float, float]]) -> list[tuple[tuple[float, float], tuple[np.ndarray, Any]]]:
        """``(window, (vector, prepared input))`` of each window whose audio is usable (computed ahead of time or now)."""
        rec, out, todo, items = self.recognizer, [], [], []
        for s, e in spans:
            if (s, e) in self._ahead:
                out.append(((s, e), self._ahead.pop((s, e))))
                continue
            a, b = int(round(s * self.rate)) - self._audio_start, int(round(e * self.rate)) - self._audio_start
            y = self._audio[max(0, a) : max(0, b)]
            if not y.size:
                continue
            try:
                items.append(rec.featurize(y, self.rate, source=f"{self.name} [{s:.2f}-{e:.2f} s]", gate=False))
            except AudioError:
                continue  # a window that is silent after all: no prediction for it (as in the file timeline)
            todo.append((s, e))
        if items:
            out += list(zip(todo, zip(rec.vectors(items, self.options.batch_size).numpy(), items)))
        return sorted(out, key=lambda sv: sv[0])

    def _classify(self, spans: list[tuple[float, float]]) -> list[StreamEvent]:
        rec, events = self.recognizer, []
        for (s, e), (v, item) in self._vectors(spans):  # one by one: each window joins the statistics before the next
            scores = rec.score([item], [SESSION if self.adapting else None], book=self.book, vectors=v[None])
            if not scores.known[0]:  # unlike any speech the model knows: no segment, and it never joins the statistics
                self.unknown.append((s, e))
                events.append(StreamEvent("unknown", e, span=(s, e), ood_score=scores.ood_score(0)))
                continue
            seg = _segment(s, e, scores.probabilities[0], rec.labels, scores.heads[0])
            self.segments.append(seg)
            self._segment_vectors.append(np.asarray(v, np.float32))
            events.append(StreamEvent("segment", e, seg))
            if self.revise and seg.head == "speaker" and len(self.segments) > 1:
                events += self._revised(e)
        return events

    def _revised(self, now: float) -> list[StreamEvent]:
        """Every earlier segment classified again with the session's statistics as they are now; a ``revised``
        event for each whose label changed."""
        rec, events = self.recognizer, []
        probs = rec.speaker_probabilities(np.stack(self._segment_vectors[:-1]), SESSION, self.book)
        for k, p in enumerate(probs):
            old = self.segments[k]
            new = _segment(old.start, old.end, p, rec.labels, "speaker")
            self.segments[k] = new
            if new.label != old.label:
                events.append(StreamEvent("revised", now, new))
        return events

    def _look_ahead(self) -> None:
        """Once the speech of the last open region has stopped for its padding, its last window is all in: encode it
        now, so that when the region is final (``hold_s`` later) its event goes out at once."""
        if not self.tracker.open_regions:
            self._ahead.clear()
            return
        region = self.tracker.open_regions[-1]
        if region[1] >= self.tracker.frames * FRAME_S - 1e-6:
            return  # still speaking (or within the padding)
        last = windows([region], self.options.max_segment_s, self.options.hop_s)[-1]
        if last in self._ahead or int(round(last[1] * self.rate)) > self._audio_start + self._audio.size:
            return
        self._ahead = dict(self._vectors([last]))  # an older guess (the speech went on) is dropped

    def _trim(self) -> None:
        """Drop the audio no window can need any more."""
        keep = self.tracker.keep_from()
        if self._pending:
            keep = min(keep, self._pending[0][0])
        drop = min(max(0, int(round(keep * self.rate)) - self._audio_start - 1), self._audio.size)
        if drop > 0:
            self._audio, self._audio_start = self._audio[drop:].copy(), self._audio_start + drop


def _segment(start: float, end: float, p: np.ndarray, labels: list[str], head: str) -> Segment:
    probs = {lab: float(x) for lab, x in zip(labels, p)}
    return Segment(start, end, max(probs, key=probs.__getitem__), probs, head)


def _ordered(events: list[StreamEvent]) -> list[StreamEvent]:
    """Events by time; at one time a region's start before its segments (and the revisions they bring) before its end."""
    rank = {"speech_start": 0, "segment": 1, "unknown": 1, "revised": 1, "speech_end": 2}
    return sorted(events, key=lambda ev: (ev.time, rank[ev.kind]))
