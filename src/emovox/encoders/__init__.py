"""Encoders: each turns decoded audio into one vector per utterance (the protocol: :mod:`.base`).

The kinds registered here:

- ``image``: ImageNet CNNs on log-mel spectrograms (:mod:`.image`: VGG16, EfficientNet-Lite0);
- ``speech``: speech transformers on the waveform (:mod:`.speech`: Whisper, wav2vec 2.0, HuBERT, WavLM,
  data2vec-audio through transformers);
- ``functionals``: acoustic functionals (:mod:`.functionals`: openSMILE ComParE / eGeMAPS).

A model is encoders -> concatenation -> normalisation -> head(s) (:mod:`emovox.model`). A new kind is one module
here that registers an :class:`~.base.Encoder` subclass, imported below.
"""
from __future__ import annotations

from . import functionals, image, speech  # noqa: F401 - each registers its kind
from .base import REGISTRY, Encoder, Preparer, Standardize, build_encoder, encoder_class, from_spec, names

__all__ = ["REGISTRY", "Encoder", "Preparer", "Standardize", "build_encoder", "encoder_class", "from_spec", "names"]
