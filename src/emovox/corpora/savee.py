"""SAVEE, the Surrey Audio-Visual Expressed Emotion database (Haq & Jackson, 2009).

Four male British English speakers (DC, JE, JK, KL) say 15 sentences in each
of six emotions and 30 in neutral: 120 files per speaker, 480 in all. Two
layouts are read:

* nested, as in the original ``AudioData`` folder: ``<root>/DC/sa01.wav``;
* flat, as in common re-distributions: ``<root>/DC_sa01.wav``, possibly in an
  ``ALL/`` sub-folder.

A file name starts with the emotion: ``a`` anger, ``d`` disgust, ``f`` fear,
``h`` happiness, ``n`` neutral, ``sa`` sadness, ``su`` surprise, followed by a
two-digit sentence number (01-15; 01-30 for neutral). Sentence ``d03`` is the
third disgust sentence, said by every speaker, so ``text`` is that sentence id
(``"d03"``) and ``extra["sentence_number"]`` the bare number (``"03"``).

License: free for research use after registration on the corpus site
(http://kahlan.eps.surrey.ac.uk/savee/).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CorpusError
from .base import Utterance, audio_files

NAME = "savee"
LABEL_MAP = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}
SPEAKERS = ("DC", "JE", "JK", "KL")
#: Sentences per emotion; neutral has twice as many.
SENTENCES_PER_EMOTION = {code: 30 if code == "n" else 15 for code in LABEL_MAP}
# "sa" and "su" are listed before the one-letter codes; there is no bare "s".
_CODE_RE = re.compile(r"^(sa|su|a|d|f|h|n)(\d{2})$")


def parse_name(path: Path) -> Utterance:
    """Parse a SAVEE file (``DC_sa01.wav`` or ``DC/sa01.wav``) into an :class:`Utterance`."""
    stem = path.stem
    if "_" in stem:
        speaker, code = stem.split("_", 1)
    else:
        speaker, code = path.parent.name, stem
    speaker = speaker.upper()
    if speaker not in SPEAKERS:
        raise CorpusError(
            f"{path}: unknown SAVEE speaker {speaker!r} (expected {', '.join(SPEAKERS)} "
            "as a DC_a01 prefix or a DC/ folder)"
        )
    m = _CODE_RE.match(code)
    if m is None:
        raise CorpusError(f"{path}: not a SAVEE file name (expected a, d, f, h, n, sa or su and two digits, e.g. sa01)")
    emo, number = m.groups()
    if not 1 <= int(number) <= SENTENCES_PER_EMOTION[emo]:
        raise CorpusError(f"{path}: SAVEE sentence number {number} out of range 01-{SENTENCES_PER_EMOTION[emo]:02d} for {emo!r}")
    return Utterance(
        path,
        LABEL_MAP[emo],
        speaker,
        NAME,
        text=f"{emo}{number}",
        extra={"sentence_number": number, "gender": "male"},
    )


def load(root: str | Path) -> list[Utterance]:
    """Load every SAVEE recording below ``root`` (nested or flat layout)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: SAVEE folder not found")
    out = [parse_name(p) for p in audio_files(root)]
    if not out:
        raise CorpusError(f"{root}: no SAVEE audio files found (expected DC/a01.wav or DC_a01.wav ...)")
    return out
