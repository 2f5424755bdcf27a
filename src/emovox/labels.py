"""The canonical emotion vocabulary and the per-corpus label maps.

Models trained on several corpora must agree on what a label means, so every
corpus loader maps its own tokens onto :data:`CANONICAL` through one table.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import UnknownLabelError

#: The canonical emotion labels, in the order used for class indices.
CANONICAL: tuple[str, ...] = (
    "angry",
    "boredom",
    "calm",
    "disgust",
    "fear",
    "happy",
    "neutral",
    "sad",
    "surprise",
)

#: Spellings seen across corpora and manifests, mapped to canonical labels.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "ang": "angry",
    "bored": "boredom",
    "disgusted": "disgust",
    "dis": "disgust",
    "fearful": "fear",
    "fea": "fear",
    "happiness": "happy",
    "hap": "happy",
    "joy": "happy",
    "neu": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
    "ps": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
}


def canonical(label: str, mapping: Mapping[str, str] | None = None) -> str:
    """Return the canonical spelling of ``label``.

    ``mapping`` is a corpus's own table (token -> canonical label), consulted
    first; then the canonical vocabulary itself and the common synonyms.

    >>> canonical("ps")
    'surprise'
    >>> canonical("Fearful")
    'fear'
    """
    key = label.strip().lower()
    if mapping is not None and key in mapping:
        return mapping[key]
    if key in CANONICAL:
        return key
    if key in SYNONYMS:
        return SYNONYMS[key]
    raise UnknownLabelError(
        f"unknown emotion label {label!r}; expected one of {', '.join(CANONICAL)}"
    )


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Sort labels in canonical order (unknown extras last, alphabetically)."""
    order = {name: i for i, name in enumerate(CANONICAL)}
    return sorted(set(labels), key=lambda x: (order.get(x, len(order)), x))
