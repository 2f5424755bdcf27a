"""Seeded waveform augmentation of training files, and the features of the copies.

Each augmented copy of a file passes through an ``audiomentations`` chain —
Gaussian noise at 10–30 dB SNR, gain ±6 dB, pitch shift ±3 semitones,
tempo 0.85–1.15 — seeded by the file's content and the copy number, so a
copy is the same on every run and its features can be cached like the
originals'. Copies only ever join the training part.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from .audio import load_audio
from .corpora.base import Utterance
from .errors import EmovoxError
from .extract import content_hash, extract_arrays
from .features import FeatureConfig, spectrogram

#: Bump when the chain changes: cached features of copies are keyed by it.
CHAIN_VERSION = "v1"


def augmenter():
    """The augmentation chain (needs ``pip install 'emovox[augment]'``)."""
    try:
        import audiomentations as A
    except ImportError:
        raise EmovoxError("augmentation needs the audiomentations package: pip install 'emovox[augment]'") from None
    return A.Compose([
        A.AddGaussianSNR(min_snr_db=10.0, max_snr_db=30.0, p=0.5),
        A.Gain(min_gain_db=-6.0, max_gain_db=6.0, p=0.5),
        A.PitchShift(min_semitones=-3.0, max_semitones=3.0, p=0.7),
        A.TimeStretch(min_rate=0.85, max_rate=1.15, p=0.5),
    ])


def augmented_signal(path: str | Path, copy: int, sample_rate: int = 16000) -> np.ndarray:
    """Copy number ``copy`` (1, 2 …) of the file at ``path``: decoded, then augmented with a seed of its own."""
    seed = (int(content_hash(path)[:8], 16) + 7919 * copy) % (2**32)
    random.seed(seed)  # audiomentations draws from the global generators
    np.random.seed(seed)
    y = augmenter()(samples=load_audio(path, sample_rate), sample_rate=sample_rate)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _spectrogram_of_copy(path: str, copy: int, cfg: FeatureConfig) -> np.ndarray:
    from .audio import prepare_signal

    y = prepare_signal(augmented_signal(path, copy, cfg.sample_rate), cfg.sample_rate, cfg.sample_rate,
                       trim=cfg.trim, top_db=cfg.top_db, duration=cfg.duration, source=f"{path} (augmented copy {copy})")
    return spectrogram(y, cfg)


def _functionals_of_copy(path: str, copy: int, name: str) -> np.ndarray:
    from .acoustic import ACOUSTIC_RATE, signal_functionals

    return signal_functionals(augmented_signal(path, copy, ACOUSTIC_RATE), ACOUSTIC_RATE, name, source=f"{path} (augmented copy {copy})")


def augmented_copies(
    utts: Sequence[Utterance], copies: int, features: FeatureConfig, acoustic: str | None = None, *,
    cache_dir: Path | None = None, workers: int | None = None, progress: bool = True,
) -> list[tuple[Utterance, np.ndarray, np.ndarray | None, str | None]]:
    """``(utterance, spectrogram, functionals or None, cache key)`` of every copy of every utterance.

    A copy's utterance keeps its emotion; its speaker becomes
    ``"<speaker>~aug<k>"``: pitch and tempo changes alter the voice, so
    speaker normalisation treats it as a voice of its own.
    """
    augmenter()  # fail early, with the install hint, when audiomentations is missing
    paths = [u.path for u in utts]
    out = []
    for k in range(1, copies + 1):
        ns = f"augmented-{CHAIN_VERSION}/{k}"
        opts = dict(cache_dir=cache_dir, use_cache=cache_dir is not None, workers=workers, progress=progress)
        specs = extract_arrays(paths, partial(_spectrogram_of_copy, copy=k, cfg=features), f"{ns}/features/{features.digest()}",
                               desc=f"augmented copy {k}", **opts)
        funcs = extract_arrays(paths, partial(_functionals_of_copy, copy=k, name=acoustic), f"{ns}/acoustic/{acoustic}",
                               desc=f"augmented copy {k}, {acoustic}", **opts) if acoustic else None
        errors = {**specs.errors, **(funcs.errors if funcs else {})}
        if errors:
            raise EmovoxError("augmentation failed: " + "; ".join(errors.values()))
        for i, u in enumerate(utts):
            key = f"{specs.keys[i]}-aug{CHAIN_VERSION}-{k}" if specs.keys[i] else None
            out.append((replace(u, speaker=f"{u.speaker}~aug{k}"), specs.specs[i], funcs.specs[i] if funcs else None, key))
    return out
