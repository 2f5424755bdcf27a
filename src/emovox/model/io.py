"""Model folders: ``model.safetensors`` (weights) + ``config.json`` (format ``emovox-model/2``). Nothing is pickled.

The config is the source of truth: the encoder list (each encoder's :meth:`~emovox.encoders.Encoder.spec`: its
name, hub id, settings and weights digest; its weights travel in the folder), the labels in the order of the
heads' outputs, each head's normalisation and temperature, the training settings and software versions, and a
``digest`` over the weights and the label order: a folder whose labels were reordered or whose weights were
swapped is a :class:`ModelError`, never silently wrong answers. Folders of the first format
(``emovox-model/1``: one ``backbone`` plus flags) still load, their weight keys mapped.
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..encoders import from_spec
from ..encoders.functionals import ACOUSTIC_SETS
from ..encoders.speech import is_speech_encoder
from ..errors import EmovoxError, ModelError
from ..features import FeatureConfig
from ..identity import digest
from .classifier import FINETUNE, EmotionClassifier
from .familiar import FAMILIARITY_FILE, Familiarity

FORMAT = "emovox-model/2"
LEGACY_FORMAT = "emovox-model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """A model folder's ``config.json``, typed and checked (:meth:`from_json` raises ValueError on anything off)."""

    labels: list[str]
    encoders: list[dict[str, Any]]
    heads: dict[str, dict[str, Any]]
    finetune: str = "none"
    dropout: float = 0.2
    training: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    #: the familiarity gate's file, digest, threshold and how it was fitted (absent in older folders)
    familiarity: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"format": self.format, "labels": self.labels, "encoders": self.encoders, "heads": self.heads,
               "finetune": self.finetune, "dropout": self.dropout, "digest": self.digest, "training": self.training,
               "versions": self.versions}
        return out | ({"familiarity": self.familiarity} if self.familiarity is not None else {})

    @classmethod
    def from_json(cls, d: Any) -> ModelConfig:
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, found {type(d).__name__}")
        labels = d.get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
            raise ValueError("'labels' must be a list of at least two label names")
        repeated = sorted({x for x in labels if labels.count(x) > 1})
        if repeated:
            raise ValueError(f"'labels' repeats {', '.join(repeated)}")
        encoders = d.get("encoders")
        if not isinstance(encoders, list) or not encoders or not all(isinstance(e, dict) and isinstance(e.get("kind"), str)
                                                                      for e in encoders):
            raise ValueError("'encoders' must be a non-empty list of objects, each with a 'kind'")
        heads = d.get("heads")
        if not isinstance(heads, dict) or "file" not in heads or not set(heads) <= {"file", "speaker"} \
                or not all(isinstance(h, dict) for h in heads.values()):
            raise ValueError("'heads' must be an object with a 'file' head (and optionally a 'speaker' head)")
        for name, h in heads.items():
            _temperature(h.get("temperature"), f"head {name} temperature")
        finetune = d.get("finetune", "none")
        if finetune not in FINETUNE:
            raise ValueError(f"'finetune' must be one of {', '.join(FINETUNE)}, not {finetune!r}")
        dropout = d.get("dropout", 0.2)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"'dropout' must be a number in [0, 1), not {dropout!r}")
        training, versions = d.get("training") or {}, d.get("versions") or {}
        if not isinstance(training, dict) or not isinstance(versions, dict):
            raise ValueError("'training' and 'versions' must be JSON objects")
        stored = d.get("digest")
        if stored is not None and not isinstance(stored, str):
            raise ValueError("'digest' must be a hex string")
        familiar = d.get("familiarity")
        if familiar is not None and not (isinstance(familiar, dict) and isinstance(familiar.get("sha256"), str)):
            raise ValueError("'familiarity' must be an object with the 'sha256' of its file")
        return cls(list(labels), encoders, heads, finetune, float(dropout), training, stored, versions, d.get("format", FORMAT),
                   familiar)


def software_versions() -> dict[str, str]:
    import importlib.metadata

    import numpy

    out = {"emovox": __version__, "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    for module in ("torchvision", "timm", "librosa", "transformers"):
        try:
            out[module] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def model_digest(state: dict[str, torch.Tensor], labels: list[str]) -> str:
    """The digest that ties a folder's weights to its label order (stored in ``config.json``)."""
    return digest(state, labels)


def model_config(model: EmotionClassifier, training: dict[str, Any] | None = None,
                 state: dict[str, torch.Tensor] | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of ``model`` (``state``: the weights as saved, for the digest)."""
    state = model.state_dict() if state is None else state
    return ModelConfig(list(model.labels), [e.spec() for e in model.encoders], model.head_specs(), model.finetune,
                       model.dropout, training or {}, model_digest(state, list(model.labels)), software_versions())


def save_familiarity(familiarity: Familiarity, directory: str | Path) -> dict[str, Any]:
    """Write a model's familiarity gate into its folder; returns the config entry that describes it."""
    path = familiarity.save(Path(directory) / FAMILIARITY_FILE)
    return {"file": FAMILIARITY_FILE, "sha256": digest(path), "threshold": familiarity.threshold,
            "components": familiarity.components} | familiarity.info


def load_familiarity(directory: Path, entry: dict[str, Any]) -> Familiarity:
    """The familiarity gate a config entry describes, its file checked against the recorded digest."""
    path = directory / FAMILIARITY_FILE
    if not path.is_file():
        raise ModelError(f"{directory}: config.json lists familiarity statistics but {FAMILIARITY_FILE} is missing")
    if digest(path) != entry["sha256"]:
        raise ModelError(f"{path}: differs from the file the model was saved with (digest mismatch); re-save the model")
    fam = Familiarity.load(path, {k: v for k, v in entry.items() if k not in ("file", "sha256")})
    try:
        fam.speech_ceiling  # checked now, not at the first prediction
    except ModelError as err:
        raise ModelError(f"{directory / 'config.json'}: {err}") from None
    return fam


def save_model(model: EmotionClassifier, directory: str | Path, features: FeatureConfig | None = None,
               training: dict[str, Any] | None = None, *, half: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` to ``directory`` (safetensors weights + JSON config).

    ``features``: spectrogram settings for the model's spectrogram encoders, when they differ from what they were
    built with (``FeatureConfig`` of the run)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    if (directory / WEIGHTS_FILE).exists() and not overwrite:
        raise ModelError(f"{directory}: already holds a model; choose another folder or allow overwriting")
    if features is not None:
        for e in model.encoders:
            if isinstance(getattr(e, "features", None), FeatureConfig):
                e.features = features
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    config = model_config(model, training, state)
    if model.familiarity is not None:
        config = replace(config, familiarity=save_familiarity(model.familiarity, directory))
    elif (directory / FAMILIARITY_FILE).exists():
        (directory / FAMILIARITY_FILE).unlink()  # the model being written over had one; this one has none
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n")
    return directory


def load_model(directory: str | Path) -> tuple[EmotionClassifier, FeatureConfig, dict[str, Any]]:
    """Read a model folder written by :func:`save_model` (or an ``emovox-model/1`` one); returns
    ``(model, spectrogram settings, config as JSON)``."""
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"{directory}: not an emovox model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        raw = json.loads(cfg_path.read_text())
        legacy = isinstance(raw, dict) and raw.get("format", LEGACY_FORMAT) == LEGACY_FORMAT
        config = ModelConfig.from_json(_from_legacy(raw) if legacy else raw)
        if config.format != FORMAT:
            raise ValueError(f"format {config.format!r} is not one this emovox reads ({FORMAT}, {LEGACY_FORMAT})")
    except (ValueError, KeyError, TypeError, EmovoxError) as err:
        raise ModelError(f"{cfg_path}: malformed model config ({err})") from None
    try:
        model = EmotionClassifier([from_spec(e) for e in config.encoders], config.labels, finetune=config.finetune,
                                  dropout=config.dropout, normalize="speaker" if "speaker" in config.heads else "none")
    except EmovoxError as err:
        raise ModelError(f"{cfg_path}: {err}") from None
    try:
        state = load_file(str(w_path))
    except Exception as err:
        raise ModelError(f"{w_path}: cannot read weights ({err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if legacy:
        state = _legacy_keys(state, config)
    linear = [v for k, v in state.items() if k.startswith("heads.file.") and k.endswith(".weight") and v.ndim == 2]
    if linear and linear[-1].shape[0] != len(config.labels):
        raise ModelError(f"{cfg_path} lists {len(config.labels)} labels but the weights in {w_path.name} classify "
                         f"{linear[-1].shape[0]}: config and weights belong to different models")
    if not legacy and config.digest is not None and model_digest(state, config.labels) != config.digest:
        raise ModelError(f"{directory}: its labels or weights differ from the config it was saved with (digest mismatch: "
                         f"{CONFIG_FILE} was edited, or {WEIGHTS_FILE} comes from another model); re-save or re-train it")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{w_path}: weights do not match the encoders {model.backbone!r}: {str(err).splitlines()[0]}") from None
    for name, h in config.heads.items():
        model.temperatures_[name] = _temperature(h.get("temperature"), f"head {name} temperature")
    if config.familiarity is not None:
        model.familiarity = load_familiarity(directory, config.familiarity)
        if model.familiarity.dim != model.vector_dim:
            raise ModelError(f"{directory / FAMILIARITY_FILE}: statistics of vectors of length {model.familiarity.dim}, "
                             f"but the model's are {model.vector_dim}")
    return model.eval(), model.features, config.to_json()


def _temperature(value: Any, what: str) -> float:
    """A softmax temperature from the config: a positive finite number (1.0 when absent)."""
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number, not {value!r}")
    return float(value)


# --------------------------------------------------------------------------- emovox-model/1


def _from_legacy(d: dict[str, Any]) -> dict[str, Any]:
    """An ``emovox-model/1`` config as ``/2``: its ``backbone`` (+ ``acoustic``) become the encoder list."""
    backbone = d.get("backbone")
    if not isinstance(backbone, str):
        raise ValueError("'backbone' must be a name")
    features = FeatureConfig.from_dict(d.get("features") or {})
    listed = d.get("encoders") or []
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise ValueError("'encoders' must be a list of objects")
    if is_speech_encoder(backbone):
        spec = next((e for e in listed if e.get("kind") == "speech"), None)
        if spec is None:
            raise ValueError(f"backbone {backbone!r} is a speech encoder, but the config has no 'encoders' entry describing it")
        spec = {k: v for k, v in spec.items() if k != "source"} | {"trim": features.trim, "top_db": features.top_db}
    else:
        spec = {"kind": "image", "name": backbone, "features": features.to_dict(), "weights": None}
    encoders = [spec]
    acoustic = d.get("acoustic")
    if acoustic:
        if acoustic not in ACOUSTIC_SETS:
            raise ValueError(f"unknown acoustic feature set {acoustic!r}")
        encoders.append({"kind": "functionals", "name": acoustic})
    calibration = d.get("calibration") or {}
    if not isinstance(calibration, dict):
        raise ValueError("'calibration' must be a JSON object")
    heads = {"file": {"temperature": _temperature(calibration.get("temperature"), "calibration temperature")}}
    if d.get("normalize", "none") == "speaker":
        heads["speaker"] = {"temperature": _temperature(calibration.get("speaker_temperature"), "calibration speaker_temperature")}
    elif d.get("normalize", "none") != "none":
        raise ValueError(f"'normalize' must be 'none' or 'speaker', not {d.get('normalize')!r}")
    return {"format": FORMAT, "labels": d.get("labels"), "encoders": encoders, "heads": heads,
            "finetune": d.get("finetune", "none"), "training": d.get("training") or {}, "versions": d.get("versions") or {}}


def _legacy_keys(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """``/1`` weight names -> ``/2``: ``body.`` is the first encoder (an image CNN's ``body``, or the speech encoder
    itself), ``head.`` and ``speaker_head.`` are the ``file`` and ``speaker`` heads."""
    body = "encoders.0.body." if config.encoders[0]["kind"] == "image" else "encoders.0."
    out = {}
    for key, value in state.items():
        for old, new in (("body.", body), ("head.", "heads.file."), ("speaker_head.", "heads.speaker.")):
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out
