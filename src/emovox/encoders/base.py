"""The encoder protocol and its registry.

An encoder turns decoded audio into one vector per utterance, in two halves:

- its :class:`Preparer` (small, picklable, no network): a decoded signal -> what the network reads (a log-mel
  spectrogram, the trimmed waveform, acoustic functionals). Training and inference both reach an encoder's input
  through it, from a file (:meth:`Preparer.file`) or from an array (``preparer(y, sr)``);
- :meth:`Encoder.encode`: a batch of prepared inputs -> ``(n, dim)`` vectors.

Each encoder describes itself as JSON (:meth:`Encoder.spec`, rebuilt by :func:`from_spec`; no paths of the machine
it was made on) and names what it computes by :meth:`Encoder.identity` (its settings and a digest of its weights),
which keys the vector cache and its ONNX export. A new kind of encoder is one module in this package that
subclasses :class:`Encoder` with the :func:`register` decorator, plus its import in ``encoders/__init__.py``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..audio.decode import load_audio
from ..errors import ModelError
from ..identity import digest

#: ``kind`` -> encoder class.
REGISTRY: dict[str, type[Encoder]] = {}


def register(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make an :class:`Encoder` subclass known by its ``kind``."""
    if not cls.kind or cls.kind in REGISTRY:
        raise ModelError(f"encoder kind {cls.kind!r} is empty or registered twice")
    REGISTRY[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Preparer:
    """Decoded audio -> an encoder's input. Subclasses are frozen dataclasses (picklable: batch workers and the
    parallel feature pass run them without the network).

    ``sample_rate``: the rate it wants its signal at (a file is decoded at that rate). ``cached``: its output is
    costly and worth computing in parallel worker processes and keeping on disk (spectrograms, functionals).
    """

    sample_rate: int = 16000
    cached: ClassVar[bool] = False
    #: its input is the (trimmed) waveform itself: the familiarity gate crops a long one and asks the voice-activity
    #: detector about it (:meth:`waveform_of`)
    waveform: ClassVar[bool] = False

    def __call__(self, y: np.ndarray, sr: int, source: str = "<array>") -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def file(self, path: str | Path) -> np.ndarray:
        """The input of the audio file ``path``: decoded at :attr:`sample_rate`, then prepared."""
        return self(load_audio(path, self.sample_rate), self.sample_rate, str(path))

    def waveform_of(self, prepared: np.ndarray) -> np.ndarray | None:
        """The waveform (at :attr:`sample_rate`) a prepared input is, or ``None`` when it is something else (a
        spectrogram, functionals)."""
        return prepared if self.waveform else None

    def digest(self) -> str:
        """Identity of what this preparer computes (keys cached inputs)."""
        return digest(type(self).__name__, repr(self), length=16)


class Encoder(nn.Module):
    """Base class of encoders (see the module docstring). Subclasses set ``kind`` and implement
    :attr:`dim`, :meth:`preparer`, :meth:`encode`, :meth:`spec`, :meth:`from_spec`, :meth:`handles` and
    :meth:`pretrained`."""

    kind: ClassVar[str] = ""
    #: can run on ONNX Runtime (:func:`emovox.runtime.accelerate.accelerate`): has :meth:`export_onnx`
    exportable: ClassVar[bool] = False
    #: moved to ONNX Runtime by ``engine="auto"`` at prediction time (a large speed-up, worth the first export)
    onnx_by_default: ClassVar[bool] = False
    #: and then with int8 weights (ONNX Runtime's dynamic quantisation): set where that was measured to cost
    #: under half a point of accuracy
    int8_by_default: ClassVar[bool] = False
    #: prepared inputs encoded per call of :meth:`encode` in bulk passes (training, evaluation)
    batch_size: ClassVar[int] = 1
    #: a model of this encoder alone runs as one network on batches of :meth:`network_input` (``emovox export``
    #: writes it whole as ``model.onnx``)
    whole_network: ClassVar[bool] = False
    #: names of the command line beyond :attr:`NAMES` (patterns such as ``hf:HUB_ID_OR_FOLDER``), with descriptions
    PATTERNS: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        #: ONNX Runtime session that :meth:`encode` runs when set (see :func:`emovox.runtime.accelerate.accelerate`)
        self.session = None
        self._digest: str | None = None
        # Weights change only by loading: their digest is computed once, and again after a load_state_dict.
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_digest", None))

    # -- the protocol ---------------------------------------------------------
    @property
    def dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def preparer(self) -> Preparer:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:  # pragma: no cover - abstract
        """Vectors ``(len(inputs), dim)`` of prepared inputs."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """JSON description: ``kind``, ``name``, ``dim``, the settings that rebuild it and ``weights_sha256``."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Encoder:  # pragma: no cover - abstract
        """The encoder a :meth:`spec` describes, its weights to be loaded after (from a model folder)."""
        raise NotImplementedError

    @classmethod
    def handles(cls, name: str) -> bool:  # pragma: no cover - abstract
        """True when ``name`` (as given to ``--backbone`` / ``--encoders``) names an encoder of this kind."""
        raise NotImplementedError

    @classmethod
    def pretrained(cls, name: str, weights: Any = "pretrained", **settings: Any) -> Encoder:  # pragma: no cover
        """Encoder ``name`` with its standard pretrained weights, or those at ``weights`` (a file or folder)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------
    @property
    def weights_digest(self) -> str:
        """Digest of the encoder's tensors (``""`` for one without weights); computed once per set of weights."""
        if self._digest is None:
            state = self.state_dict()
            self._digest = digest(state) if state else ""
        return self._digest

    def identity(self) -> str:
        """What this encoder computes, as a file-name-safe string: its name and a digest of its spec (settings and
        weights). Keys the vector cache and the ONNX export."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.name)[:60]
        return f"{safe}-{digest(self.spec(), length=16)}"

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        if not self.trainable:
            for m in self.children():
                m.eval()  # a frozen encoder: no dropout, BatchNorm statistics kept
        return self

    @property
    def trainable(self) -> bool:
        """True when some of its parameters train (a fine-tuned image CNN)."""
        return any(p.requires_grad for p in self.parameters())

    def network_input(self, prepared: Sequence[np.ndarray]) -> torch.Tensor:  # pragma: no cover - whole networks
        """The batch that the whole network of a model of this encoder alone reads (:attr:`whole_network`)."""
        raise ModelError(f"encoder {self.name!r} does not run as one network")

    def export_onnx(self, path: str | Path) -> Path:  # pragma: no cover - overridden by exportable encoders
        raise ModelError(f"encoder {self.name!r} cannot be exported to ONNX")


class Standardize(nn.Module):
    """Per-dimension z-scoring of embeddings with statistics fitted on training data.

    Frozen ImageNet embeddings have very uneven scales; standardising them
    lets a linear head converge in a few epochs. Identity until fitted.
    """

    def __init__(self, dim: int, floor: float = 0.1):
        super().__init__()
        self.floor = floor
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Standardize:
        std = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
        # Floor near-constant dimensions: with few training samples their tiny
        # spread would turn small shifts on new voices into huge values.
        self.mean.copy_(x.mean(0))
        self.std.copy_(std.clamp_min(self.floor * float(std.mean()) + 1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def encoder_class(name: str) -> type[Encoder]:
    """The registered class that handles encoder name ``name``."""
    for cls in REGISTRY.values():
        if cls.handles(name):
            return cls
    raise ModelError(f"unknown encoder {name!r}; see 'emovox backbones' for the names")


def build_encoder(name: str, weights: Any = "pretrained", **settings: Any) -> Encoder:
    """Encoder ``name`` (an image CNN, a speech encoder, a functionals set ...) with pretrained ``weights``."""
    return encoder_class(name).pretrained(name, weights, **settings)


def from_spec(spec: dict[str, Any]) -> Encoder:
    """Rebuild the encoder described by ``spec`` (its ``kind`` picks the class); :class:`ModelError` when malformed."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ModelError(f"an encoder entry must be an object with a 'kind', not {spec!r:.80}")
    cls = REGISTRY.get(spec["kind"])
    if cls is None:
        raise ModelError(f"unknown encoder kind {spec['kind']!r}; this emovox knows {', '.join(REGISTRY)}")
    try:
        return cls.from_spec(spec)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"malformed {spec['kind']} encoder entry ({type(err).__name__}: {err})") from None


def names() -> dict[str, str]:
    """Every named encoder of every kind, with its description (``emovox backbones``)."""
    out: dict[str, str] = {}
    for cls in REGISTRY.values():
        out |= getattr(cls, "NAMES", {})
    return out
