"""Audio in: decode any format and rate (:mod:`.decode`), read long recordings in blocks (:mod:`.stream`),
find speech (:mod:`.vad`).

The decoding functions are re-exported here: ``from emovox.audio import load_audio``.
"""
from __future__ import annotations

from .decode import (
    MAX_ABS_SAMPLE, MAX_DECODE_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SILENCE_PEAK, check_sample_rate, decode,
    fix_length, load_audio, mono_signal, prepare_signal, resample, trim_silence,
)

__all__ = [
    "MAX_ABS_SAMPLE", "MAX_DECODE_SECONDS", "MAX_SAMPLE_RATE", "MIN_SAMPLE_RATE", "SILENCE_PEAK", "check_sample_rate",
    "decode", "fix_length", "load_audio", "mono_signal", "prepare_signal", "resample", "trim_silence",
]
