"""Decoding, the speech gate and each encoder's preparer: everything before the network.

Small and picklable, so workers without the model (batch jobs on Ray) can run it. Training reaches an encoder's
input through the same preparers (:meth:`emovox.encoders.Preparer.file`), so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio.decode import load_audio
from ..audio.vad import MIN_SPEECH_S, SPEECH_GATES, check_speech
from ..encoders.base import Preparer
from ..errors import EmovoxError


class Prepared(NamedTuple):
    """A decoded, checked input before the network: one prepared input per encoder, in the model's order."""

    inputs: tuple[np.ndarray, ...]
    source: str


@dataclass(frozen=True)
class Frontend:
    """Turns a file or an array into :class:`Prepared` inputs for a model's encoders (see :meth:`prepare`)."""

    preparers: tuple[Preparer, ...]
    #: ``energy``, ``silero`` or ``off`` (see :data:`emovox.audio.vad.SPEECH_GATES`)
    speech_gate: str = "energy"
    min_speech_s: float = MIN_SPEECH_S

    def __post_init__(self) -> None:
        if self.speech_gate not in SPEECH_GATES:
            raise EmovoxError(f"speech_gate must be one of {', '.join(SPEECH_GATES)}, not {self.speech_gate!r}")
        if not self.preparers:
            raise EmovoxError("a frontend needs the preparer of at least one encoder")

    @property
    def sample_rate(self) -> int:
        """The rate a signal is best given at (the first encoder's)."""
        return self.preparers[0].sample_rate

    def prepare(self, x: str | Path | np.ndarray, sample_rate: int | None = None, source: str | None = None,
                gate: bool = True) -> Prepared:
        """Decode ``x`` (a file, or an array at ``sample_rate``), check it holds speech (``gate``) and prepare each
        encoder's input. Raises :class:`~emovox.errors.AudioError` for an unusable input."""
        if isinstance(x, np.ndarray):
            if sample_rate is None:
                raise EmovoxError("an audio array needs its sample rate: predict(signal, sample_rate=16000)")
            name = source or "<array>"
            signals = {None: (x, int(sample_rate))}
        else:
            name = str(x)
            rates = dict.fromkeys(p.sample_rate for p in self.preparers)  # each distinct rate decoded once
            signals = {r: (load_audio(x, r), r) for r in rates}
        first = next(iter(signals.values()))
        if gate:
            self.check_speech(*first, name)
        inputs = tuple(p(*signals.get(p.sample_rate, first), name) for p in self.preparers)
        return Prepared(inputs, name)

    def check_speech(self, y: np.ndarray, sr: int, source: str = "<array>") -> float:
        """Seconds of voice activity in ``y``; :class:`~emovox.errors.NoSpeechError` when below :attr:`min_speech_s`."""
        return check_speech(y, sr, self.speech_gate, self.min_speech_s, source)
