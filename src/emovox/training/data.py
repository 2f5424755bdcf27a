"""What a model reads from many utterances, and its scores on them.

Shared by training, evaluation and the benchmark: decode and check every file once, keeping the first encoder's
inputs when they are worth caching (:func:`prepare`: spectrograms), run every encoder once per file with its vectors
cached on disk by file content and encoder identity (:func:`encoder_vectors`, :func:`model_inputs`), normalise per
speaker (:func:`speaker_inputs`), and score a model on the result (:func:`logits_for`, :func:`score`). Every
encoder input is reached through the encoder's own preparer, as at prediction time.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio.decode import load_audio
from ..cache import ArrayCache, default_cache_dir
from ..corpora.base import Utterance
from ..encoders.base import Encoder, Preparer
from ..encoders.image import SpectrogramPreparer
from ..errors import EmovoxError
from ..features import FeatureConfig
from ..model import EmotionClassifier, speaker_normalize
from ..runtime.accelerate import accelerate
from .extract import extract_arrays
from .metrics import classification_metrics

Log = Callable[[str], object]


@dataclass
class PreparedCorpus:
    """Utterances whose audio decoded, their content keys, and the inputs of the preparer they were prepared with
    (``specs``: empty arrays unless that preparer's inputs are worth caching, e.g. spectrograms)."""

    utts: list[Utterance]
    specs: list[np.ndarray]
    keys: list[str | None]
    skipped: list[str]
    preparer: Preparer
    cache_root: Path | None

    @property
    def features(self) -> FeatureConfig:
        """Spectrogram settings of the preparer (the defaults when it makes no spectrograms)."""
        return getattr(self.preparer, "features", FeatureConfig())


def prepare(
    utts: Sequence[Utterance], preparer: Preparer | FeatureConfig, *, spectrograms: bool = True, workers: int | None = None,
    cache_dir: str | Path | None = None, use_cache: bool = True, progress: bool = True, log: Log = print,
) -> PreparedCorpus:
    """Check that every file of ``utts`` decodes (in parallel, cached); unreadable files are reported and dropped.

    ``preparer``: the first encoder's preparer (a :class:`FeatureConfig` stands for its spectrogram preparer, or with
    ``spectrograms=False`` for a plain decode at its rate). Its inputs are kept in ``specs`` when it caches them.
    """
    if isinstance(preparer, FeatureConfig):
        preparer = SpectrogramPreparer(preparer.sample_rate, preparer) if spectrograms else _Readable(preparer.sample_rate)
    root = (Path(cache_dir) if cache_dir else default_cache_dir()) if use_cache else None
    paths = [u.path for u in utts]
    keep = preparer.cached
    fn = preparer.file if keep else partial(_readable, rate=preparer.sample_rate)
    ns = f"inputs/{preparer.digest()}" if keep else f"readable/{preparer.sample_rate}"
    ext = extract_arrays(paths, fn, ns, workers=workers, cache_dir=root, use_cache=use_cache, progress=progress,
                         desc="features" if keep else "reading audio")
    for err in ext.errors.values():
        log(f"skipped: {err}")
    ok = ext.ok
    if not ok:
        raise EmovoxError("no usable audio: every file failed to load")
    return PreparedCorpus([utts[i] for i in ok], [ext.specs[i] for i in ok], [ext.keys[i] for i in ok],
                    list(ext.errors.values()), preparer, root)


@dataclass(frozen=True)
class _Readable(Preparer):
    """Decodes only (``prepare(..., spectrograms=False)``)."""

    def __call__(self, y: np.ndarray, sr: int, source: str = "<array>") -> np.ndarray:
        return np.zeros(0, dtype=np.float32)


def _readable(path: str, rate: int) -> np.ndarray:
    """An empty array once ``path`` decodes into usable audio at ``rate`` (raises :class:`AudioError` otherwise)."""
    load_audio(path, rate)
    return np.zeros(0, dtype=np.float32)


def encoder_inputs(enc: Encoder, data: PreparedCorpus, idx: Sequence[int], *, progress: bool = True) -> Iterable[np.ndarray]:
    """Inputs of encoder ``enc`` for the utterances ``idx``: the prepared ones when ``data`` holds them, else through
    its preparer (in parallel worker processes and cached when the preparer says so, else one by one as needed)."""
    prep = enc.preparer()
    if prep == data.preparer and data.preparer.cached:
        return (data.specs[i] for i in idx)
    if prep.cached:
        ext = extract_arrays([data.utts[i].path for i in idx], prep.file, f"inputs/{prep.digest()}", cache_dir=data.cache_root,
                             use_cache=data.cache_root is not None, progress=progress, desc=f"{enc.name} inputs")
        if ext.errors:
            raise EmovoxError(f"{enc.name} inputs failed: " + "; ".join(ext.errors.values()))
        return iter(ext.specs)
    return (prep.file(data.utts[i].path) for i in idx)


@torch.inference_mode()
def encoder_vectors(enc: Encoder, keys: Sequence[str | None], inputs: Callable[[list[int]], Iterable[np.ndarray]],
                    cache_root: Path | None, *, progress: bool = True) -> np.ndarray:
    """Vectors ``(n, enc.dim)`` of ``n`` utterances, each computed once and cached on disk under its key and the
    encoder's identity. ``inputs(idx)`` yields the encoder inputs of the utterances ``idx`` not cached yet. Encoders
    that run faster on ONNX Runtime move there for the pass (:func:`emovox.runtime.accelerate.accelerate`)."""
    from tqdm.auto import tqdm

    cache = ArrayCache(cache_root, f"vectors/{enc.identity()}") if cache_root else None
    out: list[np.ndarray | None] = [cache.get(k) if cache and k else None for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    if not todo:
        return np.stack(out) if out else np.zeros((0, enc.dim), np.float32)
    enc.eval()
    if enc.exportable and len(todo) >= 2 * enc.batch_size and enc.session is None:
        with tempfile.TemporaryDirectory() as tmp:  # ONNX Runtime reads the file once, at session start
            accelerate(enc, "auto", cache_dir=cache_root or tmp)
    bar = tqdm(total=len(todo), desc=f"{enc.name} vectors", unit="file", disable=not progress, file=sys.stderr)
    with bar:
        stream = iter(inputs(todo))
        for start in range(0, len(todo), enc.batch_size):
            idx = todo[start : start + enc.batch_size]
            batch = [next(stream) for _ in idx]
            for i, v in zip(idx, enc.encode(batch).numpy()):
                out[i] = v
                if cache and keys[i]:
                    cache.put(keys[i], v)
            bar.update(len(idx))
    return np.stack(out)


def embed(model: EmotionClassifier, data: PreparedCorpus, *, progress: bool = True) -> torch.Tensor:
    """What the heads read, ``(n, vector_dim)``: every encoder's vectors of every prepared utterance, concatenated
    (computed once per file and encoder, and cached)."""
    parts = [encoder_vectors(enc, data.keys, partial(encoder_inputs, enc, data, progress=progress), data.cache_root,
                             progress=progress) for enc in model.encoders]
    return torch.from_numpy(np.concatenate(parts, axis=1)) if parts else torch.empty(0, model.vector_dim)


@torch.inference_mode()
def stem_features(model: EmotionClassifier, data: PreparedCorpus, *, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """Outputs of the frozen stem (``finetune="last"``): computed once, then only the tail trains."""
    from tqdm.auto import tqdm

    enc = model.encoders[0]
    stem = enc.stages[0].eval()
    out = []
    for start in tqdm(range(0, len(data.specs), batch_size), desc="frozen stem", unit="batch", disable=not progress, file=sys.stderr):
        out.append(stem(enc.network_input(data.specs[start : start + batch_size])))
    return torch.cat(out)


def model_inputs(model: EmotionClassifier, data: PreparedCorpus, *,
                 progress: bool = True) -> torch.Tensor | list[np.ndarray]:
    """What training feeds the model: vectors (frozen encoders), stem outputs (``last``) or spectrograms (``all``)."""
    if model.finetune == "none":
        return embed(model, data, progress=progress)
    if model.finetune == "last":
        return stem_features(model, data, progress=progress)
    return data.specs


def speaker_inputs(inputs: torch.Tensor, utts: Sequence[Utterance]) -> torch.Tensor:
    """``inputs`` normalised per speaker (every speaker by its own statistics, test speakers too)."""
    return torch.from_numpy(speaker_normalize(inputs.numpy(), [u.speaker_key for u in utts]))


def head_of(model: EmotionClassifier, speaker: bool) -> nn.Module:
    return model.speaker_head if speaker else model.head


def forward_fn(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], speaker: bool = False,
               device: torch.device | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None):
    """``idx -> logits`` over ``inputs``: spectrograms (a list, each passed through ``transform`` first when given)
    run the whole network; tensors from :func:`model_inputs` run only what follows them. Batches move to ``device``."""
    dev = device or torch.device("cpu")
    if not isinstance(inputs, torch.Tensor):
        prep = transform or (lambda spec: spec)
        enc = model.encoders[0]
        return lambda idx: model(enc.network_input([prep(inputs[i]) for i in idx.tolist()]).to(dev))
    if model.finetune == "none":
        head = head_of(model, speaker)
        return lambda idx: head(inputs[idx].to(dev))
    tail = model.encoders[0].stages[1]
    return lambda idx: model.head(tail(inputs[idx].to(dev)))


@torch.inference_mode()
def logits_for(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], idx: Sequence[int],
               features: FeatureConfig | None = None, speaker: bool = False) -> torch.Tensor:
    """Uncalibrated logits of ``model`` (its ``speaker`` head if ``speaker``) for the utterances ``idx`` of ``inputs``."""
    model.eval()
    idx = torch.as_tensor(np.asarray(list(idx), dtype=np.int64))
    run = forward_fn(model, inputs, speaker)
    return torch.cat([run(idx[i : i + 64]) for i in range(0, len(idx), 64)]) if len(idx) else torch.empty(0, len(model.labels))


def score(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], idx: Sequence[int], utts: Sequence[Utterance],
          features: FeatureConfig | None = None, speaker: bool = False,
          restrict: Sequence[str] | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of ``model`` on the utterances ``idx`` (and their calibrated probabilities).

    ``restrict``: only these labels may be predicted (the argmax runs over them;
    the probabilities are renormalised over them), as cross-corpus studies score
    a model on a corpus with fewer emotions. The metrics then carry ``"labels_restricted_to"``.
    """
    temperature = model.temperature_of(speaker)
    logits = logits_for(model, inputs, idx, features, speaker) / temperature
    if restrict is not None:
        logits = restrict_logits(logits, model.labels, restrict)
    probs = torch.softmax(logits, 1).numpy()
    pred = [model.labels[k] for k in probs.argmax(1)]
    metrics = classification_metrics([utts[i].emotion for i in idx], pred, model.labels)
    if restrict is not None:
        allowed = set(restrict)
        metrics["labels_restricted_to"] = [lab for lab in model.labels if lab in allowed]
    return metrics, probs


def restrict_logits(logits: torch.Tensor, labels: Sequence[str], allowed: Sequence[str]) -> torch.Tensor:
    """``logits`` with every label outside ``allowed`` masked out (``-inf``)."""
    allowed = set(allowed)
    keep = torch.tensor([lab in allowed for lab in labels])
    if not keep.any():
        raise EmovoxError(f"none of the labels {', '.join(sorted(allowed))} is known to the model ({', '.join(labels)})")
    return logits.masked_fill(~keep, float("-inf"))
