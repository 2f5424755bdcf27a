"""The :class:`Utterance` record that every corpus loader yields."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: File extensions treated as audio when scanning folders.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aif", ".aiff", ".opus"}
)


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    ``emotion`` is always a canonical label (see :mod:`emovox.labels`).
    ``speaker`` is unique within the corpus; ``text`` is the word or sentence
    spoken when the corpus defines it; ``extra`` holds corpus-specific fields
    (intensity, gender, repetition …).
    """

    path: Path
    emotion: str
    speaker: str
    corpus: str
    text: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def speaker_key(self) -> str:
        """Speaker id qualified by corpus, unique across merged corpora."""
        return f"{self.corpus}:{self.speaker}"


def audio_files(root: Path) -> list[Path]:
    """All audio files below ``root``, sorted, hidden files skipped."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_files(root: str | Path, title: str, parse, subfolder: str | None = None, example: str = "") -> list[Utterance]:
    """Parse every audio file of a corpus with ``parse(path) -> Utterance``.

    Reads ``root/subfolder`` when it exists (so a full distribution's other
    folders, e.g. MP3 copies, are not read twice), else ``root`` itself.
    """
    from ..errors import CorpusError

    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: {title} folder not found")
    folder = root / subfolder if subfolder and (root / subfolder).is_dir() else root
    out = [parse(p) for p in audio_files(folder)]
    if not out:
        raise CorpusError(f"{root}: no {title} audio files found" + (f" (expected {example} ...)" if example else ""))
    return out


def lookup(path: Path, table, code: str, what: str):
    """``table[code]`` (or ``code`` itself when ``table`` is a plain collection of valid codes);
    a :class:`CorpusError` naming the file, the field and the valid codes when ``code`` is unknown."""
    from ..errors import CorpusError

    if code not in table:
        raise CorpusError(f"{path}: unknown {what} {code!r} (expected one of {', '.join(table)})")
    return table[code] if isinstance(table, dict) else code
