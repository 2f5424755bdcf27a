"""The emotion classifier: encoders -> concatenate -> normalise -> heads.

>>> from emovox.model import EmotionClassifier
>>> m = EmotionClassifier("efficientnet_lite0", ["angry", "sad"], weights=None)   # doctest: +SKIP
>>> m.encoders[0].kind, m.vector_dim                                             # doctest: +SKIP
('image', 1280)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..encoders import Encoder, build_encoder
from ..errors import ModelError
from ..features import FeatureConfig
from .familiar import Familiarity
from .heads import linear_head, speaker_normalize

FINETUNE = ("none", "last", "all")
#: How feature vectors are normalised before the head: ``"none"`` (training statistics) or ``"speaker"``
#: (also a head on each speaker's own statistics, see :func:`emovox.model.heads.speaker_normalize`).
NORMALIZE = ("none", "speaker")


def shorthand(backbone: str, weights: Any = "imagenet", acoustic: str | None = None,
              features: FeatureConfig | None = None) -> list[Encoder]:
    """The encoder list that ``backbone=`` / ``acoustic=`` name: the backbone, then the functionals set if any."""
    encoders = [build_encoder(backbone, weights, features=features)]
    if acoustic:
        encoders.append(build_encoder(acoustic))
    return encoders


class EmotionClassifier(nn.Module):
    """Pretrained encoders, their vectors concatenated, and new classification heads over ``labels``.

    ``encoders``: a list of :class:`~emovox.encoders.Encoder` s, or one encoder's name as shorthand (an image CNN
    on log-mels such as ``vgg16`` or ``efficientnet_lite0``, a speech encoder such as ``whisper_tiny_en`` or
    ``hf:HUB_ID_OR_FOLDER``), built with ``weights`` and, when ``acoustic`` names a functionals set, followed by it.
    ``features``: the spectrogram settings of a shorthand image encoder.

    Heads (:attr:`heads`): ``file`` classifies each input alone; with ``normalize="speaker"`` a ``speaker`` head
    classifies vectors normalised by their speaker's own statistics. A model of one encoder that brings its own
    head (VGG16 keeps its pretrained FC layers) uses it as the ``file`` head; otherwise heads are standardise ->
    dropout -> linear. ``finetune`` (one encoder that supports it): ``"none"`` (frozen, the recipe), ``"last"``
    (its last blocks train too) or ``"all"``.

    Learned state: the heads' weights, and :attr:`temperatures_` (softmax temperatures fitted on held-out data by
    :meth:`calibrate`; 1.0 until then).
    """

    def __init__(
        self,
        encoders: str | Encoder | Sequence[Encoder],
        labels: Sequence[str],
        weights: Any = "imagenet",
        finetune: str = "none",
        dropout: float = 0.2,
        acoustic: str | None = None,
        normalize: str = "none",
        features: FeatureConfig | None = None,
    ):
        super().__init__()
        if finetune not in FINETUNE:
            raise ModelError(f"finetune must be one of {', '.join(FINETUNE)}, not {finetune!r}")
        if normalize not in NORMALIZE:
            raise ModelError(f"normalize must be one of {', '.join(NORMALIZE)}, not {normalize!r}")
        labels = list(labels)
        if len(labels) < 2:
            raise ModelError(f"a classifier needs at least 2 labels, got {labels}")
        if isinstance(encoders, str):
            encoders = shorthand(encoders, weights, acoustic, features)
        elif isinstance(encoders, Encoder):
            encoders = [encoders]
        encoders = list(encoders)
        if not encoders:
            raise ModelError("a classifier needs at least one encoder")
        if finetune != "none":
            if len(encoders) > 1 or normalize != "none":
                raise ModelError("fine-tuning (finetune last/all) works on a model of one encoder and no speaker head")
            if not hasattr(encoders[0], "finetune"):
                raise ModelError(f"encoder {encoders[0].name!r} is used frozen (finetune='none')")
            encoders[0].finetune(finetune)
        self.encoders = nn.ModuleList(encoders)
        self.labels = labels
        self.finetune = finetune
        self.dropout = float(dropout)
        #: length of the vectors the heads read: the encoders' vectors, concatenated in order
        self.vector_dim = sum(e.dim for e in encoders)
        own = getattr(encoders[0], "head", None) if len(encoders) == 1 else None
        heads = {"file": own(len(labels), dropout) if own else linear_head(self.vector_dim, len(labels), dropout)}
        if normalize == "speaker":
            heads["speaker"] = linear_head(self.vector_dim, len(labels), dropout)
        self.heads = nn.ModuleDict(heads)
        self.temperatures_ = {name: 1.0 for name in heads}
        #: how far inputs lie from the training speech (:class:`~emovox.model.familiar.Familiarity`), when fitted
        self.familiarity: Familiarity | None = None

    # -- what it is -----------------------------------------------------------
    @property
    def backbone(self) -> str:
        """The encoders' names, joined by ``+`` (for display and rows)."""
        return "+".join(e.name for e in self.encoders)

    @property
    def has_speaker_head(self) -> bool:
        """True when the model can classify several recordings of one speaker together (``same_speaker``)."""
        return "speaker" in self.heads

    @property
    def normalize(self) -> str:
        return "speaker" if self.has_speaker_head else "none"

    @property
    def features(self) -> FeatureConfig:
        """The spectrogram settings of the model's spectrogram encoders (the defaults when it has none)."""
        return next((e.features for e in self.encoders if isinstance(getattr(e, "features", None), FeatureConfig)),
                    FeatureConfig())

    @property
    def head(self) -> nn.Module:
        return self.heads["file"]

    @property
    def speaker_head(self) -> nn.Module:
        self.require_speaker_head()
        return self.heads["speaker"]

    def require_speaker_head(self) -> None:
        """:class:`ModelError` unless the model has a speaker-normalised head."""
        if not self.has_speaker_head:
            raise ModelError("this model was trained without speaker normalisation (train with --recipe speech or robust); "
                             "predict without same_speaker / speaker adaptation")

    def head_specs(self) -> dict[str, dict[str, Any]]:
        """Each head as the model config describes it: its input normalisation and softmax temperature."""
        return {name: {"normalization": "speaker" if name == "speaker" else "training",
                       "temperature": self.temperatures_[name], "input_dim": self.vector_dim} for name in self.heads}

    # -- learned state --------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.temperatures_["file"]

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.temperatures_["file"] = float(value)

    @property
    def speaker_temperature(self) -> float:
        return self.temperatures_.get("speaker", 1.0)

    @speaker_temperature.setter
    def speaker_temperature(self, value: float) -> None:
        self.temperatures_["speaker"] = float(value)

    def calibrate(self, temperature: float, speaker: bool = False) -> EmotionClassifier:
        """Set the softmax temperature of the ``file`` (or ``speaker``) head; returns self."""
        if not temperature > 0:
            raise ModelError(f"a softmax temperature must be positive, not {temperature!r}")
        self.temperatures_["speaker" if speaker else "file"] = float(temperature)
        return self

    def temperature_of(self, speaker_normalized: bool = False) -> float:
        return self.temperatures_["speaker" if speaker_normalized else "file"]

    # -- computation ----------------------------------------------------------
    def train(self, mode: bool = True) -> EmotionClassifier:
        super().train(mode)
        for e in self.encoders:
            e.train(mode)  # each encoder keeps its frozen parts in eval mode
        return self

    def vectors(self, inputs: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
        """What the heads read, ``(n, vector_dim)``: each encoder's vectors of its prepared inputs (``inputs[k]``
        for encoder ``k``), concatenated."""
        if len(inputs) != len(self.encoders):
            raise ModelError(f"{len(inputs)} input lists for {len(self.encoders)} encoders")
        with torch.inference_mode():
            return torch.cat([e.encode(x) for e, x in zip(self.encoders, inputs)], dim=1)

    def classify(self, vectors: torch.Tensor, speaker_normalized: bool = False) -> torch.Tensor:
        """Logits of :meth:`vectors` (``speaker_normalized``: already normalised per speaker: the ``speaker`` head)."""
        return (self.speaker_head if speaker_normalized else self.head)(vectors)

    def probabilities(self, vectors: torch.Tensor, same_speaker: bool = False) -> np.ndarray:
        """Calibrated probabilities ``(n, n_labels)`` of :meth:`vectors`; ``same_speaker``: they are one speaker's,
        normalised together first and read by the ``speaker`` head."""
        if same_speaker:
            self.require_speaker_head()
            vectors = torch.from_numpy(speaker_normalize(vectors.numpy()))
        with torch.inference_mode():
            logits = self.classify(vectors, same_speaker)
        return torch.softmax(logits / self.temperature_of(same_speaker), dim=1).numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of what a one-encoder model's network reads (images for a CNN): the whole network,
        for fine-tuning and ONNX export."""
        if len(self.encoders) != 1:
            raise ModelError(f"a model of {len(self.encoders)} encoders runs as model.classify(model.vectors(inputs))")
        return self.head(self.encoders[0](x))
