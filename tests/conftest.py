"""Shared fixtures: synthetic audio written by the tests, and the real corpora when present."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(os.environ.get("EMOVOX_TEST_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

#: Synthetic "emotions": each is a harmonic tone at its own pitch with its own vibrato rate.
TONES = {"angry": (320.0, 9.0), "neutral": (180.0, 0.0), "sad": (120.0, 3.0)}


def tone(f0: float, vibrato: float, sr: int = 16000, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """A voiced-like harmonic tone with vibrato, noise and a fade in/out."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f = f0 * (1 + rng.uniform(-0.05, 0.05)) * (1 + 0.03 * np.sin(2 * np.pi * vibrato * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.minimum(1, np.minimum(t, t[::-1]) / 0.1)
    y = 0.3 * y * env + 0.005 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def write_tone_corpus(root: Path, n_per_class: int = 12, speakers: tuple[str, ...] = ("s1", "s2", "s3", "s4")) -> Path:
    """A folder-per-emotion corpus ``root/<emotion>/<speaker>/<n>.wav`` of synthetic tones."""
    for emo, (f0, vib) in TONES.items():
        for i in range(n_per_class):
            spk = speakers[i % len(speakers)]
            p = root / emo / spk / f"{emo}_{i:02d}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, tone(f0, vib, seed=zlib.crc32(f"{emo}-{i}".encode())), 16000)
    return root


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    p = tmp_path / "tone.wav"
    sf.write(p, tone(200.0, 5.0), 16000)
    return p


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def corpus_dir(name: str) -> Path:
    d = SHARED_DATA / name
    if not d.is_dir():
        pytest.skip(f"real {name} data not found at {d}")
    return d


@pytest.fixture
def tess_dir() -> Path:
    return corpus_dir("tess")


@pytest.fixture
def ravdess_dir() -> Path:
    return corpus_dir("ravdess")
