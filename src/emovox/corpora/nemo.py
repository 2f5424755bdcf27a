"""nEMO, emotional speech in Polish (Christop, LREC-COLING 2024).

Nine actors of the full corpus read Polish sentences in six emotions. Layout
as distributed::

    <root>/samples/KS0_anger_12.flac

(files directly under ``<root>`` are read too, so ``<root>`` may be the
``samples`` folder itself). When ``<root>/samples`` exists only that folder is
read. A name is ``SPEAKER_emotion_SENTENCE``: actor id (two capitals and a
digit, e.g. ``KS0``), emotion word (anger, fear, happiness, neutral, sadness,
surprised) and sentence number. The emotion word in the FILE NAME is
authoritative.

Sentence numbers run from 1 within each speaker and emotion; ``text`` is that
number as a string (``"12"``), so a text-disjoint split keeps every recording
numbered 12 on the same side whatever its emotion.

Speaker gender as documented for the recordings shipped here: male KS0, WR0;
female KD0, IC0. Other actors of the full corpus are read with gender
``"unknown"``.

License as commonly stated: CC BY-NC-SA 4.0.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorpusError
from .base import Utterance, load_files, lookup

NAME = "nemo"
LABEL_MAP = {
    "anger": "angry",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}
GENDERS = {
    "KS0": "male",
    "WR0": "male",
    "KD0": "female",
    "IC0": "female",
}
LANGUAGE = "pl"
AUDIO_FOLDER = "samples"
_NAME_RE = re.compile(r"^([A-Z]{2}\d)_([A-Za-z]+)_(\d+)$")


def parse_name(path: Path) -> Utterance:
    """Parse one nEMO file name (``KS0_anger_12.flac``) into an :class:`Utterance`."""
    m = _NAME_RE.match(path.stem)
    if m is None:
        raise CorpusError(f"{path}: not a nEMO file name (expected SPEAKER_emotion_SENTENCE, e.g. KS0_anger_12)")
    speaker, word, sentence = m.groups()
    emotion = lookup(path, LABEL_MAP, word.lower(), "nEMO emotion word")
    return Utterance(
        path,
        emotion,
        speaker,
        NAME,
        text=sentence,
        extra={"gender": GENDERS.get(speaker, "unknown"), "sentence": sentence, "language": LANGUAGE},
    )


def load(root: str | Path) -> list[Utterance]:
    """Load every nEMO recording in ``root/samples`` (or directly below ``root``)."""
    return load_files(root, "nEMO", parse_name, AUDIO_FOLDER, f"{AUDIO_FOLDER}/KS0_anger_12.flac")
