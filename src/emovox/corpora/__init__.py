"""Corpus loaders. Each yields :class:`Utterance` records with canonical labels.

>>> from emovox.corpora import load_corpus
>>> utts = load_corpus("tess", "../shared/data/tess")  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import CorpusError
from . import cremad, emodb, nemo, ravdess, savee, tess
from .base import AUDIO_EXTENSIONS, Utterance, audio_files
from .folder import load_csv, load_folder

Loader = Callable[[Path], list[Utterance]]

#: Corpus name -> loader taking the corpus root (or manifest file).
LOADERS: dict[str, Loader] = {
    "tess": tess.load,
    "ravdess": ravdess.load,
    "cremad": cremad.load,
    "savee": savee.load,
    "emodb": emodb.load,
    "nemo": nemo.load,
    "folder": load_folder,
    "csv": load_csv,
}


def load_corpus(
    name: str | Sequence[str],
    data: str | Path | Sequence[str | Path],
    emotions: Iterable[str] | None = None,
) -> list[Utterance]:
    """Load one corpus, or several merged (``"tess,ravdess"`` with two paths).

    ``emotions`` restricts the result to those canonical labels.
    """
    names = name.split(",") if isinstance(name, str) else list(name)
    paths = str(data).split(",") if isinstance(data, (str, Path)) else [str(p) for p in data]
    if len(names) != len(paths):
        raise CorpusError(f"{len(names)} corpora ({', '.join(names)}) but {len(paths)} data paths; give one path per corpus")
    out: list[Utterance] = []
    for n, p in zip(names, paths):
        n = n.strip().lower()
        if n not in LOADERS:
            raise CorpusError(f"unknown corpus {n!r}; choose from {', '.join(LOADERS)}")
        out.extend(LOADERS[n](Path(p.strip()).expanduser()))
    if emotions is not None:
        keep = set(emotions)
        out = [u for u in out if u.emotion in keep]
        if not out:
            raise CorpusError(f"no utterances left after keeping only {', '.join(sorted(keep))}")
    return out


__all__ = ["AUDIO_EXTENSIONS", "LOADERS", "Utterance", "audio_files", "load_corpus", "load_csv", "load_folder"]
