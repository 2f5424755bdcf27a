"""Encoders: each turns decoded audio into one vector per utterance.

Three kinds feed emovox models:

- image CNNs on log-mel spectrograms (:mod:`emovox.backbones`: VGG16, EfficientNet-Lite0);
- speech transformers on the waveform (:mod:`emovox.encoders.speech`: Whisper,
  wav2vec 2.0, HuBERT, WavLM, data2vec-audio through transformers);
- acoustic functionals (:mod:`emovox.acoustic`: openSMILE ComParE / eGeMAPS).

A model is encoders -> concatenation -> normalisation -> head(s); its config
lists each encoder with the identity of its weights (see ``encoders`` in a
model folder's ``config.json``).
"""
from __future__ import annotations

from .speech import NAMED as SPEECH_ENCODERS
from .speech import SpeechEncoder, is_speech_encoder

__all__ = ["SPEECH_ENCODERS", "SpeechEncoder", "is_speech_encoder"]
