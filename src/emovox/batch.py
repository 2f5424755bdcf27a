"""Annotate whole audio archives into a Parquet dataset, resumably.

>>> from emovox import EmotionRecognizer
>>> from emovox.batch import run_batch
>>> rec = EmotionRecognizer.load()                                     # doctest: +SKIP
>>> run_batch(rec, ["calls/", "more.csv"], "calls.parquet")           # doctest: +SKIP

Output: a Parquet *dataset*, a folder of ``part-NNNNN.parquet`` files (pandas,
pyarrow, DuckDB and Spark read the folder as one table). One row per input:
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
"""
from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AudioError, EmovoxError, NoSpeechError

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer

PART_PREFIX = "part-"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".txt", ".lst")


@dataclass
class BatchSummary:
    """What a run did: inputs found, skipped as already done, annotated now, failed (an ``error`` row), rows written."""

    inputs: int
    skipped: int
    annotated: int
    failed: int
    rows: int
    seconds: float
    out: Path

    @property
    def files_per_s(self) -> float:
        return self.annotated / self.seconds if self.seconds else 0.0


def _require_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EmovoxError("emovox batch writes Parquet with pyarrow: pip install 'emovox[batch]'") from None
    return pa, pq


def read_manifest(path: Path) -> list[str]:
    """Paths listed in a CSV or Parquet manifest (column ``path``) or a text file (one per line).

    Relative paths are taken relative to the manifest's folder."""
    if path.suffix.lower() == ".parquet":
        _, pq = _require_pyarrow()
        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise EmovoxError(f"{path}: a manifest needs a 'path' column; it has {', '.join(table.column_names)}")
        items = [str(p) for p in table.column("path").to_pylist() if p]
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise EmovoxError(f"{path}: a manifest needs a 'path' column; it has {', '.join(reader.fieldnames or [])}")
            items = [row["path"] for row in reader if row.get("path")]
    else:
        items = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [p if Path(p).is_absolute() else str(path.parent / p) for p in items]


def expand_batch_inputs(items: Iterable[str | Path]) -> list[str]:
    """Audio files of folders (searched recursively), manifests (see :func:`read_manifest`) and single files, in order."""
    from .recognizer import expand_inputs

    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out.extend(read_manifest(p))
        else:
            out.extend(str(x) for x in expand_inputs([p]))
    return list(dict.fromkeys(out))  # each input once, first occurrence kept


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return int(st.st_size), int(st.st_mtime_ns)
    except OSError:
        return -1, -1


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob(f"{PART_PREFIX}*.parquet"))


def done_keys(out: Path) -> set[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of every input already in the dataset at ``out``."""
    if not out.is_dir():
        return set()
    _, pq = _require_pyarrow()
    keys: set[tuple[str, int, int]] = set()
    for part in _parts(out):
        t = pq.read_table(part, columns=["path", "size", "mtime_ns"])
        keys.update(zip(t.column("path").to_pylist(), t.column("size").to_pylist(), t.column("mtime_ns").to_pylist()))
    return keys


def model_identity(rec: EmotionRecognizer) -> str:
    """Backbone name and a short digest of the model's weights and labels (what produced a row)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(rec.model.state_dict().items()):
        if name.startswith(("head", "speaker_head")):
            h.update(name.encode())
            h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    h.update(",".join(rec.labels).encode())
    h.update(repr(rec.model.temperature).encode())
    spec = rec.config.get("encoders") or [{}]
    h.update(str(spec[0].get("weights_sha256", "")).encode())
    return f"{rec.model.backbone}:{h.hexdigest()[:16]}"


def _schema(pa, labels: Sequence[str], segments: bool):
    fields = [("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())]
    if segments:
        fields += [("start", pa.float64()), ("end", pa.float64())]
    fields += [("label", pa.string()), ("confidence", pa.float64())]
    fields += [(f"prob_{lab}", pa.float64()) for lab in labels]
    fields += [("uncertain", pa.bool_()), ("no_speech", pa.bool_()), ("duration", pa.float64()), ("model", pa.string()),
               ("error", pa.string())]
    return pa.schema(fields)


def _write_part(out: Path, rows: list[dict[str, Any]], schema, pa, pq) -> Path:
    index = len(_parts(out))
    while (out / f"{PART_PREFIX}{index:05d}.parquet").exists():
        index += 1
    final = out / f"{PART_PREFIX}{index:05d}.parquet"
    tmp = out / f".{final.name}.tmp"
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def _duration(path: str) -> float | None:
    import soundfile as sf

    try:
        return float(sf.info(path).duration)
    except Exception:
        return None


def _file_rows(rec: EmotionRecognizer, paths: Sequence[str], stats: dict[str, tuple[int, int]], batch_size: int,
               threshold: float, model: str, segments: bool, vad: str = "auto") -> Iterator[list[dict[str, Any]]]:
    """Rows of every input (a list per input, in order); ``stats``: each path's ``(size, mtime_ns)``."""
    labels = rec.labels
    empty = {f"prob_{lab}": None for lab in labels}

    def base(path: str) -> dict[str, Any]:
        size, mtime = stats[path]
        return {"path": path, "size": size, "mtime_ns": mtime, "model": model, "duration": _duration(path)}

    def error_row(path: str, err: Exception, no_speech: bool = False) -> dict[str, Any]:
        problem = err.problem if isinstance(err, AudioError) else str(err)
        row = base(path) | {"label": None, "confidence": None, "uncertain": None, "no_speech": no_speech, "error": problem} | empty
        if segments:
            row |= {"start": None, "end": None}
        return row

    if segments:
        for path in paths:
            try:
                tl = rec.timeline(path, vad=vad)
            except AudioError as err:
                yield [error_row(path, err)]
                continue
            if not tl.segments:
                yield [error_row(path, EmovoxError(tl.message or "no speech found"), no_speech=True)]
                continue
            b = base(path) | {"duration": tl.duration}
            yield [b | {"start": s.start, "end": s.end, "label": s.label, "confidence": s.confidence,
                        "uncertain": s.confidence < threshold, "no_speech": False, "error": None}
                   | {f"prob_{lab}": s.probabilities[lab] for lab in labels} for s in tl.segments]
        return
    for path, result in zip(paths, rec.predict_files(paths, batch_size=batch_size)):
        if isinstance(result, AudioError):
            yield [error_row(path, result, no_speech=isinstance(result, NoSpeechError))]
            continue
        yield [base(path) | {"label": result.label, "confidence": result.confidence, "uncertain": result.confidence < threshold,
                             "no_speech": False, "error": None} | {f"prob_{lab}": result.probabilities[lab] for lab in labels}]


def run_batch(
    rec: EmotionRecognizer,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    segments: bool = False,
    batch_size: int = 32,
    chunk: int = 512,
    uncertain_below: float = 0.4,
    vad: str = "auto",
    progress: bool = True,
) -> BatchSummary:
    """Annotate ``inputs`` (files, folders, manifests) into the Parquet dataset ``out`` (see the module docstring).

    ``vad``: the voice-activity detector of the timelines (``segments=True``)."""
    pa, pq = _require_pyarrow()
    if chunk < 1:
        raise EmovoxError(f"chunk must be at least 1 input, not {chunk}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EmovoxError(f"{out}: exists and is not a folder; emovox batch writes a Parquet dataset (a folder of part files)")
    t0 = time.perf_counter()
    paths = expand_batch_inputs(inputs)
    if not paths:
        raise EmovoxError("no audio files found in the inputs")
    model = model_identity(rec)
    schema = _schema(pa, rec.labels, segments)
    if out.is_dir() and _parts(out):
        existing = pq.read_schema(_parts(out)[0])
        if existing.names != schema.names:
            raise EmovoxError(f"{out}: holds a dataset with other columns (another model's labels, or segments "
                              f"{'on' if 'start' in existing.names else 'off'}); write to another folder")
    done = done_keys(out)
    stats = {p: _stat(p) for p in paths}  # stat once: the resume key and the row agree
    todo = [p for p in paths if (p, *stats[p]) not in done]
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".{PART_PREFIX}*.tmp"):  # a part being written when a previous run was killed
        stale.unlink()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="file", desc="emovox batch", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    rows: list[dict[str, Any]] = []
    pending = annotated = failed = written = 0
    try:
        for file_rows in _file_rows(rec, todo, stats, batch_size, uncertain_below, model, segments, vad):
            rows.extend(file_rows)
            annotated += 1
            pending += 1
            failed += any(r["error"] is not None and not r["no_speech"] for r in file_rows)
            bar.update(1)
            if pending >= chunk:
                _write_part(out, rows, schema, pa, pq)
                written += len(rows)
                rows, pending = [], 0
        if rows:
            _write_part(out, rows, schema, pa, pq)
            written += len(rows)
    finally:
        bar.close()
    return BatchSummary(len(paths), len(paths) - len(todo), annotated, failed, written, time.perf_counter() - t0, out)


def read_dataset(out: str | Path):
    """The dataset at ``out`` as one pyarrow Table."""
    pa, pq = _require_pyarrow()
    parts = _parts(Path(out))
    if not parts:
        raise EmovoxError(f"{out}: no Parquet part files")
    return pa.concat_tables([pq.read_table(p) for p in parts])


__all__ = ["BatchSummary", "done_keys", "expand_batch_inputs", "model_identity", "read_dataset", "read_manifest", "run_batch"]
