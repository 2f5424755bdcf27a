"""Feature extraction over many files: parallel workers and an on-disk cache.

Cache entries are keyed by the file's content hash and the feature config's
digest, so renamed or moved files still hit the cache and a changed config
never returns stale features.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import ArrayCache, content_hash, default_cache_dir
from ..errors import AudioError


def _worker(args: tuple[str, Callable[[str], np.ndarray], str, Path | None]) -> tuple[np.ndarray | None, str | None, str | None]:
    """(array, error, content key) of one file, through the cache when ``root`` is set."""
    path, compute, namespace, root = args
    key = None
    try:
        if root is not None:
            try:
                key = content_hash(path)
            except OSError:
                key = None  # compute() below raises the specific AudioError
        cache = ArrayCache(root, namespace) if root is not None and key else None
        arr = cache.get(key) if cache else None
        if arr is None:
            arr = compute(path)
            if cache:
                cache.put(key, arr)
        return arr, None, key
    except AudioError as err:
        return None, str(err), key


@dataclass
class Extracted:
    """Result of :func:`extract_arrays`: arrays (``None`` for failures) and errors by index."""

    specs: list[np.ndarray | None]
    errors: dict[int, str] = field(default_factory=dict)
    #: content hashes of the files (``None`` where the cache was off or the file unreadable)
    keys: list[str | None] = field(default_factory=list)

    @property
    def ok(self) -> list[int]:
        return [i for i, s in enumerate(self.specs) if s is not None]


def extract_arrays(
    paths: Sequence[str | Path],
    compute: Callable[[str], np.ndarray],
    namespace: str,
    *,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    desc: str = "features",
) -> Extracted:
    """``compute(path)`` for every path, in ``workers`` processes, cached under ``namespace``.

    ``compute`` must be picklable (a module-level function or a ``partial`` of
    one) and raise :class:`AudioError` for unusable files.
    """
    from tqdm.auto import tqdm

    root = Path(cache_dir) if cache_dir else default_cache_dir() if use_cache else None
    workers = max(1, workers or os.cpu_count() or 1)
    jobs = [(str(p), compute, namespace, root) for p in paths]
    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress, file=sys.stderr)
    out = Extracted([None] * len(jobs), keys=[None] * len(jobs))
    with bar:
        if workers == 1 or len(jobs) < 8:
            results = map(_worker, jobs)
            pool = None
        else:
            import multiprocessing as mp

            # fork: no re-import of the caller's __main__ (scripts without a main guard
            # work) and no second import of librosa; workers touch no torch state.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method))
            results = pool.map(_worker, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 8))))
        try:
            for i, (spec, err, key) in enumerate(results):
                out.specs[i] = spec
                out.keys[i] = key
                if err:
                    out.errors[i] = err
                bar.update()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return out
