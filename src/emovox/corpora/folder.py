"""Generic corpora: one folder per emotion, or a CSV manifest."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import CorpusError, UnknownLabelError
from ..labels import canonical
from .base import Utterance, audio_files


def load_folder(root: str | Path) -> list[Utterance]:
    """Load ``root/<emotion>/**/*.wav``: the first folder level names the emotion.

    Speakers are unknown, so each file's parent folder below the emotion
    folder (or ``"unknown"``) stands in as the speaker id.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found")
    out = []
    for path in audio_files(root):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            raise CorpusError(f"{path}: audio file outside an emotion folder (expected {root}/<emotion>/file)")
        try:
            emotion = canonical(rel.parts[0])
        except UnknownLabelError as err:
            raise CorpusError(f"{root / rel.parts[0]}: folder name is not an emotion: {err}") from None
        speaker = rel.parts[1] if len(rel.parts) > 2 else "unknown"
        out.append(Utterance(path, emotion, speaker, "folder"))
    if not out:
        raise CorpusError(f"{root}: no audio files found")
    return out


def load_csv(manifest: str | Path) -> list[Utterance]:
    """Load a CSV manifest with header ``path,emotion`` and optional ``speaker``, ``text``.

    Relative paths resolve against the CSV's folder; emotions must be in the
    canonical vocabulary (common synonyms such as ``fearful`` are accepted).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: CSV manifest not found")
    with manifest.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        missing = {"path", "emotion"} - fields
        if missing:
            raise CorpusError(f"{manifest}: missing column(s) {', '.join(sorted(missing))}; header must start with path,emotion")
        out = []
        for line, row in enumerate(reader, start=2):
            if not (row.get("path") or "").strip():
                raise CorpusError(f"{manifest}:{line}: empty path")
            path = Path(row["path"].strip())
            if not path.is_absolute():
                path = manifest.parent / path
            try:
                emotion = canonical(row["emotion"] or "")
            except UnknownLabelError as err:
                raise CorpusError(f"{manifest}:{line}: {err}") from None
            speaker = (row.get("speaker") or "").strip() or "unknown"
            text = (row.get("text") or "").strip() or None
            out.append(Utterance(path, emotion, speaker, "csv", text=text))
    if not out:
        raise CorpusError(f"{manifest}: manifest lists no files")
    return out
