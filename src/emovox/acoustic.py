"""Acoustic functionals (openSMILE) and speaker normalisation of feature vectors.

A fixed-size vector of hand-crafted acoustic statistics per utterance —
pitch, loudness, voice quality, spectral shape, each summarised over the
whole utterance whatever its length — complements the CNN's image features.
The ``opensmile`` package computes them; its two standard sets:

- ``compare``: ComParE 2016, 6,373 functionals (the stronger one here);
- ``egemaps``: eGeMAPS v02, 88 functionals (small and interpretable).

Speaker normalisation (:func:`speaker_normalize`) z-scores each speaker's
vectors by that speaker's own mean and spread, removing much of what makes
one voice differ from another (pitch range, timbre, recording channel) while
keeping how the voice changes with emotion.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from .audio import load_audio, prepare_signal
from .errors import EmovoxError
from .extract import Extracted, extract_arrays

#: Sample rate the functionals are computed at.
ACOUSTIC_RATE = 16000
#: emovox name -> (openSMILE feature set, dimension)
ACOUSTIC_SETS = {"compare": ("ComParE_2016", 6373), "egemaps": ("eGeMAPSv02", 88)}

_SMILE: dict[str, object] = {}


def acoustic_dim(name: str) -> int:
    """Length of the vectors of feature set ``name``."""
    return ACOUSTIC_SETS[_check(name)][1]


def _check(name: str) -> str:
    if name not in ACOUSTIC_SETS:
        raise EmovoxError(f"unknown acoustic feature set {name!r}; choose from {', '.join(ACOUSTIC_SETS)}")
    return name


def _smile(name: str):
    if name not in _SMILE:
        try:
            import opensmile
        except ImportError:
            raise EmovoxError("acoustic features need the opensmile package: pip install 'emovox[acoustic]'") from None
        _SMILE[name] = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, ACOUSTIC_SETS[name][0]),
                                       feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE[name]


def signal_functionals(y: np.ndarray, sr: int, name: str = "compare", source: str = "<array>") -> np.ndarray:
    """Functionals ``(dim,)`` of a signal (any rate and channel count; resampled to 16 kHz mono)."""
    _check(name)
    return _functionals(prepare_signal(y, sr, ACOUSTIC_RATE, source=source), name)


def file_functionals(path: str | Path, name: str = "compare") -> np.ndarray:
    """Functionals ``(dim,)`` of an audio file, over its whole length."""
    _check(name)
    return _functionals(load_audio(path, ACOUSTIC_RATE), name)


def _functionals(y: np.ndarray, name: str) -> np.ndarray:
    x = _smile(name).process_signal(y, ACOUSTIC_RATE).to_numpy()[0].astype(np.float32)
    # A few functionals are undefined on degenerate input (e.g. no voiced frame): neutral zeros, not NaN.
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def extract_functionals(
    paths: Sequence[str | Path], name: str = "compare", *, workers: int | None = None, cache_dir: str | Path | None = None,
    use_cache: bool = True, progress: bool = True,
) -> Extracted:
    """Functionals of many files in parallel, cached by file content (like the spectrograms)."""
    _check(name)
    return extract_arrays(paths, partial(file_functionals, name=name), f"acoustic/{name}-{ACOUSTIC_RATE}",
                          workers=workers, cache_dir=cache_dir, use_cache=use_cache, progress=progress, desc=f"{name} functionals")


def speaker_normalize(x: np.ndarray, groups: Sequence[object] | None = None, floor: float = 0.01) -> np.ndarray:
    """Z-score the rows of ``x`` within each group (speaker) of ``groups``.

    ``groups=None`` treats all rows as one speaker. A group of one row
    becomes zeros (it carries no information about its speaker's range), so
    normalise only groups of several recordings. A dimension's spread within
    a group is floored at ``floor`` times its spread over all rows, so a
    dimension nearly constant for one speaker does not explode.
    """
    x = np.asarray(x, dtype=np.float64)
    keys = np.zeros(len(x), dtype=int) if groups is None else np.asarray([str(g) for g in groups])
    if len(keys) != len(x):
        raise EmovoxError(f"{len(keys)} speaker labels for {len(x)} feature vectors")
    low = floor * x.std(0) + 1e-8
    out = np.empty_like(x)
    for key in np.unique(keys):
        rows = keys == key
        part = x[rows]
        out[rows] = (part - part.mean(0)) / np.maximum(part.std(0), low)
    return out.astype(np.float32)


def compress(functionals: np.ndarray) -> np.ndarray:
    """Signed ``log1p`` of functionals: their raw scales span 15 orders of magnitude, this brings them within ±30."""
    f = np.asarray(functionals, dtype=np.float64)
    return (np.sign(f) * np.log1p(np.abs(f))).astype(np.float32)
