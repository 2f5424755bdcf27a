"""Voice activity: where in a recording someone speaks, and whether an input holds speech at all.

Two detectors: ``energy`` (level within range of the loud frames, and low spectral
flatness, so noise, DC and clicks are not speech; cheap) and ``silero`` (the
neural detector of the ``silero-vad`` package, whose model ships inside its
wheel; also rejects tones and music). :func:`speech_regions` gives the speech
regions of a file or array; :func:`check_speech` is the gate in front of every
prediction.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from ..defaults import MIN_SPEECH_S, REGION_MIN_S, REGION_MIN_SILENCE_S, REGION_PAD_S, SPEECH_GATES, VAD_METHODS
from ..errors import EmovoxError, NoSpeechError
from .decode import SILENCE_PEAK
from .stream import MAX_WHOLE_MB, Source, source_of

#: Rate at which voice activity is analysed, Hz.
VAD_RATE = 16000
#: VAD frame, samples at :data:`VAD_RATE` (32 ms; the size silero-vad expects).
VAD_FRAME = 512
FRAME_S = VAD_FRAME / VAD_RATE
#: Frames quieter than this RMS level (dBFS) never count as speech.
ENERGY_FLOOR_DB = -60.0
#: Frames whose spectral flatness (100 Hz - 4 kHz) is above this are noise-like, not voiced sound.
MAX_FLATNESS = 0.45
# MIN_SPEECH_S: voice activity (seconds) an input needs before it gets an emotion; less is "no speech".
# SPEECH_GATES: ``energy`` (level + spectral flatness: rejects silence, noise, DC and clips of a few milliseconds;
# cheap), ``silero`` (neural: also rejects tones and music), ``off``. Both from emovox.defaults.

#: Hysteresis of the detectors (the file's and the live tracker's alike): silero's speech probability to start /
#: keep a region; the energy detector keeps a region down to this many dB under its start threshold.
SILERO_ON, SILERO_OFF = 0.5, 0.35
ENERGY_HOLD_DB = 3.0

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


def _load_silero():
    """A new silero-vad model (the model file bundled in the wheel)."""
    from silero_vad import load_silero_vad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_silero_vad()


def _silero_model():
    """This thread's silero-vad model (it keeps state between frames, so threads must not share it)."""
    model = getattr(_silero, "model", None)
    if model is None:
        model = _silero.model = _load_silero()
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


def _frame_scores(source: Source, method: str, block_s: float) -> tuple[np.ndarray, int, float]:
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


def _regions(active: np.ndarray, duration: float, min_speech_s: float, min_silence_s: float, pad_s: float,
             origin: int = 0) -> list[tuple[float, float]]:
    """Speech regions (seconds) from a per-frame activity mask whose first frame is frame ``origin`` of the
    recording; regions are clipped to ``[origin * FRAME_S, duration]``."""
    if not active.any():
        return []
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    runs = [[(s + origin) * FRAME_S, (e + origin) * FRAME_S]
            for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
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
        s, e = max(origin * FRAME_S, s - pad_s), min(duration, e + pad_s)
        if out and s <= out[-1][1]:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(round(float(s), 4), round(float(e), 4)) for s, e in out]


def detect(source: Source, vad: str, block_s: float, min_speech_s: float, min_silence_s: float,
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
        active = _hysteresis(scores, SILERO_ON, SILERO_OFF)
    else:
        level, flatness = scores[:, 0], scores[:, 1]
        thr = _energy_threshold(level)
        voiced = np.where(flatness <= MAX_FLATNESS, level, -np.inf)
        active = _hysteresis(voiced, thr, thr - ENERGY_HOLD_DB)
    return _regions(active, duration, min_speech_s, min_silence_s, pad_s), duration, method, peak


def speech_regions(
    audio: str | Path | np.ndarray, sample_rate: int | None = None, *, vad: str = "auto", min_speech_s: float = REGION_MIN_S,
    min_silence_s: float = REGION_MIN_SILENCE_S, pad_s: float = REGION_PAD_S, block_s: float = 30.0, max_whole_mb: float = MAX_WHOLE_MB,
    name: str | None = None,
) -> list[tuple[float, float]]:
    """Speech regions ``(start, end)`` in seconds of a file or an array (with ``sample_rate``; ``name`` in errors)."""
    source = source_of(audio, sample_rate, max_whole_mb, name)
    return detect(source, vad, block_s, min_speech_s, min_silence_s, pad_s)[0]


def check_speech(y: np.ndarray, sr: int, gate: str = "energy", min_speech_s: float = MIN_SPEECH_S,
                 source: str = "<array>") -> float:
    """Seconds of voice activity in ``y`` found by detector ``gate`` (:data:`SPEECH_GATES`);
    :class:`NoSpeechError` when below ``min_speech_s``."""
    if gate not in SPEECH_GATES:
        raise EmovoxError(f"speech_gate must be one of {', '.join(SPEECH_GATES)}, not {gate!r}")
    if gate == "off":
        return float(len(y)) / sr
    regions = speech_regions(y, sr, vad=gate, min_speech_s=0.05, min_silence_s=0.1, pad_s=0.0, name=source)
    speech = float(sum(e - s for s, e in regions))
    if speech < min_speech_s:
        found = f"{speech * 1000:.0f} ms of voice activity" if speech else "no voice activity"
        raise NoSpeechError(source, f"no speech found ({found}; {min_speech_s:g} s needed, {gate} "
                                    "detector): noise, a tone, silence or too short")
    return speech


#: The loud frames of :func:`speech_evidence`: within this many dB of the loudest
LOUD_RANGE_DB = 20.0
#: Silence put before and after a clip for :func:`speech_evidence` (a clip trimmed to its speech starts loud, and
#: the detector, fresh, is slow to trust the first frames)
EVIDENCE_PAD_S = 0.5


def speech_evidence(y: np.ndarray, sr: int, source: str = "<array>") -> tuple[float, float]:
    """What silero hears in a waveform: ``(seconds of speech, its mean speech probability over the loud frames)``.

    The first is the detector's own verdict (its hysteresis: probability above 0.5 to start). The second still sees
    speech the detector is unsure of frame by frame, such as shouting or speech through a room or a telephone line,
    while tones, chirps, chords, hum and noise stay near 0 (``bench/channels.py`` and the tests measure both). The
    clip gets :data:`EVIDENCE_PAD_S` of silence on each side first."""
    if not silero_available():
        raise EmovoxError("speech evidence needs the silero-vad package (pip install silero-vad)")
    pad = np.zeros(int(EVIDENCE_PAD_S * sr), np.float32)  # the detector needs a moment of context before speech
    padded = np.concatenate([pad, np.asarray(y, np.float32), pad])
    source_ = source_of(padded, sr, MAX_WHOLE_MB, source)
    scores, total, peak = _frame_scores(source_, "silero", 30.0)
    if not len(scores) or peak < SILENCE_PEAK:
        return 0.0, 0.0
    z = padded if sr == VAD_RATE else np.concatenate(list(source_.blocks(VAD_RATE, 30.0))).astype(np.float32)
    frames = np.pad(z, (0, max(0, len(scores) * VAD_FRAME - len(z))))[: len(scores) * VAD_FRAME].reshape(len(scores), VAD_FRAME)
    level = 10 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-12)
    loud = level > level.max() - LOUD_RANGE_DB
    regions = _regions(_hysteresis(scores, SILERO_ON, SILERO_OFF), total / VAD_RATE, 0.05, 0.1, 0.0)
    return float(sum(e - s for s, e in regions)), float(np.mean(scores[loud]))


class VoiceTracker:
    """Voice activity of a live stream, fed 16 kHz samples in blocks of any size.

    It finds the regions :func:`detect` finds in the whole recording: with ``silero`` exactly (the detector and its
    hysteresis run frame by frame either way), with ``energy`` with the speech threshold estimated from the audio
    heard so far (the whole recording's is not known yet). A region is final once ``hold_s`` seconds of silence
    follow it (then nothing later can join it); :meth:`push` returns the regions that became final, and
    :attr:`open_regions` the ones still growing, each ``(start, end so far)``.
    """

    def __init__(self, vad: str = "auto", min_speech_s: float = REGION_MIN_S, min_silence_s: float = REGION_MIN_SILENCE_S,
                 pad_s: float = REGION_PAD_S):
        self.method = resolve_vad(vad)
        self.min_speech_s, self.min_silence_s, self.pad_s = min_speech_s, min_silence_s, pad_s
        self._model = None
        if self.method == "silero":
            try:
                self._model = _load_silero()  # its own: the detector keeps state between frames
            except Exception as err:
                if vad == "silero":
                    raise EmovoxError(f"cannot load the silero-vad model ({err})") from None
                warnings.warn(f"silero-vad could not be loaded ({err}); using the energy detector", stacklevel=2)
                self.method = "energy"
        #: Silence after a region's last voiced frame that makes it final: no later speech can join it.
        self.hold_frames = int(np.ceil(max(min_silence_s, 2 * pad_s + FRAME_S) / FRAME_S - 1e-9))
        self._pad_frames = int(np.ceil(pad_s / FRAME_S - 1e-9))
        self._carry = np.zeros(0, np.float32)
        self.samples = 0  # samples pushed
        self.frames = 0  # frames scored
        self._origin = 0  # frame index of _mask[0]; regions before it are final and given out
        self._mask: list[bool] = []
        self._state = False
        self._levels: list[float] = []
        self.open_regions: list[tuple[float, float]] = []

    @property
    def hold_s(self) -> float:
        return self.hold_frames * FRAME_S

    @property
    def seconds(self) -> float:
        return self.samples / VAD_RATE

    def keep_from(self) -> float:
        """Audio before this time (seconds) belongs to no region that is not final yet."""
        return max(0.0, self._origin * FRAME_S - self.pad_s)

    def push(self, y: np.ndarray) -> list[tuple[float, float]]:
        """Score the new samples; the regions that became final, in order."""
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        self.samples += y.size
        buf = np.concatenate([self._carry, y]) if self._carry.size else y
        n = buf.size // VAD_FRAME
        self._carry = buf[n * VAD_FRAME :].copy()
        if not n:
            return []
        self._score(np.ascontiguousarray(buf[: n * VAD_FRAME]).reshape(n, VAD_FRAME))
        return self._settle(final=False)

    def close(self) -> list[tuple[float, float]]:
        """The stream ended: every region left, final."""
        if self._carry.size:
            self._score(np.pad(self._carry, (0, VAD_FRAME - self._carry.size))[None])
            self._carry = np.zeros(0, np.float32)
        return self._settle(final=True)

    def _score(self, frames: np.ndarray) -> None:
        if self._model is not None:
            import torch

            with torch.inference_mode():
                probs = [float(self._model(torch.from_numpy(f), VAD_RATE)) for f in frames]
            for p in probs:
                self._state = p >= (SILERO_OFF if self._state else SILERO_ON)
                self._mask.append(self._state)
        else:
            scores = _energy_scores(frames)
            self._levels.extend(scores[:, 0].tolist())
            del self._levels[: max(0, len(self._levels) - 9375)]  # the last 5 minutes set the threshold
            thr = _energy_threshold(np.asarray(self._levels))
            for level, flat in scores:
                v = level if flat <= MAX_FLATNESS else -np.inf
                self._state = v >= (thr - ENERGY_HOLD_DB if self._state else thr)
                self._mask.append(bool(self._state))
        self.frames += len(frames)

    def _settle(self, final: bool) -> list[tuple[float, float]]:
        mask = np.asarray(self._mask, dtype=bool)
        done: list[tuple[float, float]] = []
        if final:
            done = _regions(mask, self.samples / VAD_RATE, self.min_speech_s, self.min_silence_s, self.pad_s, self._origin)
            self._origin += mask.size
            self._mask, self.open_regions = [], []
            return done
        # The last run of at least hold_frames silent frames: every region before it is final.
        silent = np.concatenate([[False], ~mask, [False]])
        edges = np.diff(silent.astype(np.int8))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        long_gaps = [(s, e) for s, e in zip(starts, ends) if e - s >= self.hold_frames]
        if long_gaps:
            g0, g1 = long_gaps[-1]
            done = _regions(mask[:g0], np.inf, self.min_speech_s, self.min_silence_s, self.pad_s, self._origin)
            cut = max(g0, g1 - self._pad_frames)  # regions after the gap start (padded) at or after this frame
            self._origin += int(cut)
            self._mask = self._mask[int(cut) :]
            mask = mask[int(cut) :]
        self.open_regions = _regions(mask, self.frames * FRAME_S, self.min_speech_s, self.min_silence_s, self.pad_s,
                                     self._origin)
        return done
