"""Where batch inputs and outputs live: local paths, or URLs of any filesystem fsspec knows.

``s3://bucket/calls/``, ``gs://…``, ``az://…``, ``hf://…``, ``memory://…`` work when fsspec and that
filesystem's package (s3fs, gcsfs, adlfs …) are installed; ``file://`` URLs are local paths.
Audio behind a URL is read through libsndfile from the open file (WAV, FLAC, OGG, MP3 …); formats
only ffmpeg reads need a local copy.
"""
from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from .errors import EmovoxError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: Name prefix of a dataset's part files (``part-<run>-<n>.parquet``).
PART_PREFIX = "part-"


def text_name(name: str | Path) -> str:
    """A file name as valid UTF-8 text (Parquet strings, logs): bytes that are not UTF-8 (kept by Python as surrogate
    escapes) become ``\\xNN``, as Python itself shows them; every other name is unchanged."""
    s = os.fspath(name)
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if isinstance(s, str) else repr(s)


def is_url(p: str | Path) -> bool:
    """True for ``scheme://…`` other than ``file://`` (a local path)."""
    return isinstance(p, str) and bool(_SCHEME.match(p)) and not p.startswith("file://")


def local(p: str | Path) -> str | Path:
    """``file://`` URLs as paths; anything else unchanged."""
    if isinstance(p, str) and p.startswith("file://"):
        return p[len("file://"):]
    return p


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` of ``url``, with a clear error when the library is missing."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise EmovoxError(f"{url}: reading URLs needs fsspec: pip install fsspec (plus s3fs, gcsfs … for that store)") from None
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise EmovoxError(f"{url}: {err}") from None


def open_input(url: str) -> BinaryIO:
    """``url`` opened for reading (binary, seekable)."""
    fs, path = filesystem(url)
    return fs.open(path, "rb")


def _mtime_ns(info: dict[str, Any]) -> int:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)) and value > 0:
            return int(value * 1e9)
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
    return -1


def stat(p: str | Path) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of a path or URL; ``-1`` for what the store does not say
    (a missing file: ``(-1, -1)``)."""
    try:
        if is_url(str(p)):
            fs, path = filesystem(str(p))
            info = fs.info(path)
            return int(info.get("size") or 0), _mtime_ns(info)
        st = os.stat(local(p))
        return int(st.st_size), int(st.st_mtime_ns)
    except (OSError, EmovoxError):
        return -1, -1


def list_audio(url: str, extensions: tuple[str, ...]) -> list[str]:
    """Audio files below a folder URL (recursively, sorted, hidden names skipped), or ``[url]`` for a file."""
    fs, path = filesystem(url)
    if not fs.isdir(path):
        return [url]
    base = path.rstrip("/")
    found = []
    for p in fs.find(path):
        rel = p[len(base) + 1:] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
        if os.path.splitext(p)[1].lower() in extensions and not any(part.startswith(".") for part in rel.split("/")):
            found.append(f"{url.rstrip('/')}/{rel}")  # spelled as the user spelled the folder
    return sorted(found)


class PartStore:
    """A Parquet dataset folder, local or behind a URL: its part files listed, read and written.

    A part appears whole or not at all: locally it is written under a hidden temporary name and
    renamed; on an object store one upload is one object, visible only once complete.
    Picklable: Ray write tasks carry it.
    """

    def __init__(self, out: str | Path):
        out = local(out)
        self.url = str(out) if is_url(str(out)) else None
        self.root = str(out).rstrip("/") if self.url else str(Path(out))

    def __repr__(self) -> str:
        return self.url or self.root

    def _fs(self):
        if self.url:
            return filesystem(self.url)
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), self.root

    def is_file(self) -> bool:
        fs, root = self._fs()
        return fs.exists(root) and not fs.isdir(root)

    def parts(self) -> list[str]:
        """Paths of the part files, in name order (oldest run first)."""
        fs, root = self._fs()
        if not fs.isdir(root):
            return []
        names = [p for p in fs.ls(root, detail=False) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX) and p.endswith(".parquet")]
        return sorted(names)

    def read(self, part: str, columns: list[str] | None = None):
        import pyarrow.parquet as pq

        fs, _ = self._fs()
        with fs.open(part, "rb") as f:
            return pq.read_table(f, columns=columns)

    def read_schema(self, part: str):
        import pyarrow.parquet as pq

        fs, _ = self._fs()
        with fs.open(part, "rb") as f:
            return pq.read_schema(f)

    def prepare(self) -> None:
        """Create the folder; remove temporary parts a killed run left behind."""
        fs, root = self._fs()
        fs.makedirs(root, exist_ok=True)
        if not self.url:
            for stale in Path(root).glob(f".{PART_PREFIX}*.tmp"):
                stale.unlink()

    def read_bytes(self, name: str) -> bytes | None:
        """The file ``name`` beside the parts, or ``None`` when there is none."""
        fs, root = self._fs()
        path = f"{root}/{name}"
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return f.read()

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write the file ``name`` beside the parts (atomically where the store allows)."""
        if self.url:
            fs, root = self._fs()
            with fs.open(f"{root}/{name}", "wb") as f:
                f.write(data)
            return f"{root}/{name}"
        final = Path(self.root) / name
        tmp = final.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
        return str(final)

    def write(self, table, stem: str) -> str:
        """Write ``table`` as ``part-<stem>.parquet``, atomically; returns its path."""
        import pyarrow.parquet as pq

        name = f"{PART_PREFIX}{stem}.parquet"
        if self.url:
            fs, root = self._fs()
            path = f"{root}/{name}"
            with fs.open(path, "wb") as f:
                pq.write_table(table, f)
            return path
        final = Path(self.root) / name
        tmp = final.with_name(f".{name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        return str(final)


    def replace(self, part: str, table) -> str:
        """Write ``table`` in place of the part file ``part`` (a path :meth:`parts` gave), atomically."""
        name = part.rsplit("/", 1)[-1]
        if not (name.startswith(PART_PREFIX) and name.endswith(".parquet")):
            raise EmovoxError(f"{part}: not a part file of {self}")
        return self.write(table, name[len(PART_PREFIX) : -len(".parquet")])


def run_id() -> str:
    """A name prefix for one run's parts: sorts by start time, unique across machines."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


__all__ = ["PartStore", "filesystem", "is_url", "list_audio", "local", "open_input", "run_id", "stat"]
