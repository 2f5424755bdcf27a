"""Annotate whole audio archives into a Parquet dataset, resumably.

>>> from emovox import EmotionRecognizer
>>> from emovox.batch import run_batch
>>> rec = EmotionRecognizer.load()                                     # doctest: +SKIP
>>> run_batch(rec, ["calls/", "more.csv"], "calls.parquet")           # doctest: +SKIP

Output: a Parquet *dataset*, a folder of ``part-<run>-<n>.parquet`` files (pandas,
pyarrow, DuckDB, Spark and Ray read the folder as one table), local or at an
fsspec URL (``s3://bucket/calls.parquet``; see :mod:`emovox.storage`). One row per input:
``path``, ``size``, ``mtime_ns``, ``label``, ``confidence``, ``prob_<label>``
for every label, ``uncertain``, ``no_speech``, ``duration`` (seconds),
``model`` and ``error`` (null unless the file failed; failed files are rows
too, never dropped). With ``segments=True`` a row per timeline segment
(``start``, ``end`` added; a file without speech or that failed gets one row
with its ``error``).

Resuming: an input is done when a row with its path, size and modification
time (nanoseconds) is in the dataset; a rerun of the same command skips those
and appends the rest. A changed file (other size or mtime) is annotated again.
Rows are written every ``chunk`` inputs as a new part file, written under a
temporary name and renamed, so an interruption loses at most the chunk in
flight and no half-written file is ever visible.

Engines: ``local`` (one process: the streamed, batched predictor) and ``ray``
(a Ray Data pipeline, see :mod:`emovox.batch.ray_engine`); the rows are the same.
"""
from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AudioError, EmovoxError
from ..inference.recognizer import expand_inputs
from ..inference.results import UNCERTAIN_BELOW
from ..inference.speakers import key_from_path
from ..storage import PartStore, is_url, list_audio, local, run_id, stat, text_name
from .rows import RowMaker, _require_pyarrow, failed_inputs, file_duration, model_identity, output_schema

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer

MANIFEST_SUFFIXES = (".csv", ".parquet", ".txt", ".lst")
#: What runs a batch: ``local`` (this process) or ``ray`` (a Ray cluster, local or remote).
ENGINES = ("local", "ray")


@dataclass
class BatchSummary:
    """What a run did: inputs found, skipped as already done, annotated now, failed (an ``error`` row), rows written."""

    inputs: int
    skipped: int
    annotated: int
    failed: int
    rows: int
    seconds: float
    out: str

    @property
    def files_per_s(self) -> float:
        return self.annotated / self.seconds if self.seconds else 0.0


def read_manifest(path: str | Path) -> list[str]:
    """Paths listed in a CSV or Parquet manifest (column ``path``) or a text file (one per line).

    Relative paths are taken relative to the manifest's folder; URLs are kept as they are."""
    return [p for p, _ in _manifest_rows(Path(path))]


def manifest_speakers(path: str | Path, column: str) -> dict[str, str]:
    """``{path: speaker key}`` of a CSV or Parquet manifest's rows whose ``column`` is set."""
    return {p: str(k) for p, k in _manifest_rows(Path(path), column) if k not in (None, "")}


def _manifest_rows(path: Path, column: str | None = None) -> list[tuple[str, Any]]:
    """``(path, value of column)`` of every listed input (paths resolved as :func:`read_manifest` says)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        if suffix == ".parquet":
            _, pq = _require_pyarrow()
            table = pq.read_table(path)
            names, records = table.column_names, table.to_pylist()
        else:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                names, records = list(reader.fieldnames or []), list(reader)
        for need in ["path"] + ([column] if column else []):
            if need not in names:
                raise EmovoxError(f"{path}: a manifest needs a {need!r} column; it has {', '.join(names)}")
        rows = [(str(r["path"]), r.get(column) if column else None) for r in records if r.get("path")]
    else:
        if column:
            raise EmovoxError(f"{path}: a text list has no columns; give the speakers in a CSV or Parquet manifest")
        rows = [(line.strip(), None) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [(p if is_url(p) or Path(p).is_absolute() else str(path.parent / p), k) for p, k in rows]


def speaker_keys(inputs: Sequence[str | Path], column: str | None = None,
                 from_path: str | None = None) -> Callable[[str], str | None] | None:
    """The speaker key of an input's path: from the ``column`` of the manifests among ``inputs``, or the first
    group (else the whole match) of the regular expression ``from_path``; ``None`` when neither is asked for."""
    if column and from_path:
        raise EmovoxError("give the speakers by manifest column or by path pattern, not both")
    if column:
        known: dict[str, str] = {}
        for item in inputs:
            p = Path(local(item))
            if p.is_file() and p.suffix.lower() in (".csv", ".parquet"):
                known.update(manifest_speakers(p, column))
        if not known:
            raise EmovoxError(f"no manifest among the inputs gives a {column!r} column")
        return known.get
    return key_from_path(from_path) if from_path else None


def expand_batch_inputs(items: Iterable[str | Path]) -> list[str]:
    """Audio files of folders (searched recursively; local or fsspec URLs), manifests (see :func:`read_manifest`)
    and single files, in order, each once."""
    from ..corpora.base import AUDIO_EXTENSIONS

    out: list[str] = []
    for item in items:
        if is_url(str(item)):
            out.extend(list_audio(str(item), AUDIO_EXTENSIONS))
            continue
        p = Path(local(item))
        if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out.extend(read_manifest(p))
        else:
            out.extend(str(x) for x in expand_inputs([p]))
    return list(dict.fromkeys(out))  # each input once, first occurrence kept


def done_keys(out: str | Path | PartStore) -> set[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of every input already in the dataset at ``out``."""
    store = out if isinstance(out, PartStore) else PartStore(out)
    keys: set[tuple[str, int, int]] = set()
    for part in store.parts():
        t = store.read(part, columns=["path", "size", "mtime_ns"])
        keys.update(zip(t.column("path").to_pylist(), t.column("size").to_pylist(), t.column("mtime_ns").to_pylist()))
    return keys


def _file_rows(rec: EmotionRecognizer, paths: Sequence[str], stats: dict[str, tuple[int, int]], batch_size: int,
               rows: RowMaker, vad: str = "auto") -> Iterator[list[dict[str, Any]]]:
    """Rows of every input (a list per input, in order); ``stats``: each path's ``(size, mtime_ns)``."""

    def base(path: str) -> dict[str, Any]:
        return rows.base(path, *stats[path], file_duration(path))

    if rows.segments:
        for path in paths:
            try:
                yield rows.timeline(base(path), rec.timeline(path, vad=vad, speakers=rows.voices))
            except AudioError as err:
                yield rows.error(base(path), err)
        return
    for path, result in zip(paths, rec.predict_files(paths, batch_size=batch_size)):
        yield rows.error(base(path), result) if isinstance(result, AudioError) else rows.prediction(base(path), result)


def _run_local(rec: EmotionRecognizer, todo: list[str], stats: dict[str, tuple[int, int]], store: PartStore, schema,
               rows: RowMaker, batch_size: int, chunk: int, vad: str, progress: bool,
               speaker_of: Callable[[str], str | None] | None = None) -> tuple[int, int]:
    """The local engine: returns ``(failed inputs, rows written)``. With speaker keys: :func:`.keyed.run_keyed`."""
    import sys

    import pyarrow as pa
    from tqdm.auto import tqdm

    run = run_id()
    parts = 0

    def write_part(pending: list[dict[str, Any]]) -> None:
        nonlocal parts
        store.write(pa.Table.from_pylist(pending, schema=schema), f"{run}-{parts:05d}")
        parts += 1

    if speaker_of is not None:
        from .keyed import run_keyed

        return run_keyed(rec, todo, stats, store, rows, batch_size, chunk, progress, speaker_of, write_part)
    bar = tqdm(total=len(todo), unit="file", desc="emovox batch", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    pending: list[dict[str, Any]] = []
    inputs = failed = written = 0
    try:
        for file_rows in _file_rows(rec, todo, stats, batch_size, rows, vad):
            pending.extend(file_rows)
            inputs += 1
            failed += len(failed_inputs(file_rows))
            bar.update(1)
            if inputs >= chunk:
                write_part(pending)
                written += len(pending)
                pending, inputs = [], 0
        if pending:
            write_part(pending)
            written += len(pending)
    finally:
        bar.close()
    return failed, written


def run_batch(
    rec: EmotionRecognizer,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    engine: str = "local",
    segments: bool = False,
    batch_size: int = 32,
    chunk: int = 512,
    uncertain_below: float = UNCERTAIN_BELOW,
    vad: str = "auto",
    progress: bool = True,
    address: str | None = None,
    actors: int | None = None,
    speaker_column: str | None = None,
    speaker_from_path: str | None = None,
    voices: str | int = 1,
) -> BatchSummary:
    """Annotate ``inputs`` (files, folders, manifests; paths or URLs) into the Parquet dataset ``out`` (see the
    module docstring).

    ``engine``: ``"local"`` or ``"ray"`` (``address``: the Ray cluster, default: ``$RAY_ADDRESS`` or a new local
    instance; ``actors``: model replicas, see :func:`emovox.batch.ray_engine.run_ray`). ``vad``: the voice-activity
    detector of the timelines (``segments=True``). ``speaker_column`` (a column of the manifests) or
    ``speaker_from_path`` (a regular expression; its first group) give each input's speaker: every input is
    encoded first, and each is classified against its speaker's statistics over all of that speaker's inputs in
    the dataset, by the speaker head once the speaker has ``rec.speakers.min_files`` (rows: ``speaker``, ``head``),
    whatever order the inputs come in; an extended run rewrites the rows of speakers it adds recordings to (see
    :mod:`emovox.batch.keyed`; the vectors are kept in ``<out>/_speakers.npz``, which Parquet readers skip). ``voices``
    (with ``segments``): ``"auto"`` or a number tells the voices of each recording apart (rows: ``speaker`` S1, S2
    ..., ``head``)."""
    _require_pyarrow()
    if engine not in ENGINES:
        raise EmovoxError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if chunk < 1:
        raise EmovoxError(f"chunk must be at least 1 input, not {chunk}")
    store = PartStore(out)
    if store.is_file():
        raise EmovoxError(f"{out}: exists and is not a folder; emovox batch writes a Parquet dataset (a folder of part files)")
    t0 = time.perf_counter()
    paths = expand_batch_inputs(inputs)
    if not paths:
        raise EmovoxError("no audio files found in the inputs")
    speaker_of = speaker_keys(inputs, speaker_column, speaker_from_path)
    if speaker_of is not None:
        if segments:
            raise EmovoxError("speaker keys classify whole files; a timeline (--segments) adapts to each recording itself")
        if engine != "local":
            raise EmovoxError("speaker keys run on the local engine (their running statistics are one process's)")
        rec.model.require_speaker_head()
    from ..inference.voices import parse_speakers

    voices = parse_speakers(voices)
    if voices != 1 and not segments:
        raise EmovoxError("telling voices apart (--speakers) needs timelines (--segments)")
    who = speaker_of is not None or voices != 1
    rows = RowMaker(tuple(rec.labels), model_identity(rec), float(uncertain_below), segments, who, voices)
    schema = output_schema(rec.labels, segments, who)
    parts = store.parts()
    if parts:
        existing = store.read_schema(parts[0])
        if existing.names != schema.names:
            raise EmovoxError(f"{out}: holds a dataset with other columns (another model's labels, segments "
                              f"{'on' if 'start' in existing.names else 'off'}, speaker keys "
                              f"{'on' if 'speaker' in existing.names else 'off'}); write to another folder")
    done = done_keys(store)
    stats = {p: stat(p) for p in paths}  # stat once: the resume key and the row agree
    todo = [p for p in paths if (text_name(p), *stats[p]) not in done]
    store.prepare()
    if not todo:
        failed, written = 0, 0
    elif engine == "ray":
        from .ray_engine import run_ray

        failed, written = run_ray(rec, todo, stats, store, rows, batch_size=batch_size, chunk=chunk, vad=vad,
                                  progress=progress, address=address, actors=actors)
    else:
        failed, written = _run_local(rec, todo, stats, store, schema, rows, batch_size, chunk, vad, progress, speaker_of)
    return BatchSummary(len(paths), len(paths) - len(todo), len(todo), failed, written, time.perf_counter() - t0, repr(store))


def read_dataset(out: str | Path):
    """The dataset at ``out`` as one pyarrow Table."""
    pa, _ = _require_pyarrow()
    store = PartStore(out)
    parts = store.parts()
    if not parts:
        raise EmovoxError(f"{out}: no Parquet part files")
    return pa.concat_tables([store.read(p) for p in parts])


