"""The on-disk cache: where it lives, how a file is keyed, and arrays stored by key.

Entries are keyed by a file's content digest and by the identity of what
computed them (an encoder's identity, a feature config's digest), so renamed
or moved files still hit the cache and a changed setting never returns stale
arrays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .identity import digest


def default_cache_dir() -> Path:
    """``$EMOVOX_CACHE`` or ``$XDG_CACHE_HOME/emovox`` (``~/.cache/emovox``)."""
    if os.environ.get("EMOVOX_CACHE"):
        return Path(os.environ["EMOVOX_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emovox"


def content_hash(path: str | Path) -> str:
    """Cache key of a file: the :func:`emovox.identity.digest` of its bytes."""
    return digest(Path(path))


@dataclass
class ArrayCache:
    """Arrays stored as ``.npy`` files under ``root/<namespace>/<key[:2]>/<key>.npy``.

    Namespaces separate what was computed how: ``features/<config digest>`` for
    spectrograms, ``embeddings/<backbone>/<config digest>`` for frozen-backbone
    embeddings.
    """

    root: Path
    namespace: str

    def path_for(self, key: str) -> Path:
        return self.root / self.namespace / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        try:
            return np.load(self.path_for(key), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        p = self.path_for(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, p)  # atomic: concurrent workers never see a half-written file
