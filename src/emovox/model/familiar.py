"""How familiar an input is: its distance from the speech a model was trained on (an out-of-distribution gate).

Calibrated probabilities only mean something on inputs like the training data: a pure tone, a chirp or a chord
still gets an emotion with high confidence from the heads. :class:`Familiarity` measures how far the vector the
heads read lies from every emotion class of the training speech: the vectors are standardised with the training
statistics, projected on their ``k`` main directions (PCA), whitened with the pooled within-class covariance there,
and the score is the squared distance to the nearest class mean per direction (a Mahalanobis distance, as in
Lee et al., 2018, "A simple unified framework for detecting out-of-distribution samples"), divided by the model's
threshold. A score above 1 means *not speech this model knows*: the input gets no emotion.

Only the main directions are looked at: distance off them (a PCA residual) also flagged speech of new corpora
in the measurements of ``bench/ood.py`` (other languages and rooms differ there), so it is not used.

The threshold is set at training time by cross-validation over speakers (and over corpora, when there are
several), so that 99.5 % of held-out real speech scores below it (:func:`emovox.training.familiar.fit_familiarity`).
It is saved beside the weights as ``familiarity.safetensors`` (see :mod:`emovox.model.io`); scoring one vector is
one ``k x dim`` matrix product (well under a millisecond).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

FAMILIARITY_FILE = "familiarity.safetensors"
#: the default number of principal directions kept
COMPONENTS = 256
#: the share of held-out speech the threshold lets through
PASS_RATE = 0.995
#: with a second opinion: the share of new speakers' held-out speech that passes on its distance alone (the rest
#: up to the ceiling passes when the neural voice-activity detector hears speech in it)
UNCONFIRMED_RATE = 0.95
#: the share of held-out speech (new speakers, new corpora, channels) under the ceiling of the second opinion
CONFIRMED_RATE = 0.999
#: the second opinion hears speech when the neural voice-activity detector finds this many seconds of it, or when
#: its mean speech probability over the loud frames reaches :data:`CONFIRM_MEAN_P` (see
#: :func:`emovox.audio.vad.speech_evidence`: shouting and speech through rooms or telephone lines mostly score far
#: above it, the synthetic probes of :mod:`emovox.audio.probes` below it)
CONFIRM_SPEECH_S = 0.25
CONFIRM_MEAN_P = 0.1


def unfamiliar(scores: np.ndarray) -> np.ndarray:
    """True where an ``ood_score`` says "not speech the model knows": above 1, or not a number."""
    return ~(np.asarray(scores) <= 1.0)


@dataclass
class Familiarity:
    """Distance of vectors from the training speech, as a multiple of the threshold (``> 1``: unfamiliar).

    ``mean`` ``(dim,)``: the training vectors' mean; ``projection`` ``(k, dim)``: standardise, project on the main
    directions and whiten, in one matrix; ``class_means`` ``(n_classes, k)``: each class's mean in that space;
    ``threshold``: the raw distance (per direction) that 1.0 stands for. ``info``: how it was fitted.
    """

    mean: np.ndarray
    projection: np.ndarray
    class_means: np.ndarray
    threshold: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    @property
    def components(self) -> int:
        return int(self.projection.shape[0])

    def distances(self, vectors: np.ndarray) -> np.ndarray:
        """Raw distance of each row of ``vectors`` ``(n, dim)`` to the nearest class, per direction."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ModelError(f"familiarity statistics are for vectors of length {self.dim}, not {v.shape[1:]}")
        t = (v - self.mean) @ self.projection.T
        d2 = (t * t).sum(1)[:, None] - 2.0 * t @ self.class_means.T + (self.class_means ** 2).sum(1)[None, :]
        return np.maximum(d2.min(1), 0.0) / self.components

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """``ood_score`` of each row: its distance as a multiple of the threshold (above 1: unfamiliar)."""
        return self.distances(vectors) / self.threshold

    @property
    def speech_ceiling(self) -> float:
        """How many times the threshold an input that the neural voice-activity detector hears as speech may lie
        from the training speech and still pass (``info["speech_ceiling"]``; 1: no second opinion). Speech through
        a telephone line, a room or a crowd, and speech of new corpora, lies further out than acted studio speech,
        while tones, chords and noise, which the detector does not call speech, stay refused at the threshold."""
        ceiling = self.info.get("speech_ceiling", 1.0)
        if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) or not 1.0 <= ceiling <= 100.0:
            raise ModelError(f"familiarity 'speech_ceiling' must be a number from 1 to 100, not {ceiling!r}")
        return float(ceiling)

    def second_opinion(self, scores: np.ndarray, is_speech: Callable[[int], bool]) -> np.ndarray:
        """``scores`` with those between 1 and :attr:`speech_ceiling` whose input ``is_speech(row)`` says is speech
        divided by the ceiling: judged against the higher threshold that applies to confirmed speech (so above 1
        still means unfamiliar)."""
        out = np.array(scores, dtype=np.float32, copy=True)
        ceiling = self.speech_ceiling
        if ceiling <= 1.0:
            return out
        for i in np.flatnonzero((out > 1.0) & (out <= ceiling)):
            if is_speech(int(i)):
                out[i] /= ceiling
        return out

    def with_threshold(self, threshold: float, **info: Any) -> Familiarity:
        if not threshold > 0:
            raise ModelError(f"a familiarity threshold must be positive, not {threshold!r}")
        return Familiarity(self.mean, self.projection, self.class_means, float(threshold), self.info | info)

    def with_info(self, **info: Any) -> Familiarity:
        return Familiarity(self.mean, self.projection, self.class_means, self.threshold, self.info | info)

    # -- fitting and saving ----------------------------------------------------
    @classmethod
    def fit(cls, vectors: np.ndarray, labels: Sequence[int] | np.ndarray, components: int = COMPONENTS,
            seed: int = 0) -> Familiarity:
        """Statistics of training ``vectors`` ``(n, dim)`` with class ``labels`` (threshold 1.0: set it with
        :meth:`with_threshold`)."""
        from sklearn.utils.extmath import randomized_svd

        x = np.asarray(vectors, dtype=np.float32)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 3:
            raise ModelError(f"familiarity needs at least 3 training vectors with one label each (got {x.shape}, {len(y)} labels)")
        mean = x.mean(0)
        sd = x.std(0)
        sd = np.maximum(sd, 0.01 * float(sd.mean()) + 1e-6)  # near-constant dimensions do not explode
        z = (x - mean) / sd
        # a covariance is only as good as the vectors behind it: at least 10 per direction kept
        k = int(max(1, min(components, len(x) // 10, x.shape[1])))
        _, _, vt = randomized_svd(z, k, n_iter=4, random_state=seed)
        t = z @ vt.T
        classes = np.unique(y)
        means = np.stack([t[y == c].mean(0) for c in classes])
        within = t - means[np.searchsorted(classes, y)]
        cov = np.cov(within.T).reshape(k, k) + 1e-3 * np.eye(k)
        white = np.linalg.cholesky(np.linalg.inv(cov)).T  # white.T @ white = cov^-1
        projection = (white @ vt) / sd  # (k, dim): standardise, project, whiten
        return cls(mean.astype(np.float32), projection.astype(np.float32), (means @ white.T).astype(np.float32),
                   1.0, {"components": k, "n_vectors": int(len(x)), "classes": int(len(classes))})

    def tensors(self) -> dict[str, Any]:
        import torch

        proj = torch.from_numpy(self.projection)
        half = proj.half()  # half the size; kept in fp32 when some value does not fit
        return {"mean": torch.from_numpy(self.mean), "projection": half if torch.isfinite(half).all() else proj,
                "class_means": torch.from_numpy(self.class_means),
                "threshold": torch.tensor([self.threshold], dtype=torch.float64)}

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.tensors().items()}, str(path), metadata={"format": "emovox-familiarity/1"})
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, info: dict[str, Any] | None = None) -> Familiarity:
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))
            mean, proj, means = (t[k].float().numpy() for k in ("mean", "projection", "class_means"))
            threshold = float(t["threshold"].double().item())
        except Exception as err:
            raise ModelError(f"{path}: cannot read familiarity statistics ({err})") from None
        if proj.ndim != 2 or mean.shape != (proj.shape[1],) or means.ndim != 2 or means.shape[1] != proj.shape[0] \
                or not threshold > 0 or not all(np.isfinite(a).all() for a in (mean, proj, means)):
            raise ModelError(f"{path}: malformed familiarity statistics (shapes {mean.shape}, {proj.shape}, {means.shape})")
        return cls(mean, proj, means, threshold, dict(info or {}))


__all__ = ["COMPONENTS", "CONFIRMED_RATE", "UNCONFIRMED_RATE", "CONFIRM_MEAN_P", "CONFIRM_SPEECH_S", "FAMILIARITY_FILE", "PASS_RATE", "Familiarity", "unfamiliar"]
