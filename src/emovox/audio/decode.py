"""Decode audio files into mono float32 at a fixed sample rate.

Every failure raises :class:`~emovox.errors.AudioError` naming the file and
the problem, so callers can report and skip bad inputs.
"""
from __future__ import annotations

import os

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from ..errors import AudioError

#: Peak amplitude under which a signal counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
#: Sample rates outside this range (Hz) are refused before anything is decoded or resampled.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
#: Longest audio decoded whole for one prediction, seconds. Longer recordings go through the timeline
#: (``emovox predict --segments``, ``EmotionRecognizer.timeline``), which reads them in blocks.
MAX_DECODE_SECONDS = 300.0
#: Samples beyond this magnitude are not audio (float audio is nominally within +-1; integer-scaled
#: values up to 24 bits pass). Larger ones overflow the power spectrum.
MAX_ABS_SAMPLE = 1e8
#: Frames decoded at a time (memory stays near one block plus the mono result).
_BLOCK_FRAMES = 1 << 20


def check_sample_rate(sr: float, source: str | Path) -> int:
    """``sr`` as an int, or :class:`AudioError` when it is not a plausible audio rate."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(source, f"sample rate {sr:g} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; "
                                 "the header is damaged or this is not audio")
    return int(sr)


def _too_long(source: str | Path, seconds: float, max_seconds: float) -> AudioError:
    return AudioError(source, f"is {seconds / 60:.1f} min long; one prediction decodes at most {max_seconds / 60:g} min. "
                              "Use the timeline for long recordings (emovox predict --segments, emovox timeline)")


def load_audio(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    trim: bool = False,
    top_db: float = 30.0,
    duration: float | None = None,
    max_seconds: float = MAX_DECODE_SECONDS,
) -> np.ndarray:
    """Decode ``path`` into mono float32 at ``sample_rate``.

    Reads anything libsndfile reads (wav, flac, ogg, mp3 …) and falls back to
    librosa's audioread backend for other formats. ``trim`` removes leading
    and trailing parts quieter than ``top_db`` below the peak; ``duration``
    (seconds) pads with zeros or crops to exactly that length.

    Raises :class:`AudioError` if the file is missing, empty, corrupt, not
    audio, silent, longer than ``max_seconds``, or has an absurd sample rate
    or sample values.
    """
    from ..storage import is_url, local, open_input

    path = local(path)
    if is_url(str(path)):  # an fsspec URL (s3://, gs://, memory:// ...): decoded from the open file
        try:
            f = open_input(str(path))
        except FileNotFoundError:
            raise AudioError(path, "file not found") from None
        except OSError as err:
            raise AudioError(path, f"cannot be opened ({err})") from None
        with f:
            if getattr(f, "size", None) == 0:
                raise AudioError(path, "file is empty (0 bytes)")
            y, sr = decode(f, max_seconds, name=str(path))
        return prepare_signal(y, sr, sample_rate, trim=trim, top_db=top_db, duration=duration, source=path)
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    y, sr = decode(path, max_seconds)
    return prepare_signal(y, sr, sample_rate, trim=trim, top_db=top_db, duration=duration, source=path)


def os_path(path: str | Path) -> bytes:
    """A file name as the filesystem holds it (bytes): names that are not valid UTF-8 (Python keeps their bytes as
    surrogate escapes) open in libsndfile too."""
    return os.fsencode(path)


def decode(path: str | Path | BinaryIO, max_seconds: float = MAX_DECODE_SECONDS, name: str | None = None) -> tuple[np.ndarray, int]:
    """The file as ``(mono float32 signal, sample rate)``: libsndfile, else librosa's audioread backend.

    The rate is checked before decoding, the file is read in blocks and
    mixed to mono as it goes, and decoding stops past ``max_seconds``
    (:class:`AudioError`), whatever the header claims. ``path`` may be an open binary file (``name``
    then names it in errors).
    """
    is_file = hasattr(path, "read")
    source = name or (str(getattr(path, "name", "<file>")) if is_file else str(path))
    try:
        f = sf.SoundFile(path if is_file else os_path(path))
    except Exception as sf_err:  # libsndfile cannot read it: try audioread/ffmpeg
        if is_file:  # the ffmpeg fallback reads named files only
            raise AudioError(source, f"not a readable audio file ({sf_err})") from None
        return _decode_other(path, max_seconds, sf_err)
    with f:
        sr = check_sample_rate(f.samplerate, source)
        limit = int(max_seconds * sr)
        if f.frames > limit and f.seekable():
            raise _too_long(source, f.frames / sr, max_seconds)
        parts: list[np.ndarray] = []
        n = 0
        try:
            while n <= limit:
                block = f.read(min(_BLOCK_FRAMES, limit + 1 - n), dtype="float32", always_2d=True)
                if not len(block):
                    break
                parts.append(block.mean(axis=1, dtype=np.float64).astype(np.float32) if block.shape[1] > 1 else block[:, 0].copy())
                n += len(block)
        except (sf.LibsndfileError, RuntimeError) as err:
            if not n:
                raise AudioError(source, f"not a readable audio file ({err})") from None
            raise AudioError(source, f"cannot be decoded past {n / sr:.1f} s ({err})") from None
    if n > limit:
        raise _too_long(source, n / sr, max_seconds)
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), sr


def _decode_other(path: str | Path, max_seconds: float, sf_err: Exception) -> tuple[np.ndarray, int]:
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=True, duration=max_seconds + 1.0)
    except Exception:
        raise AudioError(path, f"not a readable audio file ({sf_err})") from None
    sr = check_sample_rate(sr, path)
    if y.size > max_seconds * sr:
        raise _too_long(path, y.size / sr, max_seconds)
    return y, sr


def prepare_signal(
    y: np.ndarray,
    sr: int,
    sample_rate: int = 16000,
    *,
    trim: bool = False,
    top_db: float = 30.0,
    duration: float | None = None,
    source: str | Path = "<array>",
) -> np.ndarray:
    """Mono-mix, resample, check, trim and pad/crop an in-memory signal.

    ``y`` is ``(samples,)`` or ``(channels, samples)``; the same checks as
    :func:`load_audio` apply (``source`` names it in error messages).
    """
    y = mono_signal(y, sr, source)
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise AudioError(source, "is silent (peak below -80 dBFS)")
    if sr != sample_rate:
        y = resample(y, sr, sample_rate)
    if trim:
        trimmed = trim_silence(y, top_db)
        if trimmed.size:
            y = trimmed
    if duration is not None:
        y = fix_length(y, int(round(duration * sample_rate)))
    return y


def resample(y: np.ndarray, sr: int, target: int) -> np.ndarray:
    """``y`` resampled from ``sr`` to ``target`` Hz with soxr (high quality), ``ceil(len * target / sr)`` samples long:
    what ``librosa.resample(res_type="soxr_hq")`` returns, without importing librosa (seconds per process)."""
    import soxr

    out = soxr.resample(y, sr, target, quality="soxr_hq")
    n = int(np.ceil(y.size * target / sr))
    if out.size < n:
        out = np.pad(out, (0, n - out.size))
    return np.asarray(out[:n], dtype=np.float32)


def trim_silence(y: np.ndarray, top_db: float = 60.0, frame_length: int = 2048, hop_length: int = 512) -> np.ndarray:
    """``y`` without its leading and trailing parts quieter than ``top_db`` below its loudest frame.

    The same frames, levels and bounds as ``librosa.effects.trim`` (centred RMS frames, zero padding), in numpy.
    """
    pad = frame_length // 2
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(y, pad), frame_length)[::hop_length]
    power = np.mean(np.abs(frames) ** 2, axis=1)
    rms = np.sqrt(power)
    mse = np.maximum(rms.astype(np.float64) ** 2, 1e-10)
    db = 10.0 * np.log10(mse) - 10.0 * np.log10(max(1e-10, float(rms.max()) ** 2))
    loud = np.flatnonzero(db > -top_db)
    if not loud.size:
        return y[:0]
    return y[int(loud[0]) * hop_length : min(y.size, (int(loud[-1]) + 1) * hop_length)]


def mono_signal(y: np.ndarray, sr: int, source: str | Path = "<array>") -> np.ndarray:
    """Check an in-memory signal and mix it down to mono float32.

    Accepts ``(samples,)``, ``(channels, samples)`` or ``(samples, channels)``;
    raises :class:`AudioError` for a bad shape or rate, no samples, or NaN/inf.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1)
    if y.ndim != 1:
        raise AudioError(source, f"expected a 1-D or 2-D signal, got shape {y.shape}")
    check_sample_rate(sr, source)
    if y.size == 0:
        raise AudioError(source, "contains no audio samples")
    if not np.all(np.isfinite(y)):
        raise AudioError(source, "contains NaN or infinite samples")
    peak = float(np.max(np.abs(y)))
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(source, f"sample values reach {peak:.3g}: not audio (float samples are expected within +-1)")
    return y


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop ``y`` to ``n`` samples around its centre, or zero-pad its end."""
    if y.size > n:
        start = (y.size - n) // 2
        return y[start : start + n]
    if y.size < n:
        return np.pad(y, (0, n - y.size))
    return y
