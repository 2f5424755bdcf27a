"""Heads: what reads the concatenated encoder vectors, and how those vectors are normalised first.

Two heads a model may have:

- ``file``: every input alone, its vectors standardised with the training data's statistics;
- ``speaker``: several recordings of one speaker together, their vectors normalised by that speaker's own
  statistics (:func:`speaker_normalize`), for when the speaker is known at prediction time.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from ..encoders.base import Standardize
from ..errors import EmovoxError

def linear_head(dim: int, n_classes: int, dropout: float) -> nn.Module:
    """Standardise, dropout, linear: the head every multi-encoder model and every speaker head uses."""
    # Embeddings and compressed functionals have unlike spreads: a low floor keeps the small ones.
    return nn.Sequential(Standardize(dim, floor=0.01), nn.Dropout(dropout), nn.Linear(dim, n_classes))


def speaker_normalize(x: np.ndarray, groups: Sequence[object] | None = None, floor: float = 0.01) -> np.ndarray:
    """Z-score the rows of ``x`` within each group (speaker) of ``groups``.

    ``groups=None`` treats all rows as one speaker. A group of one row
    becomes zeros (it carries no information about its speaker's range), so
    normalise only groups of several recordings. A dimension's spread within
    a group is floored at ``floor`` times its spread over all rows, so a
    dimension nearly constant for one speaker does not explode.
    """
    x = np.asarray(x, dtype=np.float64)
    keys = np.zeros(len(x), dtype=int) if groups is None else np.asarray([str(g) for g in groups])
    if len(keys) != len(x):
        raise EmovoxError(f"{len(keys)} speaker labels for {len(x)} feature vectors")
    low = floor * x.std(0) + 1e-8
    out = np.empty_like(x)
    for key in np.unique(keys):
        rows = keys == key
        part = x[rows]
        out[rows] = (part - part.mean(0)) / np.maximum(part.std(0), low)
    return out.astype(np.float32)


