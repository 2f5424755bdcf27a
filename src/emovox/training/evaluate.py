"""Scores of a trained model on labelled utterances."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..corpora.base import Utterance
from ..errors import EmovoxError
from ..inference.recognizer import EmotionRecognizer
from ..labels import sort_labels
from .data import model_inputs, prepare, score, speaker_inputs


def evaluate(
    rec: EmotionRecognizer, utts: Sequence[Utterance], *, workers: int | None = None, cache_dir: str | Path | None = None,
    use_cache: bool = True, progress: bool = True, speaker_norm: bool = False, restrict_labels: bool = False,
    channel: str | None = None,
) -> dict[str, Any]:
    """Metrics of ``rec``'s model on labelled utterances (see :func:`emovox.training.metrics.classification_metrics`).

    ``speaker_norm=True`` normalises each speaker's recordings together and
    scores the speaker-normalised head. ``restrict_labels=True`` also scores
    with the argmax restricted to the labels the utterances use (a
    4-emotion corpus scored by an 8-emotion model), under ``"restricted"``.
    Unreadable files are skipped and listed under ``"skipped"``. ``channel``: every file heard through that
    simulated channel first (:data:`emovox.audio.channels.CHANNELS`: ``telephone``, ``room``, ``babble``, ``far``
    ...; seeded, babble from the corpus's other speakers; frozen encoders), under ``"channel"``.
    """
    model = rec.model
    if speaker_norm:
        model.require_speaker_head()
    data = prepare(utts, model.encoders[0].preparer(), workers=workers, cache_dir=cache_dir, use_cache=use_cache,
                   progress=progress, log=lambda m: None)
    frozen = model.finetune == "none"
    if channel not in (None, "clean"):
        if not frozen:
            raise EmovoxError("--channel scores the vectors of frozen encoders (not a fine-tuned model)")
        from .augment import channel_vectors

        inputs = torch.from_numpy(channel_vectors(model, data, channel, progress=progress))
    else:
        inputs = model_inputs(model, data, progress=progress) if frozen or speaker_norm else data.specs
    if speaker_norm:
        inputs = speaker_inputs(inputs, data.utts)
    idx = range(len(data.utts))
    metrics, _ = score(model, inputs, idx, data.utts, speaker=speaker_norm)
    if restrict_labels:
        used = sort_labels(u.emotion for u in data.utts)
        metrics["restricted"], _ = score(model, inputs, idx, data.utts, speaker=speaker_norm, restrict=used)
    metrics["skipped"] = data.skipped
    if channel:
        metrics["channel"] = channel
    return metrics
