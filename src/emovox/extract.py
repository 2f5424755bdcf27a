"""Feature extraction over many files: parallel workers and an on-disk cache.

Cache entries are keyed by the file's content hash and the feature config's
digest, so renamed or moved files still hit the cache and a changed config
never returns stale features.
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AudioError
from .features import FeatureConfig, file_features


def default_cache_dir() -> Path:
    """``$EMOVOX_CACHE`` or ``$XDG_CACHE_HOME/emovox`` (``~/.cache/emovox``)."""
    if os.environ.get("EMOVOX_CACHE"):
        return Path(os.environ["EMOVOX_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emovox"


def content_hash(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class FeatureCache:
    """Spectrograms stored as ``.npy`` under ``root/features/<config digest>/``."""

    root: Path

    def path_for(self, key: str, cfg: FeatureConfig) -> Path:
        return self.root / "features" / cfg.digest() / key[:2] / f"{key}.npy"

    def get(self, key: str, cfg: FeatureConfig) -> np.ndarray | None:
        p = self.path_for(key, cfg)
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, cfg: FeatureConfig, spec: np.ndarray) -> None:
        p = self.path_for(key, cfg)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, spec, allow_pickle=False)
        os.replace(tmp, p)  # atomic: concurrent workers never see a half-written file


def features_for_file(path: str | Path, cfg: FeatureConfig, cache: FeatureCache | None = None) -> np.ndarray:
    """Spectrogram of one file, through the cache when one is given."""
    if cache is None:
        return file_features(path, cfg)
    try:
        key = content_hash(path)
    except OSError:
        return file_features(path, cfg)  # raises the specific AudioError
    spec = cache.get(key, cfg)
    if spec is None:
        spec = file_features(path, cfg)
        cache.put(key, cfg, spec)
    return spec


def _worker(args: tuple[str, FeatureConfig, Path | None]) -> tuple[np.ndarray | None, str | None]:
    path, cfg, root = args
    try:
        return features_for_file(path, cfg, FeatureCache(root) if root else None), None
    except AudioError as err:
        return None, str(err)


@dataclass
class Extracted:
    """Result of :func:`extract_features`: spectrograms (``None`` for failures) and errors by index."""

    specs: list[np.ndarray | None]
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> list[int]:
        return [i for i, s in enumerate(self.specs) if s is not None]


def extract_features(
    paths: Sequence[str | Path],
    cfg: FeatureConfig,
    *,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    desc: str = "features",
) -> Extracted:
    """Spectrograms of ``paths`` computed by ``workers`` processes (default: all cores).

    Files that fail are reported in ``errors`` (index -> message) and left
    as ``None``; the rest go on.
    """
    from tqdm.auto import tqdm

    root = Path(cache_dir) if cache_dir else default_cache_dir() if use_cache else None
    workers = max(1, workers or os.cpu_count() or 1)
    jobs = [(str(p), cfg, root) for p in paths]
    bar = tqdm(total=len(jobs), desc=desc, unit="file", disable=not progress, file=sys.stderr)
    out = Extracted([None] * len(jobs))
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
            for i, (spec, err) in enumerate(results):
                out.specs[i] = spec
                if err:
                    out.errors[i] = err
                bar.update()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return out
