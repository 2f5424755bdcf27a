"""Decode audio files into mono float32 at a fixed sample rate.

Every failure raises :class:`~emovox.errors.AudioError` naming the file and
the problem, so callers can report and skip bad inputs.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

#: Peak amplitude under which a signal counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4


def load_audio(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    trim: bool = False,
    top_db: float = 30.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` into mono float32 at ``sample_rate``.

    Reads anything libsndfile reads (wav, flac, ogg, mp3 …) and falls back to
    librosa's audioread backend for other formats. ``trim`` removes leading
    and trailing parts quieter than ``top_db`` below the peak; ``duration``
    (seconds) pads with zeros or crops to exactly that length.

    Raises :class:`AudioError` if the file is missing, empty, corrupt, not
    audio, or silent.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    y, sr = decode(path)
    return prepare_signal(y, sr, sample_rate, trim=trim, top_db=top_db, duration=duration, source=path)


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as ``(mono float32 signal, sample rate)``: libsndfile, else librosa's audioread backend."""
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return y.mean(axis=1), int(sr)
    except Exception as sf_err:  # libsndfile cannot read it: try audioread/ffmpeg
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=True)
            return y, int(sr)
        except Exception:
            raise AudioError(path, f"not a readable audio file ({sf_err})") from None


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
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)
    if trim:
        import librosa

        trimmed, _ = librosa.effects.trim(y, top_db=top_db)
        if trimmed.size:
            y = trimmed
    if duration is not None:
        y = fix_length(y, int(round(duration * sample_rate)))
    return y


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
    if sr <= 0:
        raise AudioError(source, f"invalid sample rate {sr}")
    if y.size == 0:
        raise AudioError(source, "contains no audio samples")
    if not np.all(np.isfinite(y)):
        raise AudioError(source, "contains NaN or infinite samples")
    return y


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop ``y`` to ``n`` samples around its centre, or zero-pad its end."""
    if y.size > n:
        start = (y.size - n) // 2
        return y[start : start + n]
    if y.size < n:
        return np.pad(y, (0, n - y.size))
    return y
