"""Toronto Emotional Speech Set (TESS).

Two female speakers (OAF, older; YAF, younger) say "Say the word ___" for 200
target words in seven emotions. Layout as distributed::

    <root>/<SPK>_<emotion folder>/<SPK>_<word>_<emotion>.wav

The emotion token at the end of the FILE NAME is authoritative: folder names
differ between distributions (``OAF_Fear``, ``YAF_pleasant_surprised`` …).
One file in the original is named ``OA_bite_neutral``; it belongs to OAF.

License as commonly stated: CC BY-NC-ND 4.0 (Dupuis & Pichora-Fuller, 2010).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CorpusError
from ..labels import canonical
from .base import Utterance, audio_files

NAME = "tess"
LABEL_MAP = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprise",
    "sad": "sad",
}
_SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF", "YA": "YAF"}


def parse_name(path: Path) -> tuple[str, str, str]:
    """Return ``(speaker, word, emotion)`` parsed from a TESS file name."""
    parts = path.stem.split("_")
    if len(parts) < 3:
        raise CorpusError(f"{path}: not a TESS file name (expected SPK_word_emotion)")
    speaker = _SPEAKERS.get(parts[0].upper())
    if speaker is None:
        raise CorpusError(f"{path}: unknown TESS speaker {parts[0]!r} (expected OAF or YAF)")
    emotion = canonical(parts[-1], LABEL_MAP)
    word = "_".join(parts[1:-1]).lower()
    return speaker, word, emotion


def load(root: str | Path) -> list[Utterance]:
    """Load every TESS recording below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: TESS folder not found")
    out = []
    for path in audio_files(root):
        speaker, word, emotion = parse_name(path)
        out.append(Utterance(path, emotion, speaker, NAME, text=word))
    if not out:
        raise CorpusError(f"{root}: no TESS audio files found")
    return out
