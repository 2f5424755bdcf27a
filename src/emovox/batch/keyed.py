"""Speaker-keyed batch runs whose answers do not depend on the order of the files.

A speaker's recordings are classified against that speaker's statistics over *all* of its recordings in the
dataset, never against the ones that happened to come first (an archive listed by date, agent or topic would
otherwise let a speaker's first emotions define "normal" for the rest):

1. every new input is encoded (one vector per file, kept);
2. the vectors of every familiar, keyed input the dataset holds are kept in ``<out>/_speakers.npz`` (a leading
   underscore: Parquet readers skip it, the folder stays one dataset), and each speaker's statistics are computed
   from all of them;
3. rows already written for a speaker whose statistics changed (an ``--append``\\ ed run with more of its
   recordings) are rewritten, part by part, each part replaced atomically;
4. the new inputs' rows are written.

``_speakers.npz`` is saved before any row is, with the speakers whose old rows still await step 3, so that a run
cut off anywhere is completed by running it again: a resumed run gives the rows an uninterrupted one gives.
"""
from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EmovoxError, UnknownSoundError
from ..inference.results import prediction_of
from ..inference.scoring import Scores
from ..inference.speakers import RunningStats, SpeakerBook
from ..storage import text_name
from .rows import failed_inputs

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer
    from ..storage import PartStore
    from .rows import RowMaker

#: The vectors of a speaker-keyed dataset's familiar inputs, beside its parts (skipped by Parquet readers).
SPEAKERS_FILE = "_speakers.npz"
#: Where emovox before order-free adaptation kept running statistics (readers failed on it: not Parquet).
LEGACY_SPEAKERS_FILE = "speakers.npz"

InputId = tuple[str, int, int]  # (path as text, size, mtime_ns): the dataset's resume key


@dataclass
class SpeakerVectors:
    """One vector per familiar keyed input of a dataset, by its resume key; each speaker's statistics are those
    of all of its vectors (:meth:`book`)."""

    min_files: int
    vectors: dict[InputId, tuple[str, np.ndarray]] = field(default_factory=dict)
    #: speakers whose rows already written still have to be rewritten with their current statistics
    pending: set[str] = field(default_factory=set)

    def speakers(self) -> dict[str, list[InputId]]:
        out: dict[str, list[InputId]] = {}
        for input_id, (key, _) in self.vectors.items():
            out.setdefault(key, []).append(input_id)
        return out

    def merge(self, found: dict[InputId, tuple[str, np.ndarray]]) -> set[str]:
        """Add ``found`` (new inputs, or inputs of a resumed run already in); returns the speakers whose set of
        recordings changed."""
        changed = set()
        for input_id, (key, v) in found.items():
            old = self.vectors.get(input_id)
            if old is None or old[0] != key:
                changed.add(key)
                if old is not None:
                    changed.add(old[0])
            self.vectors[input_id] = (key, np.asarray(v, np.float32))
        return changed

    def book(self) -> SpeakerBook:
        """Each speaker's statistics over all of its vectors (added in resume-key order: the same whatever order
        the files came in)."""
        book = SpeakerBook(self.min_files)
        for key, ids in self.speakers().items():
            rows = np.stack([self.vectors[i][1] for i in sorted(ids)])
            book.stats[key] = RunningStats.empty(rows.shape[1]).add(rows)
        return book

    # -- persistence (no pickles) ---------------------------------------------
    def to_bytes(self) -> bytes:
        ids = sorted(self.vectors)
        dim = len(next(iter(self.vectors.values()))[1]) if ids else 0
        meta = {"format": "emovox-speakers/2", "min_files": self.min_files, "pending": sorted(self.pending),
                "ids": [list(i) for i in ids], "keys": [self.vectors[i][0] for i in ids]}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 vectors=np.stack([self.vectors[i][1] for i in ids]) if ids else np.zeros((0, dim), np.float32))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> SpeakerVectors:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                vectors = z["vectors"].astype(np.float32)
            if meta.get("format") != "emovox-speakers/2" or len(meta["ids"]) != len(vectors):
                raise ValueError("unknown layout")
            out = cls(int(meta["min_files"]), pending=set(meta["pending"]))
            for (path, size, mtime), key, v in zip(meta["ids"], meta["keys"], vectors):
                out.vectors[(str(path), int(size), int(mtime))] = (str(key), v)
        except (KeyError, ValueError, TypeError, OSError, EOFError) as err:
            raise EmovoxError(f"{name}: not an emovox speaker-vectors file ({err})") from None
        return out


def load_vectors(store: PartStore, min_files: int) -> SpeakerVectors:
    """The dataset's :class:`SpeakerVectors` (empty for a new dataset, with ``min_files``)."""
    if store.read_bytes(LEGACY_SPEAKERS_FILE) is not None:
        raise EmovoxError(f"{store}/{LEGACY_SPEAKERS_FILE}: this dataset was written with running speaker statistics "
                          "(answers depending on the order of the files); annotate into a new folder")
    saved = store.read_bytes(SPEAKERS_FILE)
    return SpeakerVectors(min_files) if saved is None else SpeakerVectors.from_bytes(saved, f"{store}/{SPEAKERS_FILE}")


def rewrite_speakers(rec: EmotionRecognizer, store: PartStore, rows: RowMaker, saved: SpeakerVectors,
                     book: SpeakerBook) -> int:
    """Rewrite the rows of :attr:`SpeakerVectors.pending` speakers with ``book``; returns the rows rewritten."""
    import pyarrow as pa
    import torch

    done = 0
    for part in store.parts():
        if not set(store.read(part, columns=["speaker"]).column("speaker").to_pylist()) & saved.pending:
            continue
        table = store.read(part)
        records = table.to_pylist()
        redo = []  # (row, vector) of each answered row of a pending speaker
        for i, r in enumerate(records):
            found = saved.vectors.get((r["path"], r["size"], r["mtime_ns"]))
            if r["speaker"] in saved.pending and r["error"] is None and found is not None:
                redo.append((i, found[1]))
        if not redo:
            continue
        vectors = np.stack([v for _, v in redo])
        keys = [records[i]["speaker"] for i, _ in redo]
        file_head = Scores(rec.classify(torch.from_numpy(vectors)), None, ["file"] * len(redo), vectors)
        scores = rec.by_speaker(file_head, keys, book)
        for k, (i, _) in enumerate(redo):
            r = records[i]
            base = {name: r[name] for name in ("path", "size", "mtime_ns", "model", "duration")}
            answer = prediction_of(scores.probabilities[k], rec.labels, r["path"], keys[k], scores.heads[k])
            records[i] = rows.prediction(base, answer)[0]
        store.replace(part, pa.Table.from_pylist(records, schema=table.schema))
        done += len(redo)
    return done


def run_keyed(rec: EmotionRecognizer, todo: list[str], stats: dict[str, tuple[int, int]], store: PartStore,
              rows: RowMaker, batch_size: int, chunk: int, progress: bool, speaker_of: Callable[[str], str | None],
              write_part: Callable[[list[dict[str, Any]]], None]) -> tuple[int, int]:
    """The local engine with speaker keys (see the module docstring); returns ``(failed inputs, rows written)``."""
    from tqdm.auto import tqdm

    from .rows import file_duration

    saved = load_vectors(store, rec.speakers.min_files)
    bar = tqdm(total=len(todo), unit="file", desc="emovox batch: encoding", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        names, scores, errors = rec.encode_files(todo, batch_size, on_file=lambda: bar.update(1))
    finally:
        bar.close()

    def key_of(name: str) -> str | None:  # as the rows spell it
        k = speaker_of(name)
        return None if k is None else text_name(str(k))

    good = [n for n, e in zip(names, errors) if e is None]
    keys = [key_of(n) for n in good]
    known = scores.known
    found = {(text_name(n), *stats[n]): (k, scores.vectors[i])
             for i, (n, k) in enumerate(zip(good, keys)) if k is not None and known[i]}
    changed = saved.merge(found)
    saved.pending |= changed  # their rows already written, if any, are answered again below
    store.write_bytes(SPEAKERS_FILE, saved.to_bytes())  # before any row: a run cut off from here on is resumable
    book = saved.book()
    if saved.pending:
        rewrite_speakers(rec, store, rows, saved, book)
        saved.pending = set()
        store.write_bytes(SPEAKERS_FILE, saved.to_bytes())
    rec.speakers = book
    scores = rec.by_speaker(scores, keys, book)

    failed = written = 0
    pending: list[dict[str, Any]] = []
    i = 0
    for name, err in zip(names, errors):
        base = rows.base(name, *stats[name], file_duration(name))
        if err is not None:
            out = rows.error(base | {"speaker": key_of(name)}, err)
        else:
            a = rec.answer(scores, i, name, True, keys[i])
            out = rows.error(base | {"speaker": keys[i]}, a) \
                if isinstance(a, UnknownSoundError) else rows.prediction(base, a)
            i += 1
        failed += len(failed_inputs(out))
        pending.extend(out)
        if len(pending) >= chunk:
            write_part(pending)
            written += len(pending)
            pending = []
    if pending:
        write_part(pending)
        written += len(pending)
    return failed, written


__all__ = ["LEGACY_SPEAKERS_FILE", "SPEAKERS_FILE", "SpeakerVectors", "load_vectors", "run_keyed"]

