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


class UnknownLabelError(EmovoxError, ValueError):
    """A label is not in the canonical vocabulary or a corpus's label map."""


class CorpusError(EmovoxError):
    """A corpus folder or manifest is missing or malformed."""


class ModelError(EmovoxError):
    """A model directory, backbone or weights file cannot be used."""
