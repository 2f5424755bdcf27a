"""Synthetic sounds that are not speech, for checking that a model refuses them (and speech it must still take).

Every probe is a mono float32 signal in [-1, 1] at :data:`RATE`; :func:`non_speech` yields ``(kind, name,
signal)`` for tones, chirps, square / sawtooth / triangle waves, DTMF, whistles, synthetic music chords, hum and
noise colours, and :func:`speech_variants` the distortions of real speech a gate must still let through (clipped,
noisy, telephone band, over music). ``bench/ood.py`` and the tests measure the gates on them.

>>> kinds = {kind for kind, _, _ in non_speech(seconds=1.0)}
>>> sorted(kinds)[:4]
['chirp', 'chord', 'dtmf', 'hum']
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import signal as sps

RATE = 16000
#: DTMF keypad: key -> (low, high) frequencies in Hz
DTMF = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336), "6": (770, 1477),
        "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209), "0": (941, 1336), "#": (941, 1477)}


def _time(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.arange(int(round(seconds * rate))) / rate


def _level(y: np.ndarray, peak: float = 0.5) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    m = float(np.max(np.abs(y))) or 1.0
    return (y * (peak / m)).astype(np.float32)


def _fade(y: np.ndarray, rate: int = RATE, ms: float = 10.0) -> np.ndarray:
    n = min(len(y) // 2, int(rate * ms / 1000))
    if n:
        ramp = np.linspace(0.0, 1.0, n)
        y = y.copy()
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


def tone(freq: float, seconds: float = 3.0, rate: int = RATE) -> np.ndarray:
    return _level(_fade(np.sin(2 * np.pi * freq * _time(seconds, rate)), rate))


def chirp(f0: float, f1: float, seconds: float = 3.0, method: str = "linear", rate: int = RATE) -> np.ndarray:
    return _level(_fade(sps.chirp(_time(seconds, rate), f0, seconds, f1, method=method), rate))


def wave(shape: str, freq: float, seconds: float = 3.0, rate: int = RATE) -> np.ndarray:
    """``square``, ``sawtooth`` or ``triangle`` wave (naive, with all its aliasing, as a cheap synthesiser makes it)."""
    phase = 2 * np.pi * freq * _time(seconds, rate)
    y = sps.square(phase) if shape == "square" else sps.sawtooth(phase, 0.5 if shape == "triangle" else 1.0)
    return _level(_fade(y, rate))


def dtmf(keys: str = "0123456789*#", on: float = 0.15, off: float = 0.1, rate: int = RATE) -> np.ndarray:
    """A dialled number: each key's two tones for ``on`` seconds, then ``off`` seconds of silence."""
    parts = []
    for key in keys:
        lo, hi = DTMF[key]
        t = _time(on, rate)
        parts += [_fade(np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t), rate, 5), np.zeros(int(off * rate))]
    return _level(np.concatenate(parts))


def whistle(f0: float = 1800.0, seconds: float = 3.0, vibrato_hz: float = 5.5, depth: float = 0.03,
            glide: float = 1.3, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A whistled line: a near-sine gliding from ``f0`` to ``glide·f0`` with vibrato, a breathy noise floor and a
    swelling envelope."""
    t = _time(seconds, rate)
    f = f0 * glide ** (t / seconds) * (1 + depth * np.sin(2 * np.pi * vibrato_hz * t))
    y = np.sin(2 * np.pi * np.cumsum(f) / rate) * (0.6 + 0.4 * np.sin(np.pi * t / seconds))
    y += 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    return _level(_fade(y, rate, 30))


def chords(seconds: float = 3.0, root: float = 220.0, rate: int = RATE) -> np.ndarray:
    """Synthetic music: a I-V-vi-IV progression of major/minor triads, each note with 6 decaying harmonics and a
    plucked envelope."""
    steps = [(0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)]
    n = int(round(seconds * rate))
    per = n // len(steps)
    t = _time(per / rate, rate)
    env = np.exp(-3.0 * t) * (1 - np.exp(-200 * t))
    out = []
    for chord in steps:
        y = np.zeros(per)
        for semis in chord:
            f = root * 2 ** (semis / 12)
            y += sum(np.sin(2 * np.pi * f * h * t) / h ** 1.5 for h in range(1, 7) if f * h < rate / 2)
        out.append(y * env)
    return _level(np.concatenate(out))


def hum(mains: float = 50.0, seconds: float = 3.0, rate: int = RATE) -> np.ndarray:
    """Mains hum: the fundamental and its odd harmonics, as a bad cable picks it up."""
    t = _time(seconds, rate)
    return _level(_fade(sum(np.sin(2 * np.pi * mains * k * t) / k for k in (1, 3, 5, 7, 9)), rate))


def noise(colour: str, seconds: float = 3.0, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """``white``, ``pink`` (1/f), ``brown`` (1/f²), ``blue`` (f) or ``violet`` (f²) noise, by shaping white noise's
    spectrum."""
    exponent = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}[colour]
    n = int(round(seconds * rate))
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    f[0] = f[1]
    return _level(_fade(np.fft.irfft(spec * f ** (exponent / 2), n), rate), 0.3)


def non_speech(seconds: float = 3.0, rate: int = RATE) -> Iterator[tuple[str, str, np.ndarray]]:
    """``(kind, name, signal)`` of every synthetic non-speech probe."""
    for f in (100, 250, 440, 1000, 3000, 6000):
        yield "tone", f"sine {f} Hz", tone(f, seconds, rate)
    for f0, f1, method in ((100, 7000, "linear"), (100, 7000, "logarithmic"), (3000, 200, "linear"), (300, 1200, "linear")):
        yield "chirp", f"{method} chirp {f0}-{f1} Hz", chirp(f0, f1, seconds, method, rate)
    for shape in ("square", "sawtooth", "triangle"):
        for f in (100, 440, 1000):
            yield "wave", f"{shape} {f} Hz", wave(shape, f, seconds, rate)
    yield "dtmf", "DTMF 0-9*#", dtmf(rate=rate)
    yield "dtmf", "DTMF 555 0199", dtmf("5550199", 0.25, 0.15, rate=rate)
    for f0, seed in ((1200, 0), (1800, 1), (2600, 2)):
        yield "whistle", f"whistle {f0} Hz", whistle(f0, seconds, seed=seed, rate=rate)
    for root in (110.0, 220.0, 440.0):
        yield "chord", f"chords on {root:g} Hz", chords(seconds, root, rate)
    for mains in (50.0, 60.0):
        yield "hum", f"hum {mains:g} Hz", hum(mains, seconds, rate)
    for colour in ("white", "pink", "brown", "blue", "violet"):
        yield "noise", f"{colour} noise", noise(colour, seconds, rate=rate)


def speech_variants(y: np.ndarray, rate: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, signal)``: real speech ``y`` distorted in ways that leave it speech: clipped hard, in noise at 10 dB
    SNR, telephone band (8 kHz, 300-3400 Hz), over synthetic music at 10 dB."""
    y = np.asarray(y, dtype=np.float64)
    peak = float(np.max(np.abs(y))) or 1.0
    yield "clipped", np.clip(y * (8.0 / peak), -1.0, 1.0).astype(np.float32)
    power = float(np.mean(y ** 2)) or 1e-12
    rng = np.random.default_rng(seed)
    yield "noise 10 dB", _level(y + rng.standard_normal(len(y)) * np.sqrt(power / 10.0), 0.9)
    sos = sps.butter(6, [300, 3400], btype="bandpass", fs=rate, output="sos")
    tel = sps.sosfilt(sos, sps.resample_poly(sps.resample_poly(y, 8000, rate), rate, 8000)[: len(y)])
    yield "telephone", _level(tel, 0.9)
    music = chords(len(y) / rate, 220.0, rate).astype(np.float64)[: len(y)]
    music = np.pad(music, (0, len(y) - len(music)))
    music *= np.sqrt(power / 10.0 / (float(np.mean(music ** 2)) or 1e-12))
    yield "over music 10 dB", _level(y + music, 0.9)


__all__ = ["DTMF", "RATE", "chirp", "chords", "dtmf", "hum", "noise", "non_speech", "speech_variants", "tone", "wave",
           "whistle"]
