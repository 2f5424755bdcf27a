"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., 2014).

91 actors (ids 1001-1091) say 12 sentences in six emotions. Audio as
distributed in the official repository::

    <root>/AudioWAV/1001_DFA_ANG_XX.wav

(the files may also lie directly under ``<root>``; ``.flac`` copies are read
too). File names are ``SPEAKER_SENTENCE_EMOTION_INTENSITY``: emotion ANG, DIS,
FEA, HAP, NEU, SAD; intensity LO, MD, HI or XX (unspecified). When
``<root>/AudioWAV`` exists only that folder is read, so the repository's
``AudioMP3/`` copies of the same clips are not loaded twice.

Gender comes from the per-actor table ``VideoDemographics.csv`` of the official
repository (43 female, 48 male actors).

Known quirk: ``1076_MTI_SAD_XX.wav`` holds no usable audio. It is listed like
any other file; the problem is reported when the audio is decoded.

License as stated by the distributors: Open Database License (ODbL) v1.0 for
the database, Database Contents License (DbCL) v1.0 for its contents.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorpusError
from .base import Utterance, load_files, lookup

NAME = "cremad"
LABEL_MAP = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
FIRST_SPEAKER, LAST_SPEAKER = 1001, 1091
#: Actors listed as "Female" in the official VideoDemographics.csv; all others are "Male".
FEMALE_SPEAKERS: frozenset[str] = frozenset(
    f"10{n:02d}"
    for n in (2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 18, 20, 21, 24, 25, 28, 29, 30, 37, 43, 46, 47,
              49, 52, 53, 54, 55, 56, 58, 60, 61, 63, 72, 73, 74, 75, 76, 78, 79, 82, 84, 89, 91)
)
AUDIO_FOLDER = "AudioWAV"
_NAME_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def gender(speaker: str) -> str:
    """``"female"`` or ``"male"`` for a CREMA-D actor id, as in VideoDemographics.csv."""
    return "female" if speaker in FEMALE_SPEAKERS else "male"


def parse_name(path: Path) -> Utterance:
    """Parse one CREMA-D file name (``1001_DFA_ANG_XX.wav``) into an :class:`Utterance`."""
    m = _NAME_RE.match(path.stem)
    if m is None:
        raise CorpusError(f"{path}: not a CREMA-D file name (expected SPEAKER_SENTENCE_EMOTION_INTENSITY, e.g. 1001_DFA_ANG_XX)")
    speaker, sentence, emo, level = m.groups()
    if not FIRST_SPEAKER <= int(speaker) <= LAST_SPEAKER:
        raise CorpusError(f"{path}: CREMA-D speaker {speaker} out of range {FIRST_SPEAKER}-{LAST_SPEAKER}")
    text = lookup(path, SENTENCES, sentence, "CREMA-D sentence code")
    emotion = lookup(path, LABEL_MAP, emo, "CREMA-D emotion code")
    intensity = lookup(path, INTENSITIES, level, "CREMA-D intensity code")
    extra = {"intensity": intensity, "sentence": sentence, "gender": gender(speaker)}
    return Utterance(path, emotion, speaker, NAME, text=text, extra=extra)


def load(root: str | Path) -> list[Utterance]:
    """Load every CREMA-D recording in ``root/AudioWAV`` (or directly below ``root``)."""
    return load_files(root, "CREMA-D", parse_name, AUDIO_FOLDER, f"{AUDIO_FOLDER}/1001_DFA_ANG_XX.wav")
