"""Inference engines: what runs a model's networks.

:class:`TorchEngine`: every encoder, then the heads, in PyTorch; encoders that run faster on ONNX Runtime
(speech transformers) are moved there by :func:`emovox.runtime.accelerate.accelerate` (exported on first use and
cached; the engine is then named ``onnx-encoder``). :class:`OnnxEngine`: a whole model of one encoder exported by
``emovox export`` (``model.onnx``, or ``model.int8.onnx`` with int8 weights): network input -> logits.
:func:`select_engine` picks one for a model folder.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..identity import digest
from ..model import WEIGHTS_FILE, EmotionClassifier
from ..runtime import onnx
from ..runtime.accelerate import accelerate

ENGINES = ("auto", "torch", "onnx", "onnx-int8")
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
#: ONNX metadata keys written by the exporter.
META_WEIGHTS = "emovox.weights_sha256"
META_LABELS = "emovox.labels"


def file_digest(directory: str | Path) -> str:
    """Digest of a model folder's weights file (ties an exported ONNX file to its weights)."""
    return digest(Path(directory) / WEIGHTS_FILE)


def whole_model_exportable(model: EmotionClassifier) -> bool:
    """True when ``model`` runs as one network on batches (one encoder whose inputs batch: an image CNN), which
    ``emovox export`` writes as ``model.onnx``."""
    return len(model.encoders) == 1 and model.encoders[0].whole_network


class Engine:
    """Base class: :meth:`probabilities` of prepared inputs (one list per encoder)."""

    name = "engine"

    def __init__(self, model: EmotionClassifier):
        self.model = model

    def probabilities(self, inputs: Sequence[Sequence[np.ndarray]], same_speaker: bool = False) -> np.ndarray:
        """Calibrated probabilities ``(n, n_labels)``; ``same_speaker``: the inputs are one speaker's (speaker head)."""
        return self.outputs(inputs, same_speaker)[0]

    def outputs(self, inputs: Sequence[Sequence[np.ndarray]], same_speaker: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probabilities, vectors)``: :meth:`probabilities` and the vectors the heads read ``(n, vector_dim)``
        (``None`` from an engine that never sees them: a whole exported network)."""
        v = self.model.vectors(inputs)
        return self.model.probabilities(v, same_speaker), v.numpy()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class TorchEngine(Engine):
    """The model in PyTorch (its encoders possibly on ONNX Runtime), under ``torch.inference_mode()``.

    ``threads`` sets PyTorch's intra-op threads for the whole process; by default the process's setting is kept.
    """

    name = "torch"

    def __init__(self, model: EmotionClassifier, threads: int | None = None):
        super().__init__(model.eval())
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits of a batch of network inputs (a one-encoder model)."""
        x = torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
        with torch.inference_mode():
            return self.model(x).numpy()


class OnnxEngine(Engine):
    """An exported classifier run by ONNX Runtime on the CPU.

    ``threads``: intra-op threads (default: the usable cores). Graph
    optimisations are all on.
    """

    def __init__(self, path: str | Path, threads: int | None = None, name: str | None = None,
                 model: EmotionClassifier | None = None):
        self.model = model
        self.path = Path(path).expanduser()
        self.name = name or ("onnx-int8" if self.path.name.endswith(".int8.onnx") else "onnx")
        if not self.path.is_file():
            raise ModelError(f"{self.path}: ONNX model not found; create it with: emovox export {self.path.parent}")
        self.session = onnx.session(self.path, threads)
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

    def outputs(self, inputs: Sequence[Sequence[np.ndarray]], same_speaker: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        if same_speaker or self.model is None:  # the speaker head reads vectors normalised together: PyTorch
            return super().outputs(inputs, same_speaker)
        return self.probabilities(inputs), None

    def probabilities(self, inputs: Sequence[Sequence[np.ndarray]], same_speaker: bool = False) -> np.ndarray:
        if same_speaker or self.model is None:  # the speaker head reads vectors normalised together: PyTorch
            return super().outputs(inputs, same_speaker)[0]
        if not len(inputs[0]):
            return np.zeros((0, len(self.model.labels)), dtype=np.float32)
        enc = self.model.encoders[0]
        batches = [self.logits(enc.network_input(inputs[0][i : i + 32]).numpy()) for i in range(0, len(inputs[0]), 32)]
        return torch.softmax(torch.from_numpy(np.concatenate(batches)) / self.model.temperature, dim=1).numpy()


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
    if digest and digest != file_digest(directory):
        return f"it was exported from other weights than {directory / WEIGHTS_FILE}"
    return None


def select_engine(model: EmotionClassifier, directory: str | Path, engine: str = "auto", threads: int | None = None) -> Engine:
    """The engine ``engine`` for ``model``, loaded from model folder ``directory``.

    A model that ``emovox export`` covers (one image encoder): ``"auto"`` runs its ``model.onnx`` on ONNX Runtime
    when the file was exported from the folder's current weights and onnxruntime is installed, else PyTorch (a stale
    ``model.onnx`` is skipped with a warning); ``"onnx"`` / ``"onnx-int8"`` load ``model.onnx`` /
    ``model.int8.onnx`` and fail if they are missing or stale. Other models: the heads run in PyTorch and each
    encoder that runs faster on ONNX Runtime is moved there (``"auto"``: when onnxruntime is installed; ``"onnx"``:
    or fail), see :func:`emovox.runtime.accelerate.accelerate`.
    """
    if engine not in ENGINES:
        raise ModelError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if not whole_model_exportable(model):
        return _encoder_engine(model, engine, threads)
    directory = Path(directory).expanduser()
    if engine == "torch" or (engine == "auto" and not ((directory / ONNX_FILE).is_file() and onnx.available())):
        return TorchEngine(model, threads)
    path = directory / (INT8_FILE if engine == "onnx-int8" else ONNX_FILE)
    try:
        found = OnnxEngine(path, threads, name="onnx-int8" if engine == "onnx-int8" else "onnx", model=model)
        problem = _check_onnx(found, model, directory)
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
    return found


def _encoder_engine(model: EmotionClassifier, engine: str, threads: int | None) -> Engine:
    """PyTorch heads; each encoder that runs on ONNX Runtime by default moved there unless ``engine`` is ``torch``."""
    out = TorchEngine(model, threads)
    ran = [accelerate(e, engine, threads) for e in model.encoders
           if e.exportable and (engine != "auto" or e.onnx_by_default)]
    if "onnx-int8" in ran:
        out.name = "onnx-int8-encoder"
    elif "onnx" in ran:
        out.name = "onnx-encoder"
    return out
