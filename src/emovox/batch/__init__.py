"""Annotate whole audio archives into a Parquet dataset, resumably (:mod:`.local`; the same rows from a Ray cluster:
:mod:`.ray_engine`; the rows both write: :mod:`.rows`)."""
from __future__ import annotations

from .local import ENGINES, BatchSummary, done_keys, expand_batch_inputs, read_dataset, read_manifest, run_batch
from .rows import RowMaker, failed_inputs, file_duration, model_identity, output_schema

__all__ = ["ENGINES", "BatchSummary", "RowMaker", "done_keys", "expand_batch_inputs", "failed_inputs", "file_duration",
           "model_identity", "output_schema", "read_dataset", "read_manifest", "run_batch"]
