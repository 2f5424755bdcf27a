"""The one scoring core: prepared inputs -> probabilities, familiarity and the head that answered.

Every face scores through :meth:`EmotionRecognizer.score <emovox.inference.recognizer.EmotionRecognizer.score>`:
``predict`` and ``predict_files``, the timeline of a recording (:mod:`.segments`), a live stream (:mod:`.live`) and
both batch engines. What they get back is a :class:`Scores`: the gate (an ``ood_score`` per input, judged on the
loudest stretch of a long one and given the second opinion of the voice-activity detector) and the heads (per file,
or per speaker from running statistics) are applied there, once, the same way for all of them.

Timelines and live streams type against :class:`Scorer`, the small part of the recognizer they use, so that the
recognizer can build them without a circle of imports.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..model.familiar import unfamiliar
from .speakers import SpeakerBook


@dataclass(frozen=True)
class Scores:
    """What :meth:`Scorer.score` gives for ``n`` prepared inputs.

    Attributes:
        probabilities: ``(n, n_labels)`` calibrated probabilities (an unfamiliar input's are the per-file head's,
            and it joins no speaker's statistics).
        ood: ``(n,)`` distance from the training speech as a multiple of the threshold (above 1: unfamiliar, see
            :attr:`known`); ``None`` without a familiarity gate.
        heads: per input, which head answered: ``"file"`` or ``"speaker"``.
        vectors: ``(n, vector_dim)``, what the heads read (``None`` when an exported network never showed them and
            they were not asked for).
    """

    probabilities: np.ndarray
    ood: np.ndarray | None
    heads: list[str]
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.heads)

    @property
    def known(self) -> np.ndarray:
        """``(n,)`` True where the input is like the speech the model knows (and gets an emotion)."""
        return np.ones(len(self), bool) if self.ood is None else ~unfamiliar(self.ood)

    def ood_score(self, i: int) -> float | None:
        return None if self.ood is None else float(self.ood[i])


def concat_scores(parts: Sequence[Scores], n_labels: int, dim: int, gated: bool) -> Scores:
    """The :class:`Scores` of several batches as one (their vectors kept); empty shapes when there are none."""
    if not parts:
        return Scores(np.zeros((0, n_labels), np.float32), np.zeros(0, np.float32) if gated else None, [],
                      np.zeros((0, dim), np.float32))
    ood = None if parts[0].ood is None else np.concatenate([p.ood for p in parts])
    vectors = None if any(p.vectors is None for p in parts) else np.concatenate([p.vectors for p in parts])
    return Scores(np.concatenate([p.probabilities for p in parts]), ood, [h for p in parts for h in p.heads], vectors)


class Scorer(Protocol):
    """What timelines and live streams need of a recognizer (:class:`~emovox.inference.recognizer.EmotionRecognizer`
    is one)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def can_adapt(self) -> bool:
        """The model has a speaker-normalised head."""
        ...

    def featurize(self, x: Any, sample_rate: int | None = None, source: str | None = None, gate: bool = True) -> Any: ...

    def score(self, items: Sequence[Any], keys: Sequence[str | None] | None = None, *, book: SpeakerBook | None = None,
              same_speaker: bool = False, vectors: np.ndarray | None = None, keep_vectors: bool = False,
              refuse: Sequence[str] | None = None, batch_size: int = 32) -> Scores: ...

    def vectors(self, items: Sequence[Any], batch_size: int = 32) -> torch.Tensor: ...

    def classify(self, vectors: torch.Tensor, same_speaker: bool = False) -> np.ndarray: ...

    def speaker_probabilities(self, vectors: np.ndarray, key: str, book: SpeakerBook) -> np.ndarray: ...


__all__ = ["Scorer", "Scores"]
