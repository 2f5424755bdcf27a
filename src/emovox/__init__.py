"""emovox: speech emotion recognition by transfer learning."""
from __future__ import annotations

from ._version import __version__  # noqa: E402

from .errors import AudioError, CorpusError, EmovoxError, ModelError, UnknownLabelError  # noqa: E402
from .labels import CANONICAL  # noqa: E402


def __getattr__(name: str):
    # Heavy imports (torch, librosa) only when the recognizer is asked for.
    if name in ("EmotionRecognizer", "Prediction", "Timeline", "SegmentOptions"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'emovox' has no attribute {name!r}")


__all__ = [
    "AudioError", "CANONICAL", "CorpusError", "EmotionRecognizer", "EmovoxError",
    "ModelError", "Prediction", "SegmentOptions", "Timeline", "UnknownLabelError", "__version__",
]
