"""What one training run is: :class:`TrainConfig` and the named recipes of ``emovox train --recipe``."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..encoders import Encoder, build_encoder
from ..errors import EmovoxError
from ..features import FeatureConfig
from ..model.classifier import shorthand

#: How a head is fitted (:mod:`emovox.training.solvers`).
SOLVER_NAMES = ("adam", "logreg")
#: How the vectors of several encoders meet the head: ``concat`` (one head reads them all) or ``average``
#: (one logistic regression per encoder, their logits averaged; ``solver="logreg"``).
FUSIONS = ("concat", "average")
#: Where the softmax temperatures are fitted: on the ``validation`` part, or on out-of-fold logits of the
#: training and validation speakers (``oof``: speaker-grouped folds, frozen encoders).
CALIBRATIONS = ("validation", "oof")
#: Learning-rate schedules of ``solver="adam"``.
SCHEDULES = ("constant", "cosine")

@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved in the model's config)."""

    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    finetune: str = "none"
    split: str = "random"
    test_speakers: tuple[str, ...] | None = None
    val_speakers: tuple[str, ...] | None = None
    #: words/sentences (``corpus:text``) whose utterances all go to the test part (``split="speaker"``)
    test_texts: tuple[str, ...] | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.2
    seed: int = 0
    #: the model's encoders by name, in order (e.g. two speech encoders; each with its standard weights or, for
    #: ``hf:FOLDER``, those of the folder); overrides ``backbone``, ``weights`` and ``acoustic``
    encoders: tuple[str, ...] | None = None
    #: acoustic functionals appended to the embeddings (``"compare"``, ``"egemaps"``; frozen backbone only)
    acoustic: str | None = None
    #: ``"speaker"``: also train a head on per-speaker normalised vectors (see :func:`emovox.model.heads.speaker_normalize`)
    normalize: str = "none"
    #: how the head is fitted: ``"adam"`` (epochs of Adam, best on validation) or ``"logreg"``
    #: (L2-regularised multinomial logistic regression, scikit-learn's L-BFGS; frozen backbone only)
    solver: str = "adam"
    #: inverse L2 strength of ``solver="logreg"``
    logreg_c: float = 0.01
    #: seeded augmented copies of every training file (:mod:`emovox.augment`; frozen backbone only)
    augment: int = 0
    #: seeded channel copies of every training file: each through a simulated room, telephone line, codec, babble
    #: of other training speakers, noise or a chain of these (:mod:`emovox.audio.channels`; frozen backbone only)
    channels: int = 0
    #: also train on every training file as the timeline cuts it (its voice-activity span): timeline segments
    #: then look like what the heads saw (frozen backbone only; measured in bench/window_match.py)
    timeline_cuts: bool = False
    #: learning-rate schedule of ``solver="adam"``: ``"constant"`` or ``"cosine"`` (decay to 0 by the last epoch)
    schedule: str = "constant"
    #: epochs of linear learning-rate warm-up from 0 (``solver="adam"``)
    warmup_epochs: int = 0
    #: learning rate of the trainable backbone layers relative to the head's (discriminative rates; ``finetune`` last/all)
    body_lr_scale: float = 1.0
    #: stop after this many epochs without a better validation score (``None``: run every epoch)
    patience: int | None = None
    #: SpecAugment on training spectrograms (``finetune="all"``): this many time masks and as many frequency masks
    spec_augment: int = 0
    #: where ``solver="adam"`` trains: ``"cpu"``, ``"cuda"`` or ``"auto"`` (a GPU when there is one)
    device: str = "cpu"
    #: several encoders: ``"concat"`` (one head over their concatenated vectors) or ``"average"`` (a logistic
    #: regression per encoder, logits averaged: stored as one linear head over the concatenation)
    fusion: str = "concat"
    #: temperatures fitted on the ``"validation"`` part, or on ``"oof"`` logits: each of ``calibration_folds``
    #: speaker-grouped folds of the training and validation utterances scored by heads fitted on the others
    calibration: str = "validation"
    calibration_folds: int = 5
    #: weight every class by the inverse of its share of the training part (both solvers)
    balance: bool = False
    #: weight every corpus by the inverse of its share of the training part, so that a corpus of many files
    #: from few voices does not dominate the head (``solver="logreg"``)
    balance_corpora: bool = False
    #: fit the familiarity gate (:mod:`emovox.model.familiar`): inputs unlike all training speech get no emotion
    #: (frozen backbone only; its threshold by cross-validation over speakers and corpora)
    familiarity: bool = True

    def __post_init__(self) -> None:
        if self.encoders is not None:
            object.__setattr__(self, "encoders", tuple(self.encoders) or None)
        if self.acoustic in ("none", ""):
            object.__setattr__(self, "acoustic", None)  # the spelling TOML and the command line allow
        if self.solver not in SOLVER_NAMES:
            raise EmovoxError(f"solver must be one of {', '.join(SOLVER_NAMES)}, not {self.solver!r}")
        if self.augment < 0:
            raise EmovoxError(f"augment must be 0 or more copies, not {self.augment}")
        if self.channels < 0:
            raise EmovoxError(f"channels must be 0 or more copies, not {self.channels}")
        if self.channels and self.finetune != "none":
            raise EmovoxError("channel copies add vectors of a frozen backbone (finetune='none')")
        if self.timeline_cuts and self.finetune != "none":
            raise EmovoxError("timeline_cuts adds vectors of a frozen backbone (finetune='none')")
        if self.schedule not in SCHEDULES:
            raise EmovoxError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= max(self.epochs, 1):
            raise EmovoxError(f"warmup_epochs must be at least 0 and fewer than the {self.epochs} epochs, not {self.warmup_epochs}")
        if self.body_lr_scale <= 0:
            raise EmovoxError(f"body_lr_scale must be positive, not {self.body_lr_scale}")
        if self.patience is not None and self.patience < 1:
            raise EmovoxError(f"patience must be 1 or more epochs, not {self.patience}")
        if self.spec_augment < 0:
            raise EmovoxError(f"spec_augment must be 0 or more masks, not {self.spec_augment}")
        if self.balance_corpora and self.solver != "logreg":
            raise EmovoxError("balance_corpora weights the logistic-regression head (solver='logreg')")
        if self.calibration not in CALIBRATIONS:
            raise EmovoxError(f"calibration must be one of {', '.join(CALIBRATIONS)}, not {self.calibration!r}")
        if self.calibration == "oof" and (self.finetune != "none" or self.calibration_folds < 2):
            raise EmovoxError("calibration 'oof' refits the heads of frozen encoders (finetune='none') on 2 or more folds")
        if self.fusion not in FUSIONS:
            raise EmovoxError(f"fusion must be one of {', '.join(FUSIONS)}, not {self.fusion!r}")
        if self.fusion == "average" and self.solver != "logreg":
            raise EmovoxError("fusion 'average' fits one logistic regression per encoder (solver='logreg')")
        if self.device not in ("cpu", "cuda", "auto"):
            raise EmovoxError(f"device must be 'cpu', 'cuda' or 'auto', not {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test_speakers"] = list(self.test_speakers) if self.test_speakers else None
        d["val_speakers"] = list(self.val_speakers) if self.val_speakers else None
        d["test_texts"] = list(self.test_texts) if self.test_texts else None
        d["encoders"] = list(self.encoders) if self.encoders else None
        return d

    def build_encoders(self, features: FeatureConfig | None = None) -> list[Encoder]:
        """The encoders this configuration names (see :attr:`encoders`)."""
        if self.encoders:
            return [build_encoder(name, features=features) for name in self.encoders]
        return shorthand(self.backbone, self.weights, self.acoustic, features)


#: Named presets for ``emovox train --recipe``: TrainConfig fields, chosen by cross-validation
#: (the benchmarks page of the docs, "Unseen speakers"). ``plain``: the original recipe (frozen CNN, linear
#: head, Adam, 10 epochs). ``robust``: frozen EfficientNet-Lite0 embeddings with
#: pooled intermediate stages, ComParE functionals, two augmented copies of each
#: training file, per-speaker normalisation, L2 logistic regression. ``speech``: the frozen
#: Whisper tiny.en encoder (mean/std of every hidden state), per-speaker normalisation,
#: L2 logistic regression, trained on every file and on its timeline cut (its speech, as timeline segments are).
RECIPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "robust": {"backbone": "efficientnet_lite0_stages", "finetune": "none", "acoustic": "compare", "normalize": "speaker",
               "solver": "logreg", "logreg_c": 0.01, "augment": 2},
    "speech": {"backbone": "whisper_tiny_en", "finetune": "none", "acoustic": None, "normalize": "speaker", "solver": "logreg",
               "logreg_c": 0.01, "augment": 0, "timeline_cuts": True},
}


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name``, with ``overrides`` on top."""
    if name not in RECIPES:
        raise EmovoxError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return TrainConfig(**(RECIPES[name] | overrides))
