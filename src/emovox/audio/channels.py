"""Recording channels, simulated: what happens to speech between a mouth and a file.

A :class:`Channel` is a chain of steps applied to a mono waveform, each drawing its settings from a seeded
generator, so a channel copy of a clip is the same on every run (and can be cached):

- ``room``: an image-source room of random size, reverberation time and talker distance (``pyroomacoustics``);
- ``telephone``: 300-3400 Hz band-pass and the GSM full-rate codec at 8 kHz (``pedalboard``);
- ``narrowband``: resampled to 8 kHz and back, a cheap headset or VoIP leg (``pedalboard``);
- ``mp3``: MP3 at a low bit rate, about 24-48 kbit/s (``pedalboard``, LAME VBR);
- ``compress``: a fast dynamic-range compressor, as phones and conferencing tools apply (``pedalboard``);
- ``babble``: other voices (:func:`babble`) mixed in at an SNR;
- ``noise``: white, pink or brown noise at an SNR;
- ``gain`` and ``clip``: level changes and hard clipping.

:data:`CHANNELS` names the chains the benchmark measures (``telephone``, ``mp3``, ``room``, ``babble``, ``far``:
room + babble + telephone, ...); :func:`training_channel` draws the chain of one training copy from the same
families with wider ranges. Needs ``pip install 'emovox[augment]'`` (pyroomacoustics, pedalboard).

>>> import numpy as np
>>> y = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
>>> out = CHANNELS["noise"].apply(y, 16000, seed=1)
>>> out.shape == y.shape and out.dtype == np.float32
True
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import EmovoxError

#: Draws ``n`` other voices (waveforms at the channel's rate) for babble: ``voices(rng, n, sample_rate)``.
VoicePool = Callable[[np.random.Generator, int, int], Sequence[np.ndarray]]


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise EmovoxError(f"channel simulation needs {module}: pip install 'emovox[augment]'") from None


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def mix_at_snr(speech: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + other`` with ``other`` scaled to ``snr_db`` below the speech (by RMS; ``other`` tiled or cut to fit)."""
    if not len(speech):
        return speech
    other = np.resize(other, len(speech)) if len(other) else np.zeros_like(speech)
    s, o = _rms(speech), _rms(other)
    if s == 0 or o == 0:
        return speech
    return (speech + other * (s / o) * 10 ** (-snr_db / 20)).astype(np.float32)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``white``, ``pink`` (1/f) or ``brown`` (1/f^2) noise, unit RMS."""
    power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f ** (power / 2), n)
    return (y / (np.std(y) or 1.0)).astype(np.float32)


@lru_cache(maxsize=256)
def room_response(seed: int, rt60: float, distance: float, sample_rate: int) -> np.ndarray:
    """The impulse response from a talker ``distance`` m from the microphone in a shoebox room with reverberation
    time ``rt60`` s (size and positions drawn from ``seed``; ``pyroomacoustics``' image-source method). Cached."""
    pra = _need("pyroomacoustics")
    rng = np.random.default_rng(seed)
    for _ in range(20):
        dims = np.array([rng.uniform(4.0, 10.0), rng.uniform(3.5, 8.0), rng.uniform(2.5, 3.5)])
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # a room too large for so short a reverberation time: draw another
            continue
        mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(0.7, 1.5)])
        angle = rng.uniform(0, 2 * np.pi)
        src = mic + np.array([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(0.0, 0.5)])
        if np.all(src > 0.3) and np.all(src < dims - 0.3):
            break
    else:
        raise EmovoxError(f"no room fits RT60 {rt60:.2f} s and distance {distance:.1f} m")
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(int(order), 14))
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return (rir / (np.max(np.abs(rir)) or 1.0)).astype(np.float32)


# --- steps: each is ``(y, sr, rng, voices) -> y`` with its settings drawn from ``rng`` -----------------------------

@dataclass(frozen=True)
class Room:
    rt60: tuple[float, float] = (0.4, 0.8)
    distance: tuple[float, float] = (1.5, 3.0)
    rooms: int = 64  # responses drawn from a bank of this many rooms per setting (cached)

    def __call__(self, y, sr, rng, voices):
        rt60 = round(float(rng.uniform(*self.rt60)), 1)
        dist = round(float(rng.uniform(*self.distance)), 1)
        h = room_response(int(rng.integers(self.rooms)), rt60, dist, sr)
        from scipy.signal import fftconvolve

        out = fftconvolve(y, h)[: len(y)]
        return (out * (_rms(y) / (_rms(out) or 1.0))).astype(np.float32)


def _board(y: np.ndarray, sr: int, plugins: list) -> np.ndarray:
    pedalboard = _need("pedalboard")
    out = pedalboard.Pedalboard(plugins)(np.asarray(y, np.float32)[None, :], sr)[0]
    return np.resize(out, len(y)).astype(np.float32) if len(out) != len(y) else out.astype(np.float32)


@dataclass(frozen=True)
class Telephone:
    low: tuple[float, float] = (300.0, 300.0)
    high: tuple[float, float] = (3400.0, 3400.0)
    codec: bool = True

    def __call__(self, y, sr, rng, voices):
        pb = _need("pedalboard")
        plugins = [pb.HighpassFilter(float(rng.uniform(*self.low))), pb.LowpassFilter(float(rng.uniform(*self.high)))]
        plugins.append(pb.GSMFullRateCompressor() if self.codec else pb.Resample(8000))
        plugins += [pb.HighpassFilter(float(rng.uniform(*self.low))), pb.LowpassFilter(float(rng.uniform(*self.high)))]
        return _board(y, sr, plugins)


@dataclass(frozen=True)
class Narrowband:
    rate: tuple[float, float] = (8000.0, 8000.0)

    def __call__(self, y, sr, rng, voices):
        pb = _need("pedalboard")
        return _board(y, sr, [pb.Resample(float(rng.uniform(*self.rate)))])


@dataclass(frozen=True)
class MP3:
    quality: tuple[float, float] = (8.0, 9.5)  # LAME VBR quality (9.5: the lowest bit rate)

    def __call__(self, y, sr, rng, voices):
        pb = _need("pedalboard")
        return _board(y, sr, [pb.MP3Compressor(float(rng.uniform(*self.quality)))])


@dataclass(frozen=True)
class Compress:
    threshold_db: tuple[float, float] = (-30.0, -15.0)
    ratio: tuple[float, float] = (3.0, 8.0)

    def __call__(self, y, sr, rng, voices):
        pb = _need("pedalboard")
        out = _board(y, sr, [pb.Compressor(float(rng.uniform(*self.threshold_db)), float(rng.uniform(*self.ratio)), 2.0, 80.0)])
        return (out * (_rms(y) / (_rms(out) or 1.0))).astype(np.float32)


@dataclass(frozen=True)
class Babble:
    snr_db: tuple[float, float] = (10.0, 10.0)
    talkers: tuple[int, int] = (3, 3)

    def __call__(self, y, sr, rng, voices):
        if voices is None:
            raise EmovoxError("babble needs a pool of other voices")
        n = int(rng.integers(self.talkers[0], self.talkers[1] + 1))
        crowd = np.zeros(len(y), np.float32)
        for v in voices(rng, n, sr):
            v = np.resize(v, len(y)) if len(v) < len(y) else v[int(rng.integers(len(v) - len(y) + 1)):][: len(y)]
            crowd += v / (_rms(v) or 1.0)
        return mix_at_snr(y, crowd, float(rng.uniform(*self.snr_db)))


@dataclass(frozen=True)
class Noise:
    snr_db: tuple[float, float] = (10.0, 10.0)
    colours: tuple[str, ...] = ("white", "pink", "brown")

    def __call__(self, y, sr, rng, voices):
        colour = self.colours[int(rng.integers(len(self.colours)))]
        return mix_at_snr(y, coloured_noise(len(y), colour, rng), float(rng.uniform(*self.snr_db)))


@dataclass(frozen=True)
class Gain:
    db: tuple[float, float] = (-12.0, 12.0)

    def __call__(self, y, sr, rng, voices):
        return np.clip(y * 10 ** (float(rng.uniform(*self.db)) / 20), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Clip:
    factor: tuple[float, float] = (2.0, 8.0)  # the signal is amplified this much, then clipped at full scale

    def __call__(self, y, sr, rng, voices):
        peak = float(np.max(np.abs(y))) or 1.0
        return (np.clip(y * (float(rng.uniform(*self.factor)) / peak), -1.0, 1.0) * peak).astype(np.float32)


@dataclass(frozen=True)
class Channel:
    """A named chain of steps. ``apply(y, sr, seed, voices)`` runs it with settings drawn from ``seed``."""

    name: str
    steps: tuple = field(default_factory=tuple)

    def apply(self, y: np.ndarray, sample_rate: int, seed: int, voices: VoicePool | None = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.asarray(y, dtype=np.float32)
        for step in self.steps:
            out = step(out, sample_rate, rng, voices)
        out = np.nan_to_num(out)
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def __str__(self) -> str:
        return self.name


#: The channels ``bench/channels.py`` measures, one row each.
CHANNELS: dict[str, Channel] = {c.name: c for c in [
    Channel("clean"),
    Channel("telephone", (Telephone(),)),
    Channel("mp3", (MP3(),)),
    Channel("room", (Room(),)),
    Channel("babble", (Babble(),)),
    Channel("noise", (Noise(),)),
    Channel("narrowband", (Narrowband(),)),
    Channel("room+noise", (Room(), Noise(snr_db=(15.0, 15.0)))),
    Channel("far", (Room(), Babble(snr_db=(15.0, 15.0)), Telephone())),
]}

#: Channel families a training copy is drawn from, with wider ranges than the benchmark's, and their weights.
TRAINING_FAMILIES: tuple[tuple[float, Channel], ...] = (
    (2.0, Channel("telephone", (Telephone(low=(200.0, 400.0), high=(3000.0, 3800.0)),))),
    (1.0, Channel("narrowband", (Narrowband(rate=(6000.0, 11025.0)), Compress()))),
    (1.0, Channel("mp3", (MP3(quality=(7.0, 9.9)),))),
    (2.0, Channel("room", (Room(rt60=(0.2, 1.0), distance=(0.5, 4.0)),))),
    (2.0, Channel("babble", (Babble(snr_db=(0.0, 20.0), talkers=(2, 6)),))),
    (1.0, Channel("noise", (Noise(snr_db=(0.0, 20.0)), Gain()))),
    (1.0, Channel("room+noise", (Room(rt60=(0.2, 1.0), distance=(0.5, 4.0)), Noise(snr_db=(5.0, 25.0))))),
    (2.0, Channel("far", (Room(rt60=(0.3, 1.0), distance=(1.0, 4.0)), Babble(snr_db=(5.0, 25.0), talkers=(2, 5)),
                          Telephone(low=(200.0, 400.0), high=(3000.0, 3800.0))))),
    (1.0, Channel("phone+clip", (Clip(factor=(1.5, 6.0)), Telephone(low=(200.0, 400.0), high=(3000.0, 3800.0))))),
)


def training_channel(seed: int) -> Channel:
    """The channel family of one training copy, drawn from :data:`TRAINING_FAMILIES` by ``seed``."""
    weights = np.array([w for w, _ in TRAINING_FAMILIES])
    k = int(np.random.default_rng(seed).choice(len(TRAINING_FAMILIES), p=weights / weights.sum()))
    return TRAINING_FAMILIES[k][1]


def channel(name: str) -> Channel:
    """The benchmark channel ``name`` (:data:`CHANNELS`)."""
    if name not in CHANNELS:
        raise EmovoxError(f"unknown channel {name!r}; choose from {', '.join(CHANNELS)}")
    return CHANNELS[name]
