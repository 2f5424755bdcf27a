"""RAVDESS, audio-only speech (Livingstone & Russo, 2018).

File names ``03-01-EE-II-SS-RR-AA.wav`` below ``Actor_AA/`` folders:
modality (03 audio-only), vocal channel (01 speech), emotion EE, intensity
II (01 normal, 02 strong), statement SS, repetition RR, actor AA (odd male,
even female).

License as commonly stated: CC BY-NC-SA 4.0.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CorpusError
from .base import Utterance, audio_files

NAME = "ravdess"
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def parse_name(path: Path) -> Utterance:
    """Parse one RAVDESS file name into an :class:`Utterance`."""
    fields = path.stem.split("-")
    if len(fields) != 7 or not all(f.isdigit() for f in fields):
        raise CorpusError(f"{path}: not a RAVDESS file name (expected 03-01-EE-II-SS-RR-AA)")
    modality, channel, emo, intensity, statement, repetition, actor = fields
    if emo not in EMOTIONS:
        raise CorpusError(f"{path}: unknown RAVDESS emotion code {emo!r}")
    return Utterance(
        path,
        EMOTIONS[emo],
        actor,
        NAME,
        text=STATEMENTS.get(statement, statement),
        extra={
            "intensity": "strong" if intensity == "02" else "normal",
            "gender": "male" if int(actor) % 2 else "female",
            "repetition": repetition,
            "modality": modality,
            "channel": channel,
        },
    )


def load(root: str | Path) -> list[Utterance]:
    """Load the audio-only speech recordings (modality 03, channel 01) below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: RAVDESS folder not found")
    out = [u for u in map(parse_name, audio_files(root)) if u.extra["modality"] == "03" and u.extra["channel"] == "01"]
    if not out:
        raise CorpusError(f"{root}: no RAVDESS audio-only speech files found")
    return out
