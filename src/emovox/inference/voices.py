"""Who speaks when: speaker embeddings of speech windows, clustered into the voices of a recording.

The embedder is the GE2E speaker encoder (a 3-layer LSTM over 40 mel bands, 256-d d-vectors; trained for speaker
verification) whose weights ship inside the ``resemblyzer`` wheel (Apache-2.0, offline). Only its weights file is
read (``torch.load(weights_only=True)``); the network and its input are built here: 16 kHz, quiet speech raised to
-30 dBFS, power mel spectrogram (25 ms windows, 10 ms hop), partials of 1.6 s at 1.3 per second, each embedded,
averaged and L2-normalised.

:func:`cluster_voices` groups the embeddings by spectral clustering of their cosine affinities, the number of
speakers given or estimated (``"auto"``: :func:`count_voices`, the groups average-linkage clustering leaves at the
:data:`VOICE_THRESHOLD` cut-off); the cut-off is chosen on conversations of held-out voices by cross-validation over
speakers (``bench/diarization.py``; :mod:`.turns` clusters short pieces of speech, not windows).
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from ..errors import EmovoxError

#: Cosine distance at which ``speakers="auto"`` stops merging two groups of windows (measured, see above).
VOICE_THRESHOLD = 0.45
RATE = 16000
PARTIAL_FRAMES = 160  # 1.6 s of 10-ms frames
HOP = 160
N_FFT = 400
N_MELS = 40

_lock = threading.Lock()
_embedders: dict[str, VoiceEmbedder] = {}


def resemblyzer_weights() -> Path:
    """The GE2E weights file inside the installed ``resemblyzer`` package (found without importing it)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise EmovoxError("speaker turns need the GE2E speaker encoder of the resemblyzer package: "
                          "pip install 'emovox[diarize]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise EmovoxError(f"the resemblyzer package has no pretrained.pt at {path}; reinstall it")
    return path


class VoiceEmbedder:
    """Speech (16 kHz mono) -> a 256-d L2-normalised speaker embedding."""

    def __init__(self, weights: str | Path | None = None):
        import torch
        from torch import nn

        path = Path(weights) if weights is not None else resemblyzer_weights()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise EmovoxError(f"{path}: not a speaker-encoder checkpoint ({err})") from None
        state = state.get("model_state", state)
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        try:
            self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
            self.linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        except (RuntimeError, KeyError) as err:
            raise EmovoxError(f"{path}: the weights do not fit the GE2E speaker encoder ({str(err).splitlines()[0]})") from None
        self.lstm.eval()
        self.linear.eval()
        import librosa

        self.mel_basis = librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann

    @classmethod
    def shared(cls) -> VoiceEmbedder:
        """One embedder per process (its weights are read once)."""
        with _lock:
            if "default" not in _embedders:
                _embedders["default"] = cls()
            return _embedders["default"]

    def mel(self, y: np.ndarray) -> np.ndarray:
        """Power mel spectrogram ``(frames, 40)`` with centred frames."""
        pad = np.pad(y, (N_FFT // 2, N_FFT // 2))
        n = 1 + (pad.size - N_FFT) // HOP
        frames = np.lib.stride_tricks.sliding_window_view(pad, N_FFT)[::HOP][:n] * self.window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        return (power @ self.mel_basis.T).astype(np.float32)

    def embed(self, y: np.ndarray) -> np.ndarray:
        """The embedding of one stretch of speech."""
        return self.embed_many([y])[0]

    def embed_many(self, signals: list[np.ndarray]) -> np.ndarray:
        """``(n, 256)`` embeddings, one per signal (each at least one partial long after padding)."""
        import torch

        if not signals:
            return np.zeros((0, 256), np.float32)
        partials, owner = [], []
        for k, y in enumerate(signals):
            y = np.asarray(y, dtype=np.float32)
            rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
            if 0 < rms < 10 ** (-30 / 20):
                y = y * (10 ** (-30 / 20) / rms)  # quiet speech raised to -30 dBFS (never lowered)
            step = int(round(RATE / 1.3 / HOP))  # 1.3 partials per second
            n_frames = int(np.ceil((y.size + 1) / HOP))
            starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
            if len(starts) > 1 and (y.size - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP) < 0.75:
                starts = starts[:-1]  # a last partial mostly padding says little
            need = (starts[-1] + PARTIAL_FRAMES) * HOP
            mel = self.mel(np.pad(y, (0, max(0, need - y.size))))
            for s in starts:
                part = mel[s : s + PARTIAL_FRAMES]
                if part.shape[0] < PARTIAL_FRAMES:
                    part = np.pad(part, ((0, PARTIAL_FRAMES - part.shape[0]), (0, 0)))
                partials.append(part)
                owner.append(k)
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(torch.from_numpy(np.stack(partials)))
            e = torch.relu(self.linear(hidden[-1]))
            e = (e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)).numpy()
        owner_a = np.asarray(owner)
        out = np.stack([e[owner_a == k].mean(0) for k in range(len(signals))])
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)).astype(np.float32)


def parse_speakers(value: str | int | None) -> str | int:
    """``"auto"``, or a number of speakers (``1``: one voice, no clustering)."""
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise EmovoxError(f"speakers must be 'auto' or a number of speakers, not {value!r}") from None
    if not 1 <= n <= 20:
        raise EmovoxError(f"speakers must be between 1 and 20, not {n}")
    return n


def cluster_voices(embeddings: np.ndarray, speakers: str | int = "auto", threshold: float = VOICE_THRESHOLD,
                   max_speakers: int = 8) -> np.ndarray:
    """Speaker index of each embedding, numbered by first appearance (0, 1, ...).

    ``speakers``: a number, or ``"auto"``. Voices are grouped by spectral clustering (scikit-learn) of the cosine
    affinities, each row's weakest 70 % pruned (the affinity of two windows of one voice is high, of two voices
    middling, and the middle is where the noise is). ``"auto"``: the number of voices is :func:`count_voices`'s."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    speakers = parse_speakers(speakers)
    if n == 0:
        return np.zeros(0, dtype=int)
    if speakers == 1 or n == 1:
        return np.zeros(n, dtype=int)
    if speakers == "auto":
        k = count_voices(x, threshold, max_speakers)
        raw = np.zeros(n, dtype=int) if k == 1 else _spectral(x, k)
    else:
        raw = _spectral(x, min(int(speakers), n)) if n > int(speakers) else np.arange(n)
    order: dict[int, int] = {}
    for r in raw:
        order.setdefault(int(r), len(order))
    return np.array([order[int(r)] for r in raw], dtype=int)


def count_voices(x: np.ndarray, threshold: float = VOICE_THRESHOLD, max_speakers: int = 8,
                 min_share: float = 0.05) -> int:
    """How many voices the embeddings ``x`` hold: the groups average-linkage clustering leaves at cosine distance
    ``threshold`` that hold at least ``min_share`` of the rows (at least 2; fewer are stray pieces: a cough, a
    turn boundary), between 1 and ``max_speakers``."""
    from sklearn.cluster import AgglomerativeClustering

    if len(x) < 4:
        return 1
    merged = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="cosine",
                                     linkage="average").fit_predict(x)
    sizes = np.bincount(merged)
    return int(min(max_speakers, max(1, (sizes >= max(2, min_share * len(x))).sum())))


def _spectral(x: np.ndarray, k: int, keep: float = 0.3) -> np.ndarray:
    import warnings

    from sklearn.cluster import SpectralClustering

    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    affinity = np.clip(unit @ unit.T, 0.0, 1.0)
    m = max(2, int(np.ceil(keep * len(x))))
    cut = -np.sort(-affinity, axis=1)[:, m - 1 : m]
    affinity = np.where(affinity >= cut, affinity, 0.0)
    affinity = np.maximum(affinity, affinity.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "graph is not fully connected": the pruning can split it, which is fine
        return SpectralClustering(k, affinity="precomputed", random_state=0).fit_predict(affinity)


def speaker_name(index: int) -> str:
    return f"S{index + 1}"
