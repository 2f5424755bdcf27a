"""Exception types raised by emovox.

Every error carries a message that names the offending file (or option) and
the problem, so a batch job can report it and move on.
"""
from __future__ import annotations

from pathlib import Path


class EmovoxError(Exception):
    """Base class of all emovox errors."""


class AudioError(EmovoxError):
    """An audio input could not be used: missing, empty, corrupt, silent or not audio."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class NoSpeechError(AudioError):
    """The input holds no speech (noise, a tone, near-silence, a few milliseconds): there is no emotion to report."""


class UnknownSoundError(NoSpeechError):
    """The input is unlike all the speech the model was trained on (a tone, a chord, a sweep, coloured noise): its
    ``ood_score`` (distance from the training speech as a multiple of the model's threshold) is above 1, so the
    model gives it no emotion. A :class:`NoSpeechError`: every path that reports "no speech" reports it too."""

    def __init__(self, source: str | Path, score: float):
        self.score = float(score)
        super().__init__(source, f"not speech this model knows (ood_score {self.score:.2f} > 1: unlike all its training "
                                 "speech, e.g. a tone, music or noise)")


class UnknownLabelError(EmovoxError, ValueError):
    """A label is not in the canonical vocabulary or a corpus's label map."""


class CorpusError(EmovoxError):
    """A corpus folder or manifest is missing or malformed."""


class ModelError(EmovoxError):
    """A model directory, backbone or weights file cannot be used."""
