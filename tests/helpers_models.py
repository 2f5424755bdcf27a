"""Small models for the segment, service and browser tests (built once per test session)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import TONES, tone, write_tone_corpus

#: Features of the test models: short clips, small images (fast on a CPU).
SMALL = dict(duration=1.0, image_size=64)

_cache: dict[str, Path] = {}


def random_model(root: Path, labels: tuple[str, ...] = ("angry", "happy", "neutral", "sad"), normalize: str = "none") -> Path:
    """A randomly initialised model: for plumbing tests only (its predictions mean nothing). ``normalize="speaker"``
    gives it a speaker-normalised head too."""
    from emovox.features import FeatureConfig
    from emovox.model import EmotionClassifier, save_model

    key = f"random:{root}:{normalize}"
    if key not in _cache:
        model = EmotionClassifier("efficientnet_lite0", list(labels), weights=None, normalize=normalize)
        name = "random-model" if normalize == "none" else f"random-{normalize}-model"
        _cache[key] = save_model(model, root / name, FeatureConfig(**SMALL))
    return _cache[key]


def tone_model(root: Path) -> Path:
    """A model trained on the synthetic tone corpus (angry/neutral/sad tones); trained once per session."""
    from emovox.corpora import load_folder
    from emovox.features import FeatureConfig
    from emovox.training.train import TrainConfig, train

    if "tone" not in _cache:
        corpus = write_tone_corpus(root / "tone-corpus")
        out = root / "tone-run"
        # no familiarity gate: plumbing tests feed it other synthetic sounds (the browser's fake microphone beep);
        # the gate itself is tested in test_ood.py
        train(load_folder(corpus), out, TrainConfig(epochs=10, lr=3e-3, split="all", familiarity=False), FeatureConfig(**SMALL),
              workers=1, use_cache=False, progress=False, overwrite=True, log=lambda m: None)
        _cache["tone"] = out / "model"
    return _cache["tone"]


def tone_signal(emotion: str, seconds: float, sr: int = 16000, seed: int = 1) -> np.ndarray:
    """A synthetic tone of one of the corpus' emotions."""
    f0, vib = TONES[emotion]
    return tone(f0, vib, sr=sr, seconds=seconds, seed=seed)


def quiet(seconds: float, sr: int = 16000, level: float = 0.003, seed: int = 2) -> np.ndarray:
    """Low background noise (no speech)."""
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)
