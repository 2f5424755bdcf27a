"""The emotion classifier (backbone body + new head) and its on-disk format.

A model directory holds ``model.safetensors`` (weights) and ``config.json``
(labels, backbone, feature config, training config, software versions).
Nothing is pickled.
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .backbones import BackboneParts, InputSpec, Standardize, Weights, build_backbone, input_spec
from .encoders.speech import SpeechEncoder, is_speech_encoder
from .errors import EmovoxError, ModelError
from .features import FeatureConfig

FINETUNE = ("none", "last", "all")
#: How feature vectors are normalised before the head: ``"none"`` (training
#: statistics) or ``"speaker"`` (each speaker's own statistics, see
#: :func:`emovox.acoustic.speaker_normalize`).
NORMALIZE = ("none", "speaker")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class EmotionClassifier(nn.Module):
    """A pretrained encoder body and a new classification head over ``labels``.

    ``backbone`` names an image CNN on log-mel spectrograms (``vgg16``,
    ``efficientnet_lite0`` …) or a speech encoder on the waveform
    (``whisper_tiny_en``, ``hf:HUB_ID_OR_FOLDER``, see
    :mod:`emovox.encoders.speech`; frozen). ``speech`` rebuilds a saved speech
    encoder's architecture (its :meth:`SpeechEncoder.spec`) when ``weights`` is
    ``None``.

    ``finetune`` chooses what trains: ``"none"`` (body frozen, the recipe),
    ``"last"`` (the last blocks of the body too) or ``"all"``.

    ``acoustic`` (a set of :data:`emovox.acoustic.ACOUSTIC_SETS`, frozen body
    only) appends utterance-level acoustic functionals to the body's
    embedding: the head then reads ``[embedding, functionals]`` vectors (see
    :meth:`classify`). ``normalize="speaker"`` adds a second head,
    ``speaker_head``, trained on speaker-normalised vectors, for recordings
    whose speaker is known at prediction time; ``head`` serves single files.
    """

    def __init__(
        self,
        backbone: str,
        labels: list[str],
        weights: Weights = "imagenet",
        finetune: str = "none",
        dropout: float = 0.2,
        acoustic: str | None = None,
        normalize: str = "none",
        speech: dict[str, Any] | None = None,
    ):
        super().__init__()
        if finetune not in FINETUNE:
            raise ModelError(f"finetune must be one of {', '.join(FINETUNE)}, not {finetune!r}")
        if normalize not in NORMALIZE:
            raise ModelError(f"normalize must be one of {', '.join(NORMALIZE)}, not {normalize!r}")
        if (acoustic or normalize != "none") and finetune != "none":
            raise ModelError("acoustic features and speaker normalisation work on a frozen backbone (finetune='none')")
        if len(labels) < 2:
            raise ModelError(f"a classifier needs at least 2 labels, got {labels}")
        if is_speech_encoder(backbone):
            if finetune != "none":
                raise ModelError(f"speech encoder {backbone!r} is used frozen (finetune='none')")
            if weights is None and not speech:
                raise ModelError(f"speech encoder {backbone!r} needs its weights, or the saved description of its architecture")
            body = (SpeechEncoder.from_spec(speech) if weights is None
                    else SpeechEncoder.pretrained(backbone, weights, context=(speech or {}).get("context", "clip")))
            parts = BackboneParts(body, _linear_head(body.dim, len(labels), dropout), body.dim, stem=None, tail=None)
            self.spec = InputSpec()
        else:
            parts = build_backbone(backbone, len(labels), weights, dropout)
            self.spec = input_spec(backbone)
        self.backbone = backbone
        self.labels = list(labels)
        self.finetune = finetune
        #: softmax temperatures of ``head`` and ``speaker_head``, fitted on held-out data (1.0: uncalibrated)
        self.temperature = 1.0
        self.speaker_temperature = 1.0
        self.embed_dim = parts.embed_dim
        self.body = parts.body
        self.head = parts.head
        self.acoustic = acoustic
        self.normalize = normalize
        #: length of the vectors the head reads (embedding, then acoustic functionals)
        self.vector_dim = self.embed_dim
        if acoustic:
            from .acoustic import acoustic_dim

            self.vector_dim += acoustic_dim(acoustic)
            self.head = _linear_head(self.vector_dim, len(labels), dropout)
        if normalize == "speaker":
            self.speaker_head = _linear_head(self.vector_dim, len(labels), dropout)
        for p in self.body.parameters():
            p.requires_grad = finetune == "all"
        if finetune == "last":
            if parts.tail is None:
                raise ModelError(f"backbone {backbone!r} has no last-blocks split; use finetune 'none' or 'all'")
            for p in parts.tail.parameters():
                p.requires_grad = True
        # Views on the body's own modules, kept out of the state dict.
        self.__dict__["stages"] = (parts.stem, parts.tail)

    def train(self, mode: bool = True) -> EmotionClassifier:
        super().train(mode)
        if mode and self.finetune == "none":
            self.body.eval()  # a frozen body keeps its BatchNorm statistics and no dropout
        elif mode and self.finetune == "last":
            self.stages[0].eval()
        return self

    @property
    def reads_waveform(self) -> bool:
        """True when the body is a speech encoder (it reads 16 kHz waveforms, not spectrogram images)."""
        return isinstance(self.body, SpeechEncoder)

    def encoders(self) -> list[dict[str, Any]]:
        """What turns audio into the vectors the head reads, in order, each with the identity of its weights."""
        if self.reads_waveform:
            out = [self.body.spec()]
        else:
            out = [{"kind": "image", "name": self.backbone, "dim": self.embed_dim}]
        if self.acoustic:
            from .acoustic import acoustic_dim

            out.append({"kind": "functionals", "name": self.acoustic, "dim": acoustic_dim(self.acoustic)})
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Body output: ``(batch, embed_dim)`` embeddings of ``(batch, 3, H, W)`` images."""
        if self.reads_waveform:
            raise ModelError(f"{self.backbone} reads waveforms: use model.body.encode(signal)")
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.reads_waveform:
            raise ModelError(f"{self.backbone} reads waveforms: use model.classify(model.body.encode(signal)[None])")
        if self.acoustic:
            raise ModelError("this model also reads acoustic functionals: use model.classify(vectors)")
        return self.head(self.body(images))

    def vectors(self, embeddings: torch.Tensor, functionals: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """What the head reads: embeddings, with the acoustic functionals appended when the model uses them."""
        if not self.acoustic:
            return embeddings
        if functionals is None:
            raise ModelError(f"this model needs {self.acoustic} acoustic functionals besides the spectrograms")
        from .acoustic import compress

        return torch.cat([embeddings, torch.from_numpy(compress(functionals))], dim=1)

    def temperature_of(self, speaker_normalized: bool = False) -> float:
        """Softmax temperature of ``head`` (or of ``speaker_head``)."""
        return self.speaker_temperature if speaker_normalized else self.temperature

    def classify(self, vectors: torch.Tensor, speaker_normalized: bool = False) -> torch.Tensor:
        """Logits of :meth:`vectors` (``speaker_normalized``: already normalised per speaker, use ``speaker_head``)."""
        if speaker_normalized:
            if self.normalize != "speaker":
                raise ModelError("this model was trained without speaker normalisation; predict without it")
            return self.speaker_head(vectors)
        return self.head(vectors)


def _linear_head(dim: int, n_classes: int, dropout: float) -> nn.Module:
    # Embeddings and compressed functionals have unlike spreads: a low floor keeps the small ones.
    return nn.Sequential(Standardize(dim, floor=0.01), nn.Dropout(dropout), nn.Linear(dim, n_classes))


def software_versions() -> dict[str, str]:
    import librosa
    import numpy
    import timm
    import torchvision

    return {
        "emovox": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "librosa": librosa.__version__,
        "numpy": numpy.__version__,
    } | _optional_version("transformers")


def _optional_version(module: str) -> dict[str, str]:
    import importlib.metadata

    try:
        return {module: importlib.metadata.version(module)}
    except importlib.metadata.PackageNotFoundError:
        return {}


def save_model(
    model: EmotionClassifier,
    directory: str | Path,
    features: FeatureConfig,
    training: dict[str, Any] | None = None,
    *,
    half: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` (safetensors weights + JSON config)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    if (directory / WEIGHTS_FILE).exists() and not overwrite:
        raise ModelError(f"{directory}: already holds a model; choose another folder or allow overwriting")
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    config = {
        "format": "emovox-model/1",
        "labels": model.labels,
        "backbone": model.backbone,
        "finetune": model.finetune,
        "acoustic": model.acoustic,
        "normalize": model.normalize,
        "encoders": model.encoders(),
        "features": features.to_dict(),
        "training": training or {},
        "calibration": {"temperature": model.temperature, "speaker_temperature": model.speaker_temperature},
        "versions": software_versions(),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def load_model(directory: str | Path) -> tuple[EmotionClassifier, FeatureConfig, dict[str, Any]]:
    """Read a model directory written by :func:`save_model`; returns ``(model, features, config)``."""
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"{directory}: not an emovox model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
        if not isinstance(config, dict):
            raise ValueError(f"expected a JSON object, found {type(config).__name__}")
        labels, backbone = config["labels"], config["backbone"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
            raise ValueError("'labels' must be a list of at least two label names")
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise ValueError(f"'labels' repeats {', '.join(duplicates)}")
        if not isinstance(backbone, str):
            raise ValueError("'backbone' must be a name")
        features = FeatureConfig.from_dict(config["features"])
        calibration = config.get("calibration") or {}
        if not isinstance(calibration, dict):
            raise ValueError("'calibration' must be a JSON object")
        temperatures = [_temperature(calibration, k) for k in ("temperature", "speaker_temperature")]
        encoders = config.get("encoders") or []
        if not isinstance(encoders, list) or not all(isinstance(e, dict) for e in encoders):
            raise ValueError("'encoders' must be a list of objects")
    except (ValueError, KeyError, TypeError, EmovoxError) as err:
        raise ModelError(f"{cfg_path}: malformed model config ({err})") from None
    try:
        speech = next((e for e in encoders if e.get("kind") == "speech"), None)
        if is_speech_encoder(backbone) and speech is None:
            raise ModelError(f"backbone {backbone!r} is a speech encoder, but the config has no 'encoders' entry describing it")
        model = EmotionClassifier(backbone, labels, weights=None, finetune=config.get("finetune", "none"),
                                  acoustic=config.get("acoustic"), normalize=config.get("normalize", "none"), speech=speech)
    except EmovoxError as err:
        raise ModelError(f"{cfg_path}: {err}") from None
    try:
        state = load_file(str(w_path))
    except Exception as err:
        raise ModelError(f"{w_path}: cannot read weights ({err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    linear = [v for k, v in state.items() if k.startswith("head.") and k.endswith(".weight") and v.ndim == 2]
    head = linear[-1] if linear else None  # the head's last linear layer: one row per label
    if head is not None and head.shape[0] != len(labels):
        raise ModelError(f"{cfg_path} lists {len(labels)} labels but the weights in {w_path.name} classify {head.shape[0]}: "
                         "config and weights belong to different models")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{w_path}: weights do not match backbone {backbone!r}: {str(err).splitlines()[0]}") from None
    model.temperature, model.speaker_temperature = temperatures
    return model.eval(), features, config


def _temperature(calibration: dict[str, Any], key: str) -> float:
    """A softmax temperature from the config: a positive finite number (1.0 when absent)."""
    value = calibration.get(key, 1.0)
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"calibration {key} must be a positive number, not {value!r}")
    return float(value)
