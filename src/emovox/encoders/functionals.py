"""Acoustic functionals (openSMILE) as an encoder.

A fixed-size vector of hand-crafted acoustic statistics per utterance —
pitch, loudness, voice quality, spectral shape, each summarised over the
whole utterance whatever its length — complements the CNN's image features.
The ``opensmile`` package computes them; its two standard sets:

- ``compare``: ComParE 2016, 6,373 functionals (the stronger one here);
- ``egemaps``: eGeMAPS v02, 88 functionals (small and interpretable).

"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.decode import load_audio, prepare_signal
from ..errors import EmovoxError, ModelError
from .base import Encoder, Preparer, register

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


def compress(functionals: np.ndarray) -> np.ndarray:
    """Signed ``log1p`` of functionals: their raw scales span 15 orders of magnitude, this brings them within ±30."""
    f = np.asarray(functionals, dtype=np.float64)
    return (np.sign(f) * np.log1p(np.abs(f))).astype(np.float32)


@dataclass(frozen=True)
class FunctionalsPreparer(Preparer):
    """A signal -> its openSMILE functionals (over the whole signal, as decoded: no trimming)."""

    feature_set: str = "compare"
    cached = True

    def __call__(self, y: np.ndarray, sr: int, source: str = "<array>") -> np.ndarray:
        return signal_functionals(y, sr, self.feature_set, source=source)


@register
class FunctionalsEncoder(Encoder):
    """openSMILE functionals of an utterance, compressed (:func:`compress`) to a scale a linear head can read.
    No weights, nothing to run on ONNX: the work is in its preparer."""

    kind = "functionals"
    batch_size = 256
    NAMES = {"compare": "openSMILE ComParE 2016 functionals (6,373-d)", "egemaps": "openSMILE eGeMAPS v02 functionals (88-d)"}

    def __init__(self, name: str):
        super().__init__(_check(name))

    @classmethod
    def handles(cls, name: str) -> bool:
        return name in ACOUSTIC_SETS

    @classmethod
    def pretrained(cls, name: str, weights: Any = "pretrained", **settings: Any) -> FunctionalsEncoder:
        return cls(name)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FunctionalsEncoder:
        try:
            return cls(spec["name"])
        except EmovoxError as err:
            raise ModelError(str(err)) from None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "dim": self.dim, "rate": ACOUSTIC_RATE}

    @property
    def dim(self) -> int:
        return acoustic_dim(self.name)

    def preparer(self) -> FunctionalsPreparer:
        return FunctionalsPreparer(ACOUSTIC_RATE, self.name)

    def encode(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(inputs):
            return torch.zeros((0, self.dim))
        return torch.from_numpy(compress(np.stack(inputs)))
