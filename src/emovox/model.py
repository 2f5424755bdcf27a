"""The emotion classifier (backbone body + new head) and its on-disk format.

A model directory holds ``model.safetensors`` (weights) and ``config.json``
(labels, backbone, feature config, training config, software versions).
Nothing is pickled.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .backbones import Weights, build_backbone, input_spec
from .errors import ModelError
from .features import FeatureConfig

FINETUNE = ("none", "last", "all")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class EmotionClassifier(nn.Module):
    """A pretrained CNN body and a new classification head over ``labels``.

    ``finetune`` chooses what trains: ``"none"`` (body frozen, the recipe),
    ``"last"`` (the last blocks of the body too) or ``"all"``.
    """

    def __init__(
        self,
        backbone: str,
        labels: list[str],
        weights: Weights = "imagenet",
        finetune: str = "none",
        dropout: float = 0.2,
    ):
        super().__init__()
        if finetune not in FINETUNE:
            raise ModelError(f"finetune must be one of {', '.join(FINETUNE)}, not {finetune!r}")
        if len(labels) < 2:
            raise ModelError(f"a classifier needs at least 2 labels, got {labels}")
        parts = build_backbone(backbone, len(labels), weights, dropout)
        self.backbone = backbone
        self.labels = list(labels)
        self.finetune = finetune
        self.spec = input_spec(backbone)
        #: softmax temperature fitted on held-out data (1.0: uncalibrated)
        self.temperature = 1.0
        self.embed_dim = parts.embed_dim
        self.body = parts.body
        self.head = parts.head
        for p in self.body.parameters():
            p.requires_grad = finetune == "all"
        if finetune == "last":
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

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Body output: ``(batch, embed_dim)`` embeddings of ``(batch, 3, H, W)`` images."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


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
    }


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
        "features": features.to_dict(),
        "training": training or {},
        "calibration": {"temperature": model.temperature},
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
        labels, backbone = config["labels"], config["backbone"]
        features = FeatureConfig.from_dict(config["features"])
    except (ValueError, KeyError) as err:
        raise ModelError(f"{cfg_path}: malformed model config ({err})") from None
    model = EmotionClassifier(backbone, labels, weights=None, finetune=config.get("finetune", "none"))
    try:
        state = load_file(str(w_path))
    except Exception as err:
        raise ModelError(f"{w_path}: cannot read weights ({err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{w_path}: weights do not match backbone {backbone!r}: {str(err).splitlines()[0]}") from None
    model.temperature = float(config.get("calibration", {}).get("temperature", 1.0))
    return model.eval(), features, config
