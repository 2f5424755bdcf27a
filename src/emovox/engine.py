"""Inference engines: the classifier run by PyTorch or by ONNX Runtime.

An engine turns a batch of normalised images ``(batch, 3, H, W)`` into
logits ``(batch, n_labels)``. :class:`TorchEngine` runs the PyTorch model;
:class:`OnnxEngine` runs a file written by :func:`emovox.export.export_onnx`
(``model.onnx``, or ``model.int8.onnx`` with int8 weights).
:func:`select_engine` picks one for a model folder.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import ModelError
from .features import FeatureConfig
from .model import WEIGHTS_FILE, EmotionClassifier

ENGINES = ("auto", "torch", "onnx", "onnx-int8")
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: ONNX metadata keys written by the exporter.
META_WEIGHTS = "emovox.weights_sha256"
META_LABELS = "emovox.labels"


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` can be imported."""
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return False
    return True


def weights_digest(directory: str | Path) -> str:
    """SHA-256 of a model folder's weights file (ties an exported ONNX file to its weights)."""
    return hashlib.sha256((Path(directory) / WEIGHTS_FILE).read_bytes()).hexdigest()


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: the usable cores), all graph
    optimisations, idle threads sleeping. Raises :class:`ModelError` when onnxruntime is missing or the file unusable."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the ONNX engine needs onnxruntime: pip install 'emovox[onnx]'") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads)) if threads else usable_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    # Idle worker threads sleep instead of spinning: no CPU stolen from PyTorch or other work between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ModelError(f"{path}: not a usable ONNX model ({str(err).strip().splitlines()[0]})") from None


class Engine:
    """Base class: ``logits(images)`` for image batches, :meth:`spec_logits` for spectrograms."""

    name = "engine"

    def logits(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec_logits(
        self, specs: Sequence[np.ndarray], model: EmotionClassifier, features: FeatureConfig, batch_size: int = 32,
    ) -> torch.Tensor:
        """Logits ``(n, n_labels)`` of spectrograms, ``batch_size`` images at a time."""
        from .features import spec_images

        out = [torch.from_numpy(self.logits(spec_images(specs[i : i + batch_size], model.spec, features).numpy()))
               for i in range(0, len(specs), batch_size)]
        return torch.cat(out) if out else torch.empty(0, len(model.labels))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class TorchEngine(Engine):
    """The PyTorch model, run under ``torch.inference_mode()``.

    ``threads`` sets PyTorch's intra-op threads for the whole process; by
    default the process's setting is kept (PyTorch uses the physical cores).
    """

    name = "torch"

    def __init__(self, model: EmotionClassifier, threads: int | None = None):
        self.model = model.eval()
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
        with torch.inference_mode():
            return self.model(x).numpy()


class OnnxEngine(Engine):
    """An exported classifier run by ONNX Runtime on the CPU.

    ``threads``: intra-op threads (default: the usable cores). Graph
    optimisations are all on.
    """

    def __init__(self, path: str | Path, threads: int | None = None, name: str | None = None):
        self.path = Path(path).expanduser()
        self.name = name or ("onnx-int8" if self.path.name.endswith(".int8.onnx") else "onnx")
        if not self.path.is_file():
            raise ModelError(f"{self.path}: ONNX model not found; create it with: emovox export {self.path.parent}")
        self.session = onnx_session(self.path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 2:
            raise ModelError(f"{self.path}: not an emovox classifier (expects one image input and one logits output)")
        self._input = inputs[0].name
        n = outputs[0].shape[1]
        self.n_outputs: int | None = n if isinstance(n, int) else None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def logits(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelError(f"{self.path}: expected images of shape (batch, 3, H, W), got {x.shape}")
        try:
            return self.session.run(None, {self._input: x})[0]
        except Exception as err:
            raise ModelError(f"{self.path}: ONNX Runtime failed on images of shape {x.shape} "
                             f"({str(err).strip().splitlines()[0]})") from None


def _check_onnx(engine: OnnxEngine, model: EmotionClassifier, directory: Path) -> str | None:
    """Why ``engine`` does not belong to the model in ``directory`` (``None``: it does)."""
    if engine.n_outputs is not None and engine.n_outputs != len(model.labels):
        return f"it has {engine.n_outputs} outputs but the model has {len(model.labels)} labels"
    stored = engine.metadata.get(META_LABELS)
    if stored:
        try:
            onnx_labels = json.loads(stored)
        except ValueError:
            return "its stored labels are unreadable"
        if onnx_labels != list(model.labels):
            return f"its labels ({', '.join(map(str, onnx_labels))}) differ from the config's ({', '.join(model.labels)})"
    digest = engine.metadata.get(META_WEIGHTS)
    if digest and digest != weights_digest(directory):
        return f"it was exported from other weights than {directory / WEIGHTS_FILE}"
    return None


def select_engine(model: EmotionClassifier, directory: str | Path, engine: str = "auto", threads: int | None = None) -> Engine:
    """The engine ``engine`` for ``model``, loaded from model folder ``directory``.

    ``"auto"``: ONNX Runtime when the folder has a ``model.onnx`` exported from
    its current weights and onnxruntime is installed, else PyTorch (a stale
    ``model.onnx`` is skipped with a warning). ``"onnx"`` / ``"onnx-int8"``
    load ``model.onnx`` / ``model.int8.onnx`` and fail if they are missing or stale.
    """
    if engine not in ENGINES:
        raise ModelError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if model.reads_waveform:
        return _speech_engine(model, engine, threads)
    directory = Path(directory).expanduser()
    if engine == "torch" or (engine == "auto" and not ((directory / ONNX_FILE).is_file() and onnxruntime_available())):
        return TorchEngine(model, threads)
    path = directory / (INT8_FILE if engine == "onnx-int8" else ONNX_FILE)
    try:
        onnx = OnnxEngine(path, threads, name="onnx-int8" if engine == "onnx-int8" else "onnx")
        problem = _check_onnx(onnx, model, directory)
    except ModelError as err:
        if engine != "auto":
            raise
        warnings.warn(f"{err}; using PyTorch", stacklevel=2)
        return TorchEngine(model, threads)
    if problem and problem.startswith("its labels"):
        # the config and the export disagree on what each output means: neither can be trusted
        raise ModelError(f"{path}: {problem}; config.json was edited or comes from another model")
    if problem:
        msg = f"{path}: out of date: {problem}; re-export with: emovox export {directory} --overwrite"
        if engine != "auto":
            raise ModelError(msg)
        warnings.warn(f"{msg} (using PyTorch meanwhile)", stacklevel=2)
        return TorchEngine(model, threads)
    return onnx


def _speech_engine(model: EmotionClassifier, engine: str, threads: int | None) -> Engine:
    """A speech-encoder model: the encoder runs on ONNX Runtime (exported on first use, cached) unless ``engine`` is
    ``"torch"``; the heads, a few thousand multiply-adds, stay in PyTorch."""
    if engine == "onnx-int8":
        raise ModelError("int8 ONNX models cover image CNNs; use engine 'onnx' or 'torch' for a speech encoder")
    out = TorchEngine(model, threads)
    if engine == "torch" or (engine == "auto" and not onnxruntime_available()):
        return out
    try:
        model.body.use_onnx(threads=threads)
    except ModelError as err:
        if engine == "onnx":
            raise
        warnings.warn(f"{err}; the speech encoder runs on PyTorch", stacklevel=3)
        return out
    out.name = "onnx-encoder"
    return out
