"""What a model reads from many utterances, and its scores on them.

Shared by training, evaluation and the benchmark (inference code imports this
module, never :mod:`emovox.train`): decode and cache spectrograms
(:func:`prepare`), run the frozen body once per file (:func:`embed`: CNN
embeddings, speech-encoder vectors), add acoustic functionals
(:func:`model_inputs`), normalise per speaker (:func:`speaker_inputs`), and
score a model on the result (:func:`logits_for`, :func:`score`).
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .corpora.base import Utterance
from .errors import EmovoxError
from .audio import load_audio
from .extract import ArrayCache, default_cache_dir, extract_arrays, extract_features
from .features import FeatureConfig, spec_images
from .metrics import classification_metrics
from .model import EmotionClassifier

Log = Callable[[str], object]


@dataclass
class Prepared:
    """Utterances whose audio decoded, with their spectrograms and content keys."""

    utts: list[Utterance]
    specs: list[np.ndarray]
    keys: list[str | None]
    skipped: list[str]
    features: FeatureConfig
    cache_root: Path | None


def prepare(
    utts: Sequence[Utterance], features: FeatureConfig, *, spectrograms: bool = True, workers: int | None = None,
    cache_dir: str | Path | None = None, use_cache: bool = True, progress: bool = True, log: Log = print,
) -> Prepared:
    """Extract spectrograms of ``utts`` in parallel (cached); unreadable files are reported and dropped.

    ``spectrograms=False`` (models that read the waveform): only check that
    every file decodes; ``specs`` then holds empty arrays.
    """
    root = (Path(cache_dir) if cache_dir else default_cache_dir()) if use_cache else None
    paths = [u.path for u in utts]
    if spectrograms:
        ext = extract_features(paths, features, workers=workers, cache_dir=root, use_cache=use_cache, progress=progress)
    else:
        ext = extract_arrays(paths, partial(_readable, cfg=features), f"readable/{features.digest()}", workers=workers,
                             cache_dir=root, use_cache=use_cache, progress=progress, desc="reading audio")
    for err in ext.errors.values():
        log(f"skipped: {err}")
    ok = ext.ok
    if not ok:
        raise EmovoxError("no usable audio: every file failed to load")
    return Prepared([utts[i] for i in ok], [ext.specs[i] for i in ok], [ext.keys[i] for i in ok],
                    list(ext.errors.values()), features, root)


def _readable(path: str, cfg: FeatureConfig) -> np.ndarray:
    """An empty array once ``path`` decodes into usable audio with ``cfg``'s settings (raises :class:`AudioError` otherwise)."""
    load_audio(path, cfg.sample_rate, trim=cfg.trim, top_db=cfg.top_db)
    return np.zeros(0, dtype=np.float32)


def images(specs: Sequence[np.ndarray], model: EmotionClassifier, features: FeatureConfig) -> torch.Tensor:
    """Spectrograms -> normalised image batch for ``model``."""
    return spec_images(specs, model.spec, features)


@torch.inference_mode()
def embed(
    model: EmotionClassifier, data: Prepared, *, tag: str | None = None, batch_size: int = 32, progress: bool = True,
) -> torch.Tensor:
    """Body embeddings ``(n, embed_dim)`` of every prepared utterance, computed once and cached on disk under ``tag``."""
    from tqdm.auto import tqdm

    if model.reads_waveform:
        return _speech_vectors(model, data, progress=progress)
    cache = ArrayCache(data.cache_root, f"embeddings/{tag}/{data.features.digest()}") if tag and data.cache_root else None
    out: list[np.ndarray | None] = [cache.get(k) if cache and k else None for k in data.keys]
    todo = [i for i, e in enumerate(out) if e is None]
    model.eval()
    bar = tqdm(total=len(todo), desc="embeddings", unit="file", disable=not progress or not todo, file=sys.stderr)
    with bar, tempfile.TemporaryDirectory() as tmp:
        run_body = _body_runner(model, data.features, Path(tmp)) if len(todo) >= 2 * batch_size else model.embed
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            emb = np.asarray(run_body(images([data.specs[i] for i in idx], model, data.features)))
            for i, e in zip(idx, emb):
                out[i] = e
                if cache and data.keys[i]:
                    cache.put(data.keys[i], e)
            bar.update(len(idx))
    return torch.from_numpy(np.stack(out)) if out else torch.empty(0, model.embed_dim)


def _speech_vectors(model: EmotionClassifier, data: Prepared, *, progress: bool = True) -> torch.Tensor:
    """Pooled speech-encoder vectors of every prepared utterance, cached on disk by file content, encoder identity
    and signal settings."""
    from .encoders.speech import file_signal, signal_digest

    enc = model.body
    f = data.features
    cache = ArrayCache(data.cache_root, f"embeddings/{enc.cache_tag()}/{signal_digest(f.trim, f.top_db)}") if data.cache_root else None
    out: list[np.ndarray | None] = [cache.get(k) if cache and k else None for k in data.keys]
    todo = [i for i, e in enumerate(out) if e is None]
    if todo and enc.onnx_session is None and enc.context == "clip":
        from .engine import onnxruntime_available

        if onnxruntime_available():
            with tempfile.TemporaryDirectory() as tmp:  # ONNX Runtime reads the file once, at session start
                try:  # exported once per encoder and cached: faster than PyTorch for the whole pass
                    enc.use_onnx(Path(data.cache_root or tmp) / "onnx" / f"{enc.cache_tag()}.onnx")
                except EmovoxError:
                    pass  # PyTorch gives the same vectors
    signals = (file_signal(data.utts[i].path, f.trim, f.top_db) for i in todo)
    vectors = enc.encode_many(signals, len(todo), progress=progress, desc=f"{model.backbone} vectors")
    for i, v in zip(todo, vectors):
        out[i] = v
        if cache and data.keys[i]:
            cache.put(data.keys[i], v)
    return torch.from_numpy(np.stack(out)) if out else torch.empty(0, model.embed_dim)


def _body_runner(model: EmotionClassifier, features: FeatureConfig, tmp: Path) -> Callable[[torch.Tensor], np.ndarray]:
    """``images -> embeddings``: ONNX Runtime when it is installed (several times faster on a CPU), else PyTorch."""
    from .engine import OnnxEngine, onnxruntime_available

    if onnxruntime_available():
        try:
            from .export import export_body

            engine = OnnxEngine(export_body(model, tmp / "body.onnx", features.image_size))
            return lambda x: engine.logits(x.numpy())
        except Exception:  # noqa: BLE001 - any failure: the PyTorch path below gives the same numbers
            pass
    return lambda x: model.embed(x).numpy()


@torch.inference_mode()
def stem_features(model: EmotionClassifier, data: Prepared, *, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """Outputs of the frozen stem (``finetune="last"``): computed once, then only the tail trains."""
    from tqdm.auto import tqdm

    stem = model.stages[0].eval()
    out = []
    for start in tqdm(range(0, len(data.specs), batch_size), desc="frozen stem", unit="batch", disable=not progress, file=sys.stderr):
        out.append(stem(images(data.specs[start : start + batch_size], model, data.features)))
    return torch.cat(out)


def model_inputs(model: EmotionClassifier, data: Prepared, tag: str | None, *, progress: bool = True) -> torch.Tensor | list[np.ndarray]:
    """What training feeds the model: embeddings (frozen), stem outputs (``last``) or spectrograms (``all``)."""
    if model.finetune == "none":
        emb = embed(model, data, tag=tag, progress=progress)
        return model.vectors(emb, functionals(data, model.acoustic, progress=progress)) if model.acoustic else emb
    if model.finetune == "last":
        return stem_features(model, data, progress=progress)
    return data.specs


def functionals(data: Prepared, name: str, *, progress: bool = True) -> np.ndarray:
    """Acoustic functionals ``(n, dim)`` of every prepared utterance (cached like the spectrograms)."""
    from .acoustic import extract_functionals

    ext = extract_functionals([u.path for u in data.utts], name, cache_dir=data.cache_root, use_cache=data.cache_root is not None,
                              progress=progress)
    if ext.errors:
        raise EmovoxError("acoustic features failed: " + "; ".join(ext.errors.values()))
    return np.stack(ext.specs)


def speaker_inputs(inputs: torch.Tensor, utts: Sequence[Utterance]) -> torch.Tensor:
    """``inputs`` normalised per speaker (every speaker by its own statistics, test speakers too)."""
    from .acoustic import speaker_normalize

    return torch.from_numpy(speaker_normalize(inputs.numpy(), [u.speaker_key for u in utts]))


def _head(model: EmotionClassifier, speaker: bool) -> nn.Module:
    return model.speaker_head if speaker else model.head


def _forward(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], features: FeatureConfig, speaker: bool = False,
             device: torch.device | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None):
    """``idx -> logits`` over ``inputs``: spectrograms (a list, each passed
    through ``transform`` first when given) run the whole network; tensors
    from :func:`model_inputs` run only what follows them. Batches move to ``device``."""
    dev = device or torch.device("cpu")
    if not isinstance(inputs, torch.Tensor):
        prep = transform or (lambda spec: spec)
        return lambda idx: model(images([prep(inputs[i]) for i in idx.tolist()], model, features).to(dev))
    if model.finetune == "none":
        head = _head(model, speaker)
        return lambda idx: head(inputs[idx].to(dev))
    tail = model.stages[1]
    return lambda idx: model.head(tail(inputs[idx].to(dev)))


@torch.inference_mode()
def logits_for(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], idx: Sequence[int], features: FeatureConfig,
               speaker: bool = False) -> torch.Tensor:
    """Uncalibrated logits of ``model`` (its ``speaker_head`` if ``speaker``) for the utterances ``idx`` of ``inputs``."""
    model.eval()
    idx = torch.as_tensor(np.asarray(list(idx), dtype=np.int64))
    run = _forward(model, inputs, features, speaker)
    return torch.cat([run(idx[i : i + 64]) for i in range(0, len(idx), 64)]) if len(idx) else torch.empty(0, len(model.labels))


def score(model: EmotionClassifier, inputs: torch.Tensor | Sequence[np.ndarray], idx: Sequence[int], utts: Sequence[Utterance],
          features: FeatureConfig, speaker: bool = False, restrict: Sequence[str] | None = None) -> tuple[dict[str, Any], np.ndarray]:
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
