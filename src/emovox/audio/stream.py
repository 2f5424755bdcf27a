"""Re-readable audio sources delivered in blocks: a file read piece by piece, or an array.

Long recordings (hours) are never decoded whole: voice activity and the
timeline's windows read a :class:`Source` in blocks of a few seconds, resampled
on the fly without seams (soxr's streaming resampler).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError, EmovoxError
from .decode import check_sample_rate, decode, mono_signal, os_path

#: Files libsndfile cannot stream are decoded whole only up to this size (MB).
MAX_WHOLE_MB = 64.0


class Source:
    """Re-readable mono audio, delivered in blocks at any sample rate."""

    name: str
    sample_rate: int
    frames: int

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def blocks(self, rate: int, block_s: float) -> Iterator[np.ndarray]:
        """Mono float32 blocks resampled to ``rate`` (streaming, no seams)."""
        native = self.native_blocks(block_s)
        if rate == self.sample_rate:
            yield from native
            return
        import soxr

        stream = soxr.ResampleStream(self.sample_rate, rate, 1, dtype="float32", quality="HQ")
        for block in native:
            out = stream.resample_chunk(block)
            if out.size:
                yield out
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if tail.size:
            yield tail


class ArraySource(Source):
    def __init__(self, y: np.ndarray, sr: int, name: str):
        self.y, self.sample_rate, self.name = mono_signal(y, sr, name), int(sr), name
        self.frames = self.y.size

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        n = max(1, int(block_s * self.sample_rate))
        for i in range(0, self.y.size, n):
            yield self.y[i : i + n]


class FileSource(Source):
    def __init__(self, path: Path):
        self.path, self.name = path, str(path)
        with sf.SoundFile(os_path(path)) as f:
            self.sample_rate = check_sample_rate(f.samplerate, path)
            self.frames = int(f.frames)
            if f.frames == 0:
                raise AudioError(path, "contains no audio samples")

    def native_blocks(self, block_s: float) -> Iterator[np.ndarray]:
        n = max(1, int(block_s * self.sample_rate))
        try:
            with sf.SoundFile(os_path(self.path)) as f:
                while True:
                    data = f.read(n, dtype="float32", always_2d=True)
                    if not len(data):
                        break
                    yield data.mean(axis=1)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(self.path, f"cannot be decoded past the start ({err})") from None


def open_source(path: str | Path, max_whole_mb: float = MAX_WHOLE_MB) -> Source:
    """A streaming source for ``path``; formats libsndfile cannot read are decoded whole if small."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        return FileSource(path)
    except AudioError:
        raise
    except Exception as sf_err:
        if size > max_whole_mb * 1e6:
            raise AudioError(path, f"cannot be read in blocks ({sf_err}) and is too large ({size / 1e6:.0f} MB) to decode "
                                   f"whole; convert it to WAV or FLAC") from None
        y, sr = decode(path)
        return ArraySource(y, sr, str(path))


def cut_spans(source: Source, spans: Sequence[tuple[float, float]], rate: int, block_s: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, samples)`` of each span (sorted by start), keeping only a rolling buffer in memory."""
    bounds = [(int(round(s * rate)), int(round(e * rate))) for s, e in spans]
    buf, buf_start, nxt = np.zeros(0, np.float32), 0, 0
    for block in source.blocks(rate, block_s):
        buf = np.concatenate([buf, block]) if buf.size else block
        buf_end = buf_start + buf.size
        while nxt < len(bounds) and bounds[nxt][1] <= buf_end:
            s, e = bounds[nxt]
            yield nxt, buf[s - buf_start : e - buf_start]
            nxt += 1
        keep_from = bounds[nxt][0] if nxt < len(bounds) else buf_end
        drop = min(max(0, keep_from - buf_start), buf.size)
        buf, buf_start = buf[drop:].copy(), buf_start + drop
    while nxt < len(bounds):  # spans reaching past the last sample (rounding)
        s, e = bounds[nxt]
        piece = buf[max(0, s - buf_start) : max(0, e - buf_start)]
        if piece.size:
            yield nxt, piece
        nxt += 1


def source_of(audio: str | Path | np.ndarray, sample_rate: int | None = None, max_whole_mb: float = MAX_WHOLE_MB,
              name: str | None = None) -> Source:
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise EmovoxError("an audio array needs its sample rate: pass sample_rate=...")
        return ArraySource(audio, sample_rate, name or "<array>")
    return open_source(audio, max_whole_mb)
