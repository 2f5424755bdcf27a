"""The ``ray`` engine of :func:`emovox.batch.run_batch`: a Ray Data pipeline over a local or remote cluster.

    inputs ──▶ decode (CPU tasks) ──▶ model (actor pool, one recognizer per actor) ──▶ Parquet parts (write tasks)

* **decode**: :class:`emovox.inference.frontend.Frontend` in stateless tasks: read the file (path or URL), check it
  holds speech, compute what the network reads (the trimmed 16 kHz signal of a speech encoder, or a
  spectrogram). Bad files become error rows here.
* **model**: a pool of actors, each loading the recognizer once (ONNX Runtime where the model uses it, as
  ``emovox predict`` does) and running it on batches of decoded inputs. With ``segments=True`` the actors
  run the whole timeline of each file (voice activity, windows, model).
* **write**: every block of at least ``chunk`` rows becomes a part file, written atomically by a Ray task
  into the same dataset the local engine writes (:class:`emovox.storage.PartStore`).

Ray Data streams: blocks flow through the stages as they are ready and backpressure bounds what is in
flight, so memory does not grow with the archive. Inputs are the paths the driver lists; every node must
reach them (a shared filesystem or an object-store URL), and the model folder (the bundled model ships
inside the package).
"""
from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudioError, EmovoxError, ModelError, NoSpeechError, UnknownSoundError
from ..storage import run_id, text_name
from .rows import failed_inputs, file_duration, model_identity, output_schema

if TYPE_CHECKING:
    from ..inference.frontend import Frontend
    from ..inference.recognizer import EmotionRecognizer
    from ..storage import PartStore
    from .rows import RowMaker


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EmovoxError("the ray engine needs Ray Data: pip install 'emovox[ray]'") from None
    return ray


def _decode(batch, frontend: Frontend, segments: bool):
    """Decode stage (a Ray task): adds ``duration``, ``error``, ``no_speech`` and the prepared inputs ``x`` (one per
    encoder: raw float32 bytes, shapes ``x_shape``) to a block of ``path, size, mtime_ns``."""
    import pyarrow as pa

    paths = [os.fsdecode(b) for b in batch.column("fs_path").to_pylist()]  # names as the filesystem holds them
    durations, errors, no_speech, xs, shapes = [], [], [], [], []
    for path in paths:
        durations.append(file_duration(path))
        x = shape = err = None
        if not segments:  # a timeline is computed whole by the model stage
            try:
                prep = frontend.prepare(path)
                x = [np.ascontiguousarray(a, dtype=np.float32).tobytes() for a in prep.inputs]
                shape = [list(np.shape(a)) for a in prep.inputs]
            except AudioError as e:
                err = e
        errors.append(None if err is None else err.problem)
        no_speech.append(isinstance(err, NoSpeechError))
        xs.append(x)
        shapes.append(shape)
    return batch.append_column("duration", pa.array(durations, pa.float64())) \
        .append_column("error", pa.array(errors, pa.string())) \
        .append_column("no_speech", pa.array(no_speech, pa.bool_())) \
        .append_column("x", pa.array(xs, pa.list_(pa.large_binary()))) \
        .append_column("x_shape", pa.array(shapes, pa.list_(pa.list_(pa.int64()))))


class _Predict:
    """Model stage (a Ray actor): one recognizer, loaded once, scoring blocks of decoded inputs."""

    def __init__(self, origin: dict[str, str], speech_gate: str, min_speech_s: float, threads: int | None,
                 rows: RowMaker, batch_size: int, vad: str):
        import torch

        from ..inference.recognizer import EmotionRecognizer

        if threads:
            torch.set_num_threads(threads)
        self.rec = EmotionRecognizer.load(origin["path"], engine=origin["engine"], ood_gate=bool(origin.get("ood_gate", True)),
                                          speech_gate=speech_gate,
                                          min_speech_s=min_speech_s, threads=threads)
        found = model_identity(self.rec)
        if found != rows.model:
            raise ModelError(f"{origin['path']}: the model on this worker ({found}) is not the one the job started with "
                             f"({rows.model}); every node needs the same model folder")
        self.rows, self.batch_size, self.vad = rows, batch_size, vad
        self.schema = output_schema(rows.labels, rows.segments, rows.speakers)

    def _prepared(self, r: dict[str, Any]):
        from ..inference.frontend import Prepared

        inputs = tuple(np.frombuffer(b, dtype=np.float32).reshape(shape) for b, shape in zip(r["x"], r["x_shape"]))
        return Prepared(inputs, r["path"])

    def __call__(self, batch):
        import pyarrow as pa

        rows = self.rows
        out: list[dict[str, Any]] = []
        records = batch.to_pylist()
        if rows.segments:
            for r in records:
                base = rows.base(r["path"], r["size"], r["mtime_ns"], r["duration"])
                try:
                    out += rows.timeline(base, self.rec.timeline(os.fsdecode(r["fs_path"]), vad=self.vad,
                                                                 speakers=rows.voices))
                except AudioError as err:
                    out += rows.error(base, err)
            return pa.Table.from_pylist(out, schema=self.schema)
        items: dict[int, Any] = {}
        vectors: dict[int, Any] = {}
        for k, r in enumerate(records):
            if r["error"] is None:
                try:
                    items[k] = self._prepared(r)
                    vectors[k] = self.rec.vectors([items[k]]).numpy()  # one by one: a bad input fails alone
                except AudioError as err:
                    items.pop(k)
                    r["error"], r["no_speech"] = err.problem, isinstance(err, NoSpeechError)
        answers: dict[int, Any] = {}
        if items:
            scores = self.rec.score(list(items.values()), vectors=np.concatenate(list(vectors.values())))
            answers = {k: self.rec.answer(scores, i, records[k]["path"]) for i, k in enumerate(items)}
        for k, r in enumerate(records):
            base = rows.base(r["path"], r["size"], r["mtime_ns"], r["duration"])
            if k in answers:  # a prediction, or a "no speech" row with its score (unlike any speech the model knows)
                a = answers[k]
                out += rows.error(base, a) if isinstance(a, UnknownSoundError) else rows.prediction(base, a)
            else:
                err = (NoSpeechError if r["no_speech"] else AudioError)(r["path"], r["error"])
                out += rows.error(base, err)
        return pa.Table.from_pylist(out, schema=self.schema)


def _sink(store: PartStore, run: str, chunk_rows: int):
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class PartSink(Datasink):
        """Each write task writes its blocks as one part file, atomically; reports rows and failed inputs."""

        def __init__(self):
            self.rows = self.failed = 0

        @property
        def min_rows_per_write(self) -> int:
            return chunk_rows

        def write(self, blocks, ctx) -> dict[str, int]:
            import pyarrow as pa

            tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return {"rows": 0, "failed": 0}
            table = pa.concat_tables(tables)
            store.write(table, f"{run}-{ctx.task_idx:05d}-{os.urandom(3).hex()}")
            failed = failed_inputs(table.select(["path", "error", "no_speech"]).to_pylist())
            return {"rows": table.num_rows, "failed": len(failed)}

        def on_write_complete(self, write_result) -> None:
            for r in write_result.write_returns:
                self.rows += r["rows"]
                self.failed += r["failed"]

    return PartSink()


def run_ray(rec: EmotionRecognizer, todo: list[str], stats: dict[str, tuple[int, int]], store: PartStore, rows: RowMaker,
            *, batch_size: int = 32, chunk: int = 512, vad: str = "auto", progress: bool = True,
            address: str | None = None, actors: int | None = None, decode_cpus: float = 0.25,
            threads_per_actor: int | None = None, in_flight_mb: int | None = None) -> tuple[int, int]:
    """Annotate ``todo`` into ``store`` on Ray; returns ``(failed inputs, rows written)``.

    ``address``: the cluster (``ray://host:10001``, ``host:6379`` or ``auto``); default ``$RAY_ADDRESS``, else a
    local instance started here and shut down at the end (one already running in this process is used as
    it is). ``actors``: model replicas (default: one per 2 CPUs of the cluster, at least 1); each gets an
    equal share of the CPUs left after ``decode_cpus`` per decode task, and uses ``threads_per_actor``
    intra-op threads (default: its CPU share, rounded up). ``in_flight_mb``: the object-store memory the
    pipeline's blocks may hold at once (default: 64 MB per actor, at least 256 MB; Ray Data's backpressure
    keeps decoding from running far ahead of the model).
    """
    ray = _require_ray()

    if rec.origin is None:
        raise EmovoxError("the ray engine loads the model on every worker: load it from a folder (EmotionRecognizer.load)")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=True, configure_logging=True)
    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in ("enable_progress_bars", "print_on_execution_start") if hasattr(ctx, k)}
    saved_limits = ctx.execution_options.resource_limits
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        n_actors = actors or max(1, int(cpus // 2))
        for k in saved:  # no progress bars when asked; no plan printed at the start either way
            setattr(ctx, k, progress if k == "enable_progress_bars" else False)
        # Backpressure: decoding is far quicker than the model; without a cap, decoded blocks would pile up
        # in the object store (Ray's default budget is a share of the node's memory) ahead of the actors.
        budget = in_flight_mb or max(256, 64 * n_actors)
        ctx.execution_options.resource_limits = ray.data.ExecutionResources(object_store_memory=budget * 2**20)
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        actor_cpus = max(0.1, (cpus - decode_cpus) / n_actors)
        threads = threads_per_actor or max(1, math.ceil(actor_cpus))
        # Arrow strings must be UTF-8: the name's bytes travel beside its text form (see storage.text_name)
        records = [{"path": text_name(p), "fs_path": os.fsencode(p), "size": stats[p][0], "mtime_ns": stats[p][1]}
                   for p in todo]
        ds = ray.data.from_items(records, override_num_blocks=max(1, math.ceil(len(records) / batch_size)))
        ds = ds.map_batches(_decode, batch_format="pyarrow", batch_size=batch_size, num_cpus=decode_cpus,
                            fn_kwargs={"frontend": rec.frontend, "segments": rows.segments})
        ds = ds.map_batches(_Predict, batch_format="pyarrow", batch_size=batch_size, num_cpus=actor_cpus,
                            compute=ray.data.ActorPoolStrategy(size=n_actors),
                            fn_constructor_kwargs={"origin": rec.origin, "speech_gate": rec.speech_gate,
                                                   "min_speech_s": rec.min_speech_s, "threads": threads, "rows": rows,
                                                   "batch_size": batch_size, "vad": vad})
        sink = _sink(store, run_id(), chunk)
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.05})
        return sink.failed, sink.rows
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        ctx.execution_options.resource_limits = saved_limits
        if started:
            ray.shutdown()


__all__ = ["run_ray"]
