"""Model folders: ``model.safetensors`` (weights) + ``config.json`` (format ``emovox-model/3``). Nothing is pickled.

The config is the source of truth: the encoder list (each encoder's :meth:`~emovox.encoders.Encoder.spec`: its
name, hub id, settings and weights digest; its weights travel in the folder), the labels in the order of the
heads' outputs, each head's normalisation, input size and temperature, the familiarity gate, the training record and
software versions, and a ``digest`` over the weights and the whole config (all but the digest itself).

A folder is all or nothing: every field is checked (a clear :class:`ModelError` naming it), each encoder entry must
be exactly what the encoder it rebuilds describes, and any edit of the config or the weights after saving is a digest
mismatch, never silently different answers. A deliberate change goes through :func:`edit_config`, which checks the
result and seals it again. Folders of the older formats still load: ``emovox-model/2`` (its digest covers the
weights and the label order only) and ``emovox-model/1`` (one ``backbone`` plus flags; weight keys mapped).
"""
from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable
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

FORMAT = "emovox-model/3"
#: the previous format: the same fields, its digest over the weights and the label order only
LABELS_DIGEST_FORMAT = "emovox-model/2"
LEGACY_FORMAT = "emovox-model/1"
READ_FORMATS = (FORMAT, LABELS_DIGEST_FORMAT, LEGACY_FORMAT)
#: the top-level fields of a config (anything else is refused: a typo would otherwise be ignored)
CONFIG_FIELDS = ("format", "labels", "encoders", "heads", "finetune", "dropout", "digest", "training", "versions",
                 "familiarity")
HEAD_FIELDS = ("normalization", "temperature", "input_dim")
HEAD_NORMALIZATION = {"file": "training", "speaker": "speaker"}
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
        unknown = sorted(set(d) - set(CONFIG_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; a model config has {', '.join(CONFIG_FIELDS)}")
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
            _check_head(name, h)
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
        if familiar is not None:
            _check_familiarity(familiar)
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
    """The digest of an ``emovox-model/2`` folder: its weights and label order."""
    return digest(state, labels)


def config_digest(state: dict[str, torch.Tensor], config: dict[str, Any]) -> str:
    """The digest of an ``emovox-model/3`` folder: its weights and every field of its config but ``digest``."""
    body = json.loads(json.dumps({k: v for k, v in config.items() if k != "digest"}))  # as it reads back from disk
    return digest(state, body)


def model_config(model: EmotionClassifier, training: dict[str, Any] | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of ``model``, not yet sealed (:func:`save_model` adds the digest)."""
    return ModelConfig(list(model.labels), [e.spec() for e in model.encoders], model.head_specs(), model.finetune,
                       model.dropout, training or {}, None, software_versions())


def _check_head(name: str, h: dict[str, Any]) -> None:
    unknown = sorted(set(h) - set(HEAD_FIELDS))
    if unknown:
        raise ValueError(f"head {name}: unknown field(s) {', '.join(map(repr, unknown))}")
    _temperature(h.get("temperature"), f"head {name} temperature")
    if "normalization" in h and h["normalization"] != HEAD_NORMALIZATION[name]:
        raise ValueError(f"head {name} normalization must be {HEAD_NORMALIZATION[name]!r}, not {h['normalization']!r}")
    dim = h.get("input_dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"head {name} input_dim must be a positive whole number, not {dim!r}")


def _number(entry: dict[str, Any], key: str, low: float = 0.0, high: float = math.inf, required: bool = False) -> None:
    value = entry.get(key)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low < value <= high:
        raise ValueError(f"familiarity {key} must be a number in ({low:g}, {high:g}], not {value!r}")


def _check_familiarity(entry: Any) -> None:
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)):
        raise ValueError("'familiarity' must be an object with the 'sha256' of its file")
    if entry.get("file", FAMILIARITY_FILE) != FAMILIARITY_FILE:
        raise ValueError(f"familiarity file must be {FAMILIARITY_FILE!r}, not {entry['file']!r}")
    _number(entry, "threshold", required=True)
    for key in ("pass_rate", "unconfirmed_rate", "confirmed_rate"):
        _number(entry, key, high=1.0)
    for key in ("speaker_cv_quantile", "corpus_cv_quantile", "plain_threshold", "speech_ceiling"):
        _number(entry, key)
    for key in ("components", "n_vectors", "classes", "speaker_folds"):
        v = entry.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"familiarity {key} must be a positive whole number, not {v!r}")


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
    if not math.isclose(float(entry["threshold"]), fam.threshold, rel_tol=1e-6):
        raise ModelError(f"{directory / CONFIG_FILE}: familiarity threshold {entry['threshold']} is not the one of "
                         f"{FAMILIARITY_FILE} ({fam.threshold:.6g})")
    if entry.get("components") is not None and entry["components"] != fam.components:
        raise ModelError(f"{directory / CONFIG_FILE}: familiarity components {entry['components']} is not the "
                         f"{fam.components} of {FAMILIARITY_FILE}")
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
    if half:  # the config describes the weights as they load back: rounded to half precision
        import copy

        described = copy.deepcopy(model)
        described.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        config = model_config(described, training)
    else:
        config = model_config(model, training)
    if model.familiarity is not None:
        config = replace(config, familiarity=save_familiarity(model.familiarity, directory))
    elif (directory / FAMILIARITY_FILE).exists():
        (directory / FAMILIARITY_FILE).unlink()  # the model being written over had one; this one has none
    _write_config(directory, config.to_json(), state)
    return directory


def _write_config(directory: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Seal ``config`` (its digest over ``state`` and every other field) and write it, atomically."""
    config = dict(config) | {"format": FORMAT}
    config["digest"] = config_digest(state, config)
    tmp = directory / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(directory / CONFIG_FILE)


def edit_config(directory: str | Path, edit: Callable[[dict[str, Any]], Any], *, intact: bool = True) -> dict[str, Any]:
    """Change a model folder's config on purpose: ``edit(config)`` changes the loaded JSON in place; the result is
    checked as a whole (it must load, with this folder's weights) and sealed with a new digest, else the folder is
    left as it was. ``intact``: the folder must load before the edit too (its digest intact; ``False`` only for a
    caller that has just checked it and replaced a file the config describes). Returns the new config."""
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    if intact:
        load_model(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    edit(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(directory / WEIGHTS_FILE)).items()}
    config = dict(config) | {"format": FORMAT}
    config["digest"] = config_digest(state, config)
    _check_config(directory, config, state)
    _write_config(directory, config, state)
    return config


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
    except ValueError as err:
        raise ModelError(f"{cfg_path}: malformed model config ({err})") from None
    try:
        state = load_file(str(w_path))
    except Exception as err:
        raise ModelError(f"{w_path}: cannot read weights ({err})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model, config = _check_config(directory, raw, state)
    return model, model.features, config.to_json()


def _check_config(directory: Path, raw: Any, state: dict[str, torch.Tensor]) -> tuple[EmotionClassifier, ModelConfig]:
    """The model a raw config and its weights make, every field checked (:class:`ModelError` naming the first wrong
    one, then a digest mismatch for anything else changed since saving)."""
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    try:
        if isinstance(raw, dict) and "format" not in raw and "backbone" not in raw:
            raise ValueError(f"it has no 'format' (this emovox reads {', '.join(READ_FORMATS)})")
        legacy = isinstance(raw, dict) and raw.get("format", LEGACY_FORMAT) == LEGACY_FORMAT
        config = ModelConfig.from_json(_from_legacy(raw) if legacy else raw)
        if config.format not in READ_FORMATS:
            raise ValueError(f"format {config.format!r} is not one this emovox reads ({', '.join(READ_FORMATS)})")
    except (ValueError, KeyError, TypeError, EmovoxError) as err:
        raise ModelError(f"{cfg_path}: malformed model config ({err})") from None
    try:
        model = EmotionClassifier([from_spec(e) for e in config.encoders], config.labels, finetune=config.finetune,
                                  dropout=config.dropout, normalize="speaker" if "speaker" in config.heads else "none")
    except EmovoxError as err:
        raise ModelError(f"{cfg_path}: {err}") from None
    if legacy:
        state = _legacy_keys(state, config)
    linear = [v for k, v in state.items() if k.startswith("heads.file.") and k.endswith(".weight") and v.ndim == 2]
    if linear and linear[-1].shape[0] != len(config.labels):
        raise ModelError(f"{cfg_path} lists {len(config.labels)} labels but the weights in {w_path.name} classify "
                         f"{linear[-1].shape[0]}: config and weights belong to different models")
    for name, h in config.heads.items():
        if h.get("input_dim") is not None and h["input_dim"] != model.vector_dim:
            raise ModelError(f"{cfg_path}: head {name} input_dim is {h['input_dim']}, but its encoders give vectors of "
                             f"length {model.vector_dim}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{w_path}: weights do not match the encoders {model.backbone!r}: {str(err).splitlines()[0]}") from None
    if config.format == FORMAT:  # older folders were checked by their digest alone
        for k, (entry, encoder) in enumerate(zip(config.encoders, model.encoders)):
            _same_entry(cfg_path, k, entry, encoder.spec())
    for name, h in config.heads.items():
        model.temperatures_[name] = _temperature(h.get("temperature"), f"head {name} temperature")
    if config.familiarity is not None:
        model.familiarity = load_familiarity(directory, config.familiarity)
        if model.familiarity.dim != model.vector_dim:
            raise ModelError(f"{directory / FAMILIARITY_FILE}: statistics of vectors of length {model.familiarity.dim}, "
                             f"but the model's are {model.vector_dim}")
    if config.format == FORMAT and config.digest is None:
        raise ModelError(f"{cfg_path}: has no digest ({FORMAT} folders are sealed when saved); re-save it")
    sealed = config.digest is not None and (
        config_digest(state, raw) if config.format == FORMAT else model_digest(state, config.labels)) == config.digest
    if not legacy and config.digest is not None and not sealed:
        raise ModelError(f"{directory}: its config or weights differ from those it was saved with (digest mismatch: "
                         f"{CONFIG_FILE} was edited, or {WEIGHTS_FILE} comes from another model); re-save or re-train it "
                         "(emovox.model.io.edit_config changes a config on purpose)")
    return model.eval(), config


def _same_entry(cfg_path: Path, k: int, entry: dict[str, Any], built: dict[str, Any]) -> None:
    """An encoder entry must be exactly what the encoder rebuilt from it (with the folder's weights) describes: no
    field it ignores, none missing, and the size and weights digest of what was loaded."""
    norm = json.loads(json.dumps(built))
    extra, missing = sorted(set(entry) - set(norm)), sorted(set(norm) - set(entry))
    if extra or missing:
        what = "; ".join(x for x in (extra and f"unknown field(s) {', '.join(extra)}",
                                       missing and f"missing field(s) {', '.join(missing)}") if x)
        raise ModelError(f"{cfg_path}: encoder {k} ({entry.get('name')!r}): {what}")
    for key in norm:
        if entry[key] != norm[key]:
            shown = lambda v: json.dumps(v)[:60]  # noqa: E731
            raise ModelError(f"{cfg_path}: encoder {k} ({entry.get('name')!r}): {key} is {shown(entry[key])}, but the "
                             f"encoder it describes, with this folder's weights, has {shown(norm[key])}")


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
