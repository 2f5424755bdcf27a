"""Spectrogram features and their conversion into CNN input images.

A :class:`FeatureConfig` is saved inside every checkpoint so that prediction
computes exactly what training computed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .audio import load_audio, prepare_signal
from .errors import EmovoxError
from .identity import digest

#: Floor of the log-mel dynamic range, in dB below the utterance's peak.
TOP_DB = 80.0


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes a spectrogram.

    Attributes:
        sample_rate: rate audio is resampled to, Hz.
        kind: ``"logmel"`` or ``"mfcc"``.
        n_mels: mel bands.
        n_fft: FFT size, samples.
        win_length: analysis window, samples (25 ms at 16 kHz).
        hop_length: frame step, samples (10 ms at 16 kHz).
        fmin, fmax: mel filterbank range, Hz (``fmax=None``: Nyquist).
        n_mfcc: coefficients when ``kind == "mfcc"``.
        trim: strip leading/trailing silence before analysis.
        top_db: trim threshold, dB below peak (60: only near-silence goes).
        duration: pad/crop to this many seconds; ``None`` keeps the length.
        image_size: side of the square image fed to the CNN.
    """

    sample_rate: int = 16000
    kind: str = "logmel"
    n_mels: int = 128
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    fmin: float = 20.0
    fmax: float | None = 8000.0
    n_mfcc: int = 40
    trim: bool = True
    top_db: float = 60.0
    duration: float | None = 3.0
    image_size: int = 224

    def __post_init__(self) -> None:
        ints = {"sample_rate": (1000, 384000), "n_mels": (8, 512), "n_fft": (16, 1 << 16), "win_length": (16, 1 << 16),
                "hop_length": (1, 1 << 16), "n_mfcc": (1, 512), "image_size": (32, 1024)}
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise EmovoxError(f"feature setting {name} must be a whole number from {lo} to {hi}, not {v!r}")
        for name in ("fmin", "fmax", "top_db", "duration"):
            v = getattr(self, name)
            if v is None and name in ("fmax", "duration"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise EmovoxError(f"feature setting {name} must be a non-negative number, not {v!r}")
        if not isinstance(self.trim, bool):
            raise EmovoxError(f"feature setting trim must be true or false, not {self.trim!r}")
        if self.duration is not None and self.duration > 600:
            raise EmovoxError(f"feature setting duration must be at most 600 s, not {self.duration}")
        if self.kind not in ("logmel", "mfcc"):
            raise EmovoxError(f"feature kind must be 'logmel' or 'mfcc', not {self.kind!r}")
        if self.win_length > self.n_fft:
            raise EmovoxError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.fmax is not None and self.fmax > self.sample_rate / 2:
            raise EmovoxError(f"fmax ({self.fmax}) is above the Nyquist frequency ({self.sample_rate / 2})")
        if self.duration is not None and self.duration <= 0:
            raise EmovoxError(f"duration must be positive or None, not {self.duration}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureConfig:
        if not isinstance(d, dict):
            raise EmovoxError(f"feature settings must be a JSON object, not {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes: Any) -> FeatureConfig:
        return replace(self, **changes)

    def digest(self) -> str:
        """Short stable hash, used as part of feature-cache keys."""
        return digest(self.to_dict(), length=16)


def spectrogram(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel (dB, ``[-80, 0]`` relative to the peak) or MFCC matrix ``(bands, frames)`` of ``y``."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        power=2.0,
    )
    logmel = librosa.power_to_db(mel, ref=np.max, top_db=TOP_DB)
    if cfg.kind == "mfcc":
        return librosa.feature.mfcc(S=logmel, n_mfcc=cfg.n_mfcc).astype(np.float32)
    return logmel.astype(np.float32)


def file_features(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """Decode ``path`` with ``cfg``'s audio settings and return its spectrogram."""
    y = load_audio(path, cfg.sample_rate, trim=cfg.trim, top_db=cfg.top_db, duration=cfg.duration)
    return spectrogram(y, cfg)


def signal_features(y: np.ndarray, sr: int, cfg: FeatureConfig, source: str = "<array>") -> np.ndarray:
    """Spectrogram of an in-memory signal sampled at ``sr``."""
    y = prepare_signal(y, sr, cfg.sample_rate, trim=cfg.trim, top_db=cfg.top_db, duration=cfg.duration, source=source)
    return spectrogram(y, cfg)


def to_image(
    spec: np.ndarray | torch.Tensor,
    size: int = 224,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    kind: str = "logmel",
) -> torch.Tensor:
    """Turn spectrogram(s) into normalised 3-channel images for an ImageNet CNN.

    ``spec`` is ``(bands, frames)`` or a batch ``(batch, bands, frames)``. Log-mel
    values (``kind="logmel"``, ``[-80, 0]`` dB) are scaled to ``[0, 1]``; other
    kinds (MFCC) are min-max scaled per image, low frequencies are put at the bottom, the image is
    resized to ``size x size`` and replicated on three channels, then
    normalised with the backbone's ``mean`` and ``std``.
    """
    x = torch.as_tensor(spec, dtype=torch.float32)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise EmovoxError(f"expected a (bands, frames) spectrogram or a batch of them, got shape {tuple(x.shape)}")
    if kind == "logmel":
        x = ((x + TOP_DB) / TOP_DB).clamp(0.0, 1.0)
    else:
        lo = x.amin(dim=(1, 2), keepdim=True)
        hi = x.amax(dim=(1, 2), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-6)
    x = x.flip(1)[:, None]  # (batch, 1, bands, frames), low frequencies at the bottom
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - m) / s
    return x[0] if single else x


def spec_images(specs, spec, features: FeatureConfig) -> torch.Tensor:
    """Spectrograms (a sequence of ``(bands, frames)`` arrays) -> normalised image batch for a CNN whose
    input normalisation is ``spec`` (an :class:`emovox.encoders.image.InputSpec`)."""
    if len({s.shape for s in specs}) > 1:
        return torch.stack([spec_images([s], spec, features)[0] for s in specs])
    return to_image(np.stack(specs), features.image_size, spec.mean, spec.std, features.kind)
