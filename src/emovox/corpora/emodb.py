"""Berlin Database of Emotional Speech, EmoDB (Burkhardt et al., 2005).

Ten German actors (five female, five male) say ten German sentences in seven
emotions; 535 recordings. Layout as distributed::

    <root>/wav/03a01Fa.wav

(files directly under ``<root>`` are read too). When ``<root>/wav`` exists
only that folder is read. A name is ``SS TTT E V``: speaker SS (03, 08, 09,
10, 11, 12, 13, 14, 15, 16), text code TTT (a01, a02, a04, a05, a07, b01,
b02, b03, b09, b10), emotion letter E from the German word (W Wut = anger,
L Langeweile = boredom, E Ekel = disgust, A Angst = fear, F Freude =
happiness, T Trauer = sadness, N neutral) and version letter V.

Speaker gender as documented by the corpus: male 03, 10, 11, 12, 15; female
08, 09, 13, 14, 16.

License: no formal license is given; the corpus page asks users to cite
Burkhardt et al., Interspeech 2005. See http://emodb.bilderbar.info/.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorpusError
from .base import Utterance, load_files, lookup

NAME = "emodb"
LABEL_MAP = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
GENDERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
LANGUAGE = "de"
AUDIO_FOLDER = "wav"
_NAME_RE = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])$")


def parse_name(path: Path) -> Utterance:
    """Parse one EmoDB file name (``03a01Fa.wav``) into an :class:`Utterance`."""
    m = _NAME_RE.match(path.stem)
    if m is None:
        raise CorpusError(f"{path}: not an EmoDB file name (expected speaker, text, emotion, version, e.g. 03a01Fa)")
    speaker, text, emo, version = m.groups()
    gender = lookup(path, GENDERS, speaker, "EmoDB speaker")
    lookup(path, TEXTS, text, "EmoDB text code")
    emotion = lookup(path, LABEL_MAP, emo, "EmoDB emotion letter")
    return Utterance(path, emotion, speaker, NAME, text=text, extra={"gender": gender, "version": version, "language": LANGUAGE})


def load(root: str | Path) -> list[Utterance]:
    """Load every EmoDB recording in ``root/wav`` (or directly below ``root``)."""
    return load_files(root, "EmoDB", parse_name, AUDIO_FOLDER, f"{AUDIO_FOLDER}/03a01Fa.wav")
