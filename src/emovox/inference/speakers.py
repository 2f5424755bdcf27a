"""Adapting to known speakers: running statistics of each speaker's vectors, so that an archive (a diary app's
user, a call centre's agent, an interview series) is classified by the model's speaker-normalised head once enough
of a speaker's recordings are in, and better as it grows.

>>> book = SpeakerBook(min_files=10)
>>> book.add("agent-7", vectors)                 # doctest: +SKIP
>>> book.ready("agent-7"), book.normalize("agent-7", vectors)   # doctest: +SKIP

The statistics are those :func:`emovox.model.heads.speaker_normalize` computes over all of a speaker's recordings
at once (mean and standard deviation per dimension), merged batch by batch (Chan et al.'s parallel update), so
``normalize`` over a speaker's whole archive equals normalising it in one go. They are plain arrays: a book is
saved as ``.npz`` + JSON and loaded without pickles.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmovoxError

#: Recordings of a speaker needed before its speaker-normalised head is used: the timeline's measured threshold
#: (``SegmentOptions.adapt_min_segments``; docs/long-audio.md).
MIN_FILES = 10


@dataclass
class RunningStats:
    """Count, mean and sum of squared deviations of a stream of vectors (float64)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> RunningStats:
        return cls(0, np.zeros(dim), np.zeros(dim))

    def add(self, x: np.ndarray) -> RunningStats:
        """Merge the rows of ``x`` ``(k, dim)`` in; returns self."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise EmovoxError(f"vectors of shape {x.shape} for statistics of dimension {self.mean.shape[0]}")
        k = len(x)
        if not k:
            return self
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        n = self.n + k
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * k / n)
        self.n = n
        return self

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.n, 1))

    def normalize(self, x: np.ndarray, floor: float = 0.01) -> np.ndarray:
        """``x`` z-scored by these statistics (a dimension's spread floored at ``floor`` times itself, as
        :func:`~emovox.model.heads.speaker_normalize` does for one speaker)."""
        std = self.std
        return ((np.asarray(x, dtype=np.float64) - self.mean) / np.maximum(std, floor * std + 1e-8)).astype(np.float32)


def key_from_path(pattern: str) -> Callable[[str], str | None]:
    """The speaker key of a path: the first group of the regular expression ``pattern`` (else its whole match),
    ``None`` where it does not match. ``key_from_path(r"Actor_(\\d+)")("Actor_07/x.wav") == "07"``."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise EmovoxError(f"{pattern!r}: not a regular expression ({err})") from None

    def of(path: str) -> str | None:
        m = compiled.search(str(path))
        return None if m is None else (m.group(1) if m.groups() else m.group(0))

    return of


class SpeakerBook:
    """Running statistics per speaker key; a speaker is :meth:`ready` once ``min_files`` recordings are in."""

    def __init__(self, min_files: int = MIN_FILES):
        if min_files < 2:
            raise EmovoxError(f"min_files must be at least 2 (one recording says nothing of a voice's range), not {min_files}")
        self.min_files = int(min_files)
        self.stats: dict[str, RunningStats] = {}

    def __len__(self) -> int:
        return len(self.stats)

    def __contains__(self, key: object) -> bool:
        return str(key) in self.stats

    def count(self, key: str) -> int:
        s = self.stats.get(str(key))
        return s.n if s else 0

    def add(self, key: str, vectors: np.ndarray) -> int:
        """Merge a speaker's new vectors in; returns how many of its recordings are in now."""
        vectors = np.atleast_2d(np.asarray(vectors))
        stats = self.stats.setdefault(str(key), RunningStats.empty(vectors.shape[1]))
        return stats.add(vectors).n

    def ready(self, key: str) -> bool:
        return self.count(key) >= self.min_files

    def normalize(self, key: str, vectors: np.ndarray) -> np.ndarray:
        if str(key) not in self.stats:
            raise EmovoxError(f"speaker {key!r} has no statistics yet")
        return self.stats[str(key)].normalize(vectors)

    # -- persistence (no pickles) ---------------------------------------------
    def to_bytes(self) -> bytes:
        """The book as ``.npz`` bytes: the speakers' keys as JSON, their counts, means and M2."""
        keys = sorted(self.stats)
        dim = self.stats[keys[0]].mean.shape[0] if keys else 0
        arrays = {
            "keys": np.frombuffer(json.dumps(keys).encode(), dtype=np.uint8),
            "min_files": np.array([self.min_files]),
            "n": np.array([self.stats[k].n for k in keys], dtype=np.int64),
            "mean": np.stack([self.stats[k].mean for k in keys]) if keys else np.zeros((0, dim)),
            "m2": np.stack([self.stats[k].m2 for k in keys]) if keys else np.zeros((0, dim)),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the book to ``path`` (:meth:`to_bytes`), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpeakerBook:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise EmovoxError(f"{path}: speaker statistics not found") from None
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> SpeakerBook:
        path = name
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                keys = json.loads(z["keys"].tobytes().decode())
                book = cls(int(z["min_files"][0]))
                for i, key in enumerate(keys):
                    book.stats[key] = RunningStats(int(z["n"][i]), z["mean"][i].astype(np.float64), z["m2"][i].astype(np.float64))
        except (KeyError, ValueError, OSError, EOFError) as err:
            raise EmovoxError(f"{path}: not an emovox speaker-statistics file ({err})") from None
        return book
