"""Emotion over time for long recordings.

A recording is read in blocks (memory stays bounded for hour-long files),
voice activity detection finds the speech regions, long regions are cut into
overlapping windows of at most ``max_segment_s`` seconds, and every window is
classified. The result is a :class:`Timeline`.

>>> from emovox import EmotionRecognizer
>>> from emovox.segments import segment_file, plot_timeline
>>> rec = EmotionRecognizer.load("runs/tess/model")          # doctest: +SKIP
>>> tl = segment_file(rec, "interview.flac")                  # doctest: +SKIP
>>> tl.to_csv("interview.csv"); plot_timeline(tl, "interview.png")  # doctest: +SKIP

Voice activity comes from the ``silero-vad`` package when it is installed
(its model ships inside the wheel, nothing is downloaded) and otherwise from
an energy threshold.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from .audio import SILENCE_PEAK, check_sample_rate, decode, mono_signal
from .errors import AudioError, EmovoxError

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer

VAD_METHODS = ("auto", "silero", "energy")
#: Rate at which voice activity is analysed, Hz.
VAD_RATE = 16000
#: VAD frame, samples at :data:`VAD_RATE` (32 ms; the size silero-vad expects).
VAD_FRAME = 512
FRAME_S = VAD_FRAME / VAD_RATE
#: Frames quieter than this RMS level (dBFS) never count as speech.
ENERGY_FLOOR_DB = -60.0
#: Frames whose spectral flatness (100 Hz - 4 kHz) is above this are noise-like, not voiced sound.
MAX_FLATNESS = 0.45
#: Files libsndfile cannot stream are decoded whole only up to this size (MB).
MAX_WHOLE_MB = 64.0
#: Speaker adaptation (``adapt="auto"``) needs at least this many segments: with fewer, a recording's own
#: statistics are too noisy to normalise by. Measured on long recordings of held-out RAVDESS actors
#: (bench/timeline_adapt.py): adaptation loses on average below 10 segments and gains from 10 on (+3 points
#: at 10, +4 at 20, +12 at 60).
ADAPT_MIN_SEGMENTS = 10
ADAPT_MODES = ("auto", "on", "off")


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Segment:
    """One classified window: ``start``/``end`` in seconds, its label and probabilities."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "label": self.label,
                "confidence": self.confidence, "probabilities": dict(self.probabilities)}


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
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """The timeline as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_csv(self, path: str | Path | None = None) -> str:
        """One CSV row per segment (start, end, label, confidence, one column per label)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["start", "end", "label", "confidence", *self.labels])
        for s in self.segments:
            w.writerow([f"{s.start:.3f}", f"{s.end:.3f}", s.label, f"{s.confidence:.4f}",
                        *(f"{s.probabilities[lab]:.4f}" for lab in self.labels)])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text


# --------------------------------------------------------------------------- audio sources
class _Source:
    """Re-readable mono audio, delivered in blocks at any sample rate."""

    name: str
    sample_rate: int
    frames: int

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def blocks(self, rate: int, block_s: float) -> Iterator[np.ndarray]:
        """Mono float32 blocks resampled to ``rate`` (streaming, no seams)."""
        native = self.native_blocks(block_s)
        if rate == self.sample_rate:
            yield from native
            return
        import soxr

        stream = soxr.ResampleStream(self.sample_rate, rate, 1, dtype="float32", quality="HQ")
        for block in native:
            out = stream.resample_chunk(block)
            if out.size:
                yield out
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if tail.size:
            yield tail


class _ArraySource(_Source):
    def __init__(self, y: np.ndarray, sr: int, name: str):
        self.y, self.sample_rate, self.name = mono_signal(y, sr, name), int(sr), name
        self.frames = self.y.size

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        n = max(1, int(block_s * self.sample_rate))
        for i in range(0, self.y.size, n):
            yield self.y[i : i + n]


class _FileSource(_Source):
    def __init__(self, path: Path):
        self.path, self.name = path, str(path)
        with sf.SoundFile(str(path)) as f:
            self.sample_rate = check_sample_rate(f.samplerate, path)
            self.frames = int(f.frames)
            if f.frames == 0:
                raise AudioError(path, "contains no audio samples")

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        n = max(1, int(block_s * self.sample_rate))
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    data = f.read(n, dtype="float32", always_2d=True)
                    if not len(data):
                        break
                    yield data.mean(axis=1)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(self.path, f"cannot be decoded past the start ({err})") from None


def _open_file(path: str | Path, max_whole_mb: float) -> _Source:
    """A streaming source for ``path``; formats libsndfile cannot read are decoded whole if small."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        return _FileSource(path)
    except AudioError:
        raise
    except Exception as sf_err:
        if size > max_whole_mb * 1e6:
            raise AudioError(path, f"cannot be read in blocks ({sf_err}) and is too large ({size / 1e6:.0f} MB) to decode "
                                   f"whole; convert it to WAV or FLAC") from None
        y, sr = decode(path)
        return _ArraySource(y, sr, str(path))


# --------------------------------------------------------------------------- voice activity
_silero = threading.local()


def silero_available() -> bool:
    """Whether the ``silero-vad`` package can be imported."""
    try:
        import silero_vad  # noqa: F401
    except Exception:
        return False
    return True


def resolve_vad(vad: str) -> str:
    """``"auto"`` becomes ``"silero"`` when silero-vad is installed, else ``"energy"``."""
    if vad not in VAD_METHODS:
        raise EmovoxError(f"vad must be one of {', '.join(VAD_METHODS)}, not {vad!r}")
    if vad == "auto":
        return "silero" if silero_available() else "energy"
    if vad == "silero" and not silero_available():
        raise EmovoxError("vad='silero' needs the silero-vad package (pip install silero-vad); or use vad='energy'")
    return vad


def _silero_model():
    """This thread's silero-vad model (it keeps state between frames, so threads must not share it)."""
    model = getattr(_silero, "model", None)
    if model is None:
        from silero_vad import load_silero_vad

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_silero_vad()  # the model file bundled in the wheel
        _silero.model = model
    return model


def _energy_scores(frames: np.ndarray) -> np.ndarray:
    """``(n, 2)``: RMS level (dBFS) and spectral flatness (1: white noise or silence, near 0: tonal) of each frame.

    Each frame's mean is removed first: a DC offset (or a constant signal) is not sound."""
    x = frames.astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    level = 20 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-6)
    power = np.abs(np.fft.rfft(x * np.hanning(VAD_FRAME), axis=1)) ** 2
    lo, hi = int(100 * VAD_FRAME / VAD_RATE), int(4000 * VAD_FRAME / VAD_RATE)
    band = power[:, lo:hi] + 1e-10
    flatness = np.exp(np.mean(np.log(band), axis=1)) / np.mean(band, axis=1)
    return np.stack([level, flatness], axis=1).astype(np.float32)


def _frame_scores(source: _Source, method: str, block_s: float) -> tuple[np.ndarray, int, float]:
    """Per-frame scores, samples read at VAD_RATE, and peak.

    Scores are silero's speech probability ``(n,)``, or level and flatness ``(n, 2)`` for the energy method.
    """
    scores: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)
    total, peak = 0, 0.0
    model = None
    if method == "silero":
        import torch

        model = _silero_model()
        model.reset_states()

    def score(frames: np.ndarray) -> np.ndarray:
        if model is None:
            return _energy_scores(frames)
        with torch.inference_mode():
            return np.array([float(model(torch.from_numpy(f), VAD_RATE)) for f in frames], dtype=np.float32)

    for block in source.blocks(VAD_RATE, block_s):
        total += block.size
        peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
        buf = np.concatenate([carry, block]) if carry.size else block
        n = buf.size // VAD_FRAME
        if n:
            scores.append(score(np.ascontiguousarray(buf[: n * VAD_FRAME]).reshape(n, VAD_FRAME)))
        carry = buf[n * VAD_FRAME :].copy()
    if carry.size:
        scores.append(score(np.pad(carry, (0, VAD_FRAME - carry.size))[None]))
    empty = np.zeros((0,) if model is not None else (0, 2), np.float32)
    return (np.concatenate(scores) if scores else empty), total, peak


def _energy_threshold(levels: np.ndarray, range_db: float = 35.0) -> float:
    """Speech threshold in dBFS: within ``range_db`` of the loud frames, and clearly above the noise floor."""
    ref = float(np.percentile(levels, 99))
    noise = float(np.percentile(levels, 5))
    thr = max(ref - range_db, ENERGY_FLOOR_DB)
    if noise < ref - 25 and noise + 6 > thr:
        thr = noise + 6
    return thr


def _hysteresis(scores: np.ndarray, on: float, off: float) -> np.ndarray:
    active = np.zeros(scores.size, dtype=bool)
    state = False
    for i, s in enumerate(scores):
        state = s >= on if not state else s >= off
        active[i] = state
    return active


def _regions(active: np.ndarray, duration: float, min_speech_s: float, min_silence_s: float, pad_s: float) -> list[tuple[float, float]]:
    """Speech regions (seconds) from a per-frame activity mask."""
    if not active.any():
        return []
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    runs = [[s * FRAME_S, e * FRAME_S] for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
    merged = [runs[0]]
    for s, e in runs[1:]:
        if s - merged[-1][1] < min_silence_s:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    out: list[list[float]] = []
    for s, e in merged:
        if e - s < min_speech_s:
            continue
        s, e = max(0.0, s - pad_s), min(duration, e + pad_s)
        if out and s <= out[-1][1]:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(round(float(s), 4), round(float(e), 4)) for s, e in out]


def _detect(source: _Source, vad: str, block_s: float, min_speech_s: float, min_silence_s: float,
            pad_s: float) -> tuple[list[tuple[float, float]], float, str, float]:
    method = resolve_vad(vad)
    if method == "silero":
        try:
            _silero_model()
        except Exception as err:
            if vad == "silero":
                raise EmovoxError(f"cannot load the silero-vad model ({err})") from None
            warnings.warn(f"silero-vad could not be loaded ({err}); using the energy detector", stacklevel=3)
            method = "energy"
    scores, total, peak = _frame_scores(source, method, block_s)
    duration = total / VAD_RATE
    if not len(scores) or peak < SILENCE_PEAK:
        return [], duration, method, peak
    if method == "silero":
        active = _hysteresis(scores, 0.5, 0.35)
    else:
        level, flatness = scores[:, 0], scores[:, 1]
        thr = _energy_threshold(level)
        voiced = np.where(flatness <= MAX_FLATNESS, level, -np.inf)
        active = _hysteresis(voiced, thr, thr - 3.0)
    return _regions(active, duration, min_speech_s, min_silence_s, pad_s), duration, method, peak


def speech_regions(
    audio: str | Path | np.ndarray, sample_rate: int | None = None, *, vad: str = "auto", min_speech_s: float = 0.3,
    min_silence_s: float = 0.3, pad_s: float = 0.1, block_s: float = 30.0, max_whole_mb: float = MAX_WHOLE_MB,
    name: str | None = None,
) -> list[tuple[float, float]]:
    """Speech regions ``(start, end)`` in seconds of a file or an array (with ``sample_rate``; ``name`` in errors)."""
    source = _source(audio, sample_rate, max_whole_mb, name)
    return _detect(source, vad, block_s, min_speech_s, min_silence_s, pad_s)[0]


# --------------------------------------------------------------------------- windows and prediction
def windows(regions: Iterable[tuple[float, float]], max_segment_s: float = 4.0, hop_s: float = 2.0) -> list[tuple[float, float]]:
    """Cut regions longer than ``max_segment_s`` into windows of that length, evenly spread at most ``hop_s`` apart."""
    if max_segment_s <= 0:
        raise EmovoxError(f"max_segment_s must be positive, not {max_segment_s}")
    if not 0 < hop_s <= max_segment_s:
        raise EmovoxError(f"hop_s must be positive and at most max_segment_s ({max_segment_s}), not {hop_s}")
    out: list[tuple[float, float]] = []
    for a, b in regions:
        if b - a <= max_segment_s + 1e-9:
            out.append((a, b))
            continue
        n = int(np.ceil((b - a - max_segment_s) / hop_s - 1e-9)) + 1
        out.extend((float(s), float(s) + max_segment_s) for s in np.linspace(a, b - max_segment_s, n))
    return [(round(float(s), 4), round(float(e), 4)) for s, e in out]


def _cut(source: _Source, spans: Sequence[tuple[float, float]], rate: int, block_s: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, samples)`` of each span (sorted by start), keeping only a rolling buffer in memory."""
    bounds = [(int(round(s * rate)), int(round(e * rate))) for s, e in spans]
    buf, buf_start, nxt = np.zeros(0, np.float32), 0, 0
    for block in source.blocks(rate, block_s):
        buf = np.concatenate([buf, block]) if buf.size else block
        buf_end = buf_start + buf.size
        while nxt < len(bounds) and bounds[nxt][1] <= buf_end:
            s, e = bounds[nxt]
            yield nxt, buf[s - buf_start : e - buf_start]
            nxt += 1
        keep_from = bounds[nxt][0] if nxt < len(bounds) else buf_end
        drop = min(max(0, keep_from - buf_start), buf.size)
        buf, buf_start = buf[drop:].copy(), buf_start + drop
    while nxt < len(bounds):  # spans reaching past the last sample (rounding)
        s, e = bounds[nxt]
        piece = buf[max(0, s - buf_start) : max(0, e - buf_start)]
        if piece.size:
            yield nxt, piece
        nxt += 1


def _source(audio: str | Path | np.ndarray, sample_rate: int | None, max_whole_mb: float, name: str | None = None) -> _Source:
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise EmovoxError("an audio array needs its sample rate: segment_signal(rec, signal, 16000)")
        return _ArraySource(audio, sample_rate, name or "<array>")
    return _open_file(audio, max_whole_mb)


def _adapt_mode(adapt: str | bool) -> str:
    mode = str(adapt).strip().lower()
    mode = {"true": "on", "false": "off"}.get(mode, mode)
    if mode not in ADAPT_MODES:
        raise EmovoxError(f"adapt must be one of {', '.join(ADAPT_MODES)} (or true/false), not {adapt!r}")
    return mode


def _timeline(
    recognizer: EmotionRecognizer, source: _Source, *, max_segment_s: float, hop_s: float, vad: str, min_speech_s: float,
    min_silence_s: float, pad_s: float, block_s: float, batch_size: int, adapt: str | bool = "auto",
    adapt_min_segments: int = ADAPT_MIN_SEGMENTS,
) -> Timeline:
    if block_s <= 0:
        raise EmovoxError(f"block_s must be positive, not {block_s}")
    mode = _adapt_mode(adapt)
    can_adapt = recognizer.model.normalize == "speaker"
    if mode == "on" and not can_adapt:
        raise EmovoxError("adapt='on' needs a model with a speaker-normalised head (trained with --recipe speech or robust)")
    windows([], max_segment_s, hop_s)  # validate the window options before the long pass
    regions, duration, method, peak = _detect(source, vad, block_s, min_speech_s, min_silence_s, pad_s)
    tl = Timeline(source.name, duration, recognizer.labels, regions, [], method)
    if not regions:
        why = "it is silent" if peak < SILENCE_PEAK else f"the {method} voice-activity detector found no speech"
        tl.message = f"{source.name}: no speech found ({why}); the timeline is empty"
        return tl
    spans = windows(regions, max_segment_s, hop_s)
    cfg = recognizer.features
    labels = recognizer.labels
    keep_vectors = can_adapt and mode != "off"
    done: list[tuple[float, float]] = []
    probs: list[np.ndarray] = []
    vectors: list[Any] = []  # the heads' input per segment, kept (a few KB each) when adaptation may follow
    pending: list[tuple[tuple[float, float], Any]] = []

    def flush() -> None:
        if not pending:
            return
        items = [spec for _, spec in pending]
        if keep_vectors:
            v = recognizer.vectors(items, batch_size)
            vectors.append(v)
            probs.extend(recognizer.classify(v))
        else:
            probs.extend(recognizer.probabilities(items, batch_size))
        done.extend(span for span, _ in pending)
        pending.clear()

    for i, y in _cut(source, spans, cfg.sample_rate, block_s):
        s, e = spans[i]
        try:
            spec = recognizer.featurize(y, cfg.sample_rate, source=f"{source.name} [{s:.2f}-{e:.2f} s]", gate=False)
        except AudioError:
            continue  # a window that is silent after all: no prediction for it
        pending.append(((s, e), spec))
        if len(pending) >= batch_size:
            flush()
    flush()
    n = len(done)
    if mode == "off":
        tl.adaptation_note = "turned off"
    elif not can_adapt:
        tl.adaptation_note = "the model has no speaker-normalised head"
    elif n < adapt_min_segments and mode == "auto":
        tl.adaptation_note = f"{n} segment(s), fewer than the {adapt_min_segments} needed to learn the speaker's baseline"
    elif n >= 2:
        import torch

        probs = list(recognizer.classify(torch.cat(vectors), same_speaker=True))
        tl.adaptation = "speaker"
        tl.adaptation_note = f"normalised with this recording's own statistics over {n} segments (one speaker assumed)"
    else:
        tl.adaptation_note = f"{n} segment(s): too few to normalise"
    tl.segments = [Segment(s, e, labels[int(np.argmax(p))], {lab: float(v) for lab, v in zip(labels, p)})
                   for (s, e), p in zip(done, probs)]
    if not tl.segments:
        tl.message = f"{source.name}: the speech regions were too quiet to classify; the timeline is empty"
    return tl


def segment_file(
    recognizer: EmotionRecognizer, path: str | Path, *, max_segment_s: float = 4.0, hop_s: float = 2.0, vad: str = "auto",
    min_speech_s: float = 0.3, min_silence_s: float = 0.3, pad_s: float = 0.1, block_s: float = 30.0, batch_size: int = 16,
    max_whole_mb: float = MAX_WHOLE_MB, adapt: str | bool = "auto", adapt_min_segments: int = ADAPT_MIN_SEGMENTS,
    max_duration_s: float | None = None,
) -> Timeline:
    """Timeline of emotions in the audio file ``path``.

    The file is read twice in blocks of ``block_s`` seconds (voice activity,
    then the windows), so memory does not grow with its length. A recording
    without speech gives an empty timeline whose ``message`` says so.
    Raises :class:`AudioError` for a missing, empty or unreadable file, or
    one longer than ``max_duration_s`` seconds (no limit by default).
    """
    source = _open_file(path, max_whole_mb)
    seconds = source.frames / source.sample_rate
    if max_duration_s is not None and seconds > max_duration_s:
        raise AudioError(path, f"is {seconds / 60:.1f} min long; the limit here is {max_duration_s / 60:g} min")
    return _timeline(recognizer, source, max_segment_s=max_segment_s, hop_s=hop_s, vad=vad,
                     min_speech_s=min_speech_s, min_silence_s=min_silence_s, pad_s=pad_s, block_s=block_s, batch_size=batch_size,
                     adapt=adapt, adapt_min_segments=adapt_min_segments)


def segment_signal(
    recognizer: EmotionRecognizer, y: np.ndarray, sample_rate: int, *, max_segment_s: float = 4.0, hop_s: float = 2.0,
    vad: str = "auto", min_speech_s: float = 0.3, min_silence_s: float = 0.3, pad_s: float = 0.1, block_s: float = 30.0,
    batch_size: int = 16, source: str = "<array>", adapt: str | bool = "auto", adapt_min_segments: int = ADAPT_MIN_SEGMENTS,
) -> Timeline:
    """Timeline of emotions in an in-memory signal sampled at ``sample_rate`` (see :func:`segment_file`)."""
    return _timeline(recognizer, _ArraySource(y, sample_rate, source), max_segment_s=max_segment_s, hop_s=hop_s, vad=vad,
                     min_speech_s=min_speech_s, min_silence_s=min_silence_s, pad_s=pad_s, block_s=block_s, batch_size=batch_size,
                     adapt=adapt, adapt_min_segments=adapt_min_segments)


# --------------------------------------------------------------------------- plot
#: Colour of each canonical label in plots and on the web page (colour-blind-safe where possible).
LABEL_COLORS = {
    "angry": "#d62728", "calm": "#17becf", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#ffbf00",
    "neutral": "#7f7f7f", "sad": "#1f77b4", "surprise": "#2ca02c",
}

def label_color(label: str, index: int = 0) -> str:
    """Plot colour of ``label`` (a fixed one for the canonical labels, a matplotlib cycle colour otherwise)."""
    return LABEL_COLORS.get(label, f"C{index % 10}")


def _ownership(timeline: Timeline) -> list[tuple[float, float, Segment]]:
    """Non-overlapping ``(start, end, segment)`` spans: each instant of speech belongs to the segment whose
    centre is nearest (overlapping windows split at the midpoint between their centres)."""
    out: list[tuple[float, float, Segment]] = []
    segs = sorted(timeline.segments, key=lambda g: (g.start, g.end))
    for i, seg in enumerate(segs):
        start, end = seg.start, seg.end
        centre = (seg.start + seg.end) / 2
        if i > 0 and segs[i - 1].end > seg.start:
            start = max(start, (centre + (segs[i - 1].start + segs[i - 1].end) / 2) / 2)
        if i + 1 < len(segs) and segs[i + 1].start < seg.end:
            end = min(end, (centre + (segs[i + 1].start + segs[i + 1].end) / 2) / 2)
        if end > start:
            out.append((start, end, seg))
    return out


def timeline_grid(timeline: Timeline, columns: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, probs)``: ``columns + 1`` time edges over the recording and a ``(labels, columns)`` matrix of each
    label's probability in every column (the owning segment's, see :func:`_ownership`), NaN outside speech."""
    edges = np.linspace(0.0, max(timeline.duration, 1e-3), columns + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    grid = np.full((len(timeline.labels), columns), np.nan)
    for start, end, seg in _ownership(timeline):
        cols = (centres >= start) & (centres < end)
        grid[:, cols] = np.array([seg.probabilities[lab] for lab in timeline.labels])[:, None]
    return edges, grid


def plot_timeline(timeline: Timeline, path: str | Path, *, title: str | None = None,
                  uncertain_below: float | None = None, stacked: bool = False) -> Path:
    """Save a PNG of the timeline, readable at a glance on long recordings.

    Top: a band coloured by the most probable emotion of each segment
    (hatched where its probability is below ``uncertain_below``, default
    :data:`emovox.recognizer.UNCERTAIN_BELOW` as in ``emovox predict``; white
    where there is no speech). Below: a heatmap of every label's probability over
    time. ``stacked`` is accepted for compatibility and ignored.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .recognizer import UNCERTAIN_BELOW

    del stacked
    uncertain_below = UNCERTAIN_BELOW if uncertain_below is None else uncertain_below
    path = Path(path)
    labels = timeline.labels
    duration = max(timeline.duration, 1e-3)
    fig, (band, heat) = plt.subplots(2, 1, figsize=(11, 1.6 + 0.32 * len(labels) + 0.9), dpi=120, sharex=True,
                                     gridspec_kw={"height_ratios": [1.0, 0.32 * len(labels)], "hspace": 0.08})
    for s, e in timeline.speech:
        band.axvspan(s, e, ymin=0.0, ymax=0.12, color="0.85", lw=0)
    handles, seen = [], set()
    for start, end, seg in _ownership(timeline):
        i = labels.index(seg.label)
        unsure = seg.confidence < uncertain_below
        band.axvspan(start, end, ymin=0.15, ymax=1.0, facecolor=label_color(seg.label, i), alpha=0.45 if unsure else 0.95,
                     hatch="///" if unsure else None, edgecolor="white", lw=0.3)
        seen.add(seg.label)
    for i, lab in enumerate(labels):
        if lab in seen:
            handles.append(Patch(facecolor=label_color(lab, i), label=lab))
    if any(seg.confidence < uncertain_below for seg in timeline.segments):
        handles.append(Patch(facecolor="0.7", hatch="///", edgecolor="white", label=f"uncertain (< {uncertain_below:g})"))
    band.set_yticks([])
    band.set_ylim(0, 1)
    band.set_title(title or Path(timeline.source).name, loc="left", fontsize=10)
    note = "speaker-adapted" if timeline.adaptation == "speaker" else "per segment"
    band.set_title(f"{len(timeline.segments)} segments, {note}", loc="right", fontsize=8, color="0.35")
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False)
    if timeline.segments:
        edges, grid = timeline_grid(timeline, columns=int(min(4000, max(200, duration * 10))))
        cmap = matplotlib.colormaps["magma_r"].with_extremes(bad="white")
        mesh = heat.pcolormesh(edges, np.arange(len(labels) + 1), np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1,
                               shading="flat")
        cbar = fig.colorbar(mesh, cax=heat.inset_axes([1.01, 0.0, 0.012, 1.0]))
        cbar.set_label("probability", fontsize=8)
    else:
        band.text(0.5, 0.55, timeline.message or "no speech found", ha="center", va="center", transform=band.transAxes, wrap=True)
    heat.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=8)
    heat.set_ylim(len(labels), 0)
    heat.set_xlim(0, duration)
    heat.set_xlabel("time (s)")
    fig.subplots_adjust(left=0.08, right=0.92, top=0.9, bottom=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = [
    "ADAPT_MIN_SEGMENTS", "FRAME_S", "LABEL_COLORS", "Segment", "Timeline", "VAD_METHODS", "plot_timeline", "resolve_vad", "segment_file", "segment_signal",
    "silero_available", "speech_regions", "timeline_grid", "windows",
]
