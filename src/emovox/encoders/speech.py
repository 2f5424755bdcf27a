"""Speech-pretrained transformer encoders (Whisper, wav2vec 2.0, HuBERT, WavLM, data2vec-audio).

A :class:`SpeechEncoder` reads a 16 kHz waveform, runs a frozen
transformers encoder on it and pools every hidden state over time (mean and
standard deviation), giving one vector per utterance: emotion lives in
different layers for different voices and corpora, so the head sees them all.

Names:
    ``whisper_tiny_en``  OpenAI Whisper tiny.en, audio encoder (MIT license; hub id
                         ``openai/whisper-tiny.en``; English).
    ``whisper_base``     OpenAI Whisper base, audio encoder (MIT license; hub id
                         ``openai/whisper-base``; multilingual).
    ``hf:ID_OR_FOLDER``  any transformers speech encoder by hub id or local folder, e.g.
                         ``hf:openai/whisper-base``, ``hf:microsoft/wavlm-base-plus``,
                         ``hf:facebook/hubert-base-ls960``, ``hf:facebook/wav2vec2-base``.

Weights of a named encoder come from, in order: the folder given as
``weights``; ``$EMOVOX_WEIGHTS/<folder name>`` (a directory of local copies for
the whole tool, see :data:`LOCAL_FOLDERS`); the hub (needs internet once,
then transformers' cache).

Whisper was trained on 30-s windows; here it runs on the clip's own length
(the positional embeddings cut to match), about ten times cheaper for short
clips (``context="full"`` pads to 30 s and pools over the clip's frames).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio.decode import prepare_signal
from ..errors import AudioError, ModelError
from ..identity import digest
from ..runtime.onnx import export_checked
from .base import Encoder, Preparer, register

#: Sample rate every speech encoder here reads.
SPEECH_RATE = 16000
#: Environment variable naming a folder of local encoder copies (one sub-folder per encoder).
WEIGHTS_ENV = "EMOVOX_WEIGHTS"
#: Named encoders: hub id, and the sub-folder names looked for under ``$EMOVOX_WEIGHTS``.
NAMED: dict[str, str] = {"whisper_tiny_en": "openai/whisper-tiny.en", "whisper_base": "openai/whisper-base"}
LOCAL_FOLDERS: dict[str, tuple[str, ...]] = {"whisper_tiny_en": ("whisper-tiny.en-encoder", "whisper-tiny.en"),
                                             "whisper_base": ("whisper-base-encoder", "whisper-base")}
DESCRIPTIONS: dict[str, str] = {
    "whisper_tiny_en": "OpenAI Whisper tiny.en audio encoder (MIT; 8.2 M parameters): mean/std of its 6 hidden states (4,608-d), on the clip's own length",
    "whisper_base": "OpenAI Whisper base audio encoder, multilingual (MIT; 20.6 M parameters): mean/std of its 8 hidden states (8,192-d), on the clip's own length",
}
CONTEXTS = ("clip", "full")
#: Input name of an exported encoder (its output is the pooled vector).
ONNX_INPUT = "features"
#: Shortest signal fed to an encoder (shorter ones are zero-padded): the convolutional front ends need a few frames.
MIN_SECONDS = 0.1
#: Longest signal read per utterance (Whisper's window; longer clips keep their centre).
MAX_SECONDS = 30.0


def is_speech_encoder(name: str) -> bool:
    """True when ``name`` names a speech encoder (not an image CNN)."""
    return name in NAMED or name.startswith("hf:")


def resolve_source(name: str, weights: str | Path | None = "pretrained") -> str:
    """Where encoder ``name`` loads from: a local folder, or a hub id.

    ``weights``: ``"pretrained"`` (or ``"imagenet"``, the image-CNN spelling of
    the same thing) for the standard weights, or a local folder.
    """
    if weights not in (None, "pretrained", "imagenet"):
        folder = Path(weights).expanduser()
        if not folder.is_dir():
            raise ModelError(f"{folder}: speech-encoder weights must be a transformers folder (config.json + model.safetensors)")
        return str(folder)
    if name.startswith("hf:"):
        source = name[3:]
        if not source:
            raise ModelError("hf: needs a hub id or a folder, e.g. hf:microsoft/wavlm-base-plus")
        return str(Path(source).expanduser()) if Path(source).expanduser().is_dir() else source
    if name not in NAMED:
        raise ModelError(f"unknown speech encoder {name!r}; choose from {', '.join(NAMED)} or hf:HUB_ID_OR_FOLDER")
    base = os.environ.get(WEIGHTS_ENV)
    if base:
        for sub in LOCAL_FOLDERS.get(name, ()):
            if (Path(base).expanduser() / sub / "config.json").is_file():
                return str(Path(base).expanduser() / sub)
    return NAMED[name]


@dataclass(frozen=True)
class WaveformPreparer(Preparer):
    """A signal -> what a speech encoder reads: 16 kHz mono, leading/trailing silence trimmed, its own length."""

    trim: bool = True
    top_db: float = 60.0
    waveform = True

    def __call__(self, y: np.ndarray, sr: int, source: str = "<array>") -> np.ndarray:
        return prepare_signal(y, sr, SPEECH_RATE, trim=self.trim, top_db=self.top_db, source=source)


def _load_pretrained(source: str) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(encoder network, feature extractor, its config dict)`` from a hub id or folder."""
    try:
        import transformers
        from transformers import AutoConfig
    except ImportError:
        raise ModelError("speech encoders need the transformers package: pip install 'emovox[speech]'") from None
    transformers.utils.logging.disable_progress_bar()  # emovox shows its own progress; no bar per weights file
    try:
        config = AutoConfig.from_pretrained(source)
        if config.model_type == "whisper":
            from transformers import WhisperModel
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            if "WhisperEncoder" in (config.architectures or []):
                net = WhisperEncoder.from_pretrained(source)
            else:  # a whole Whisper checkpoint: keep its encoder
                net = WhisperModel.from_pretrained(source).get_encoder()
        else:
            net = transformers.AutoModel.from_pretrained(source)
    except (OSError, ValueError, KeyError) as err:
        hint = "" if Path(source).is_dir() else " (offline? pass a local copy with --weights DIR or set $EMOVOX_WEIGHTS)"
        raise ModelError(f"cannot load speech encoder {source!r}{hint}: {str(err).splitlines()[0]}") from None
    extractor = _feature_extractor(source, config)
    return net.float(), extractor, config.to_dict()


def _feature_extractor(source: str | None, config: Any) -> Any:
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if source is not None:
        try:
            return AutoFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError, KeyError):
            pass  # no preprocessor_config.json: the family's defaults below
    if config.model_type == "whisper":
        return WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)


def _network_from_config(config: dict[str, Any]) -> nn.Module:
    """A randomly initialised encoder network of a saved transformers config (weights are loaded after)."""
    import transformers

    cfg = transformers.AutoConfig.for_model(**config)
    if cfg.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(cfg)
    return transformers.AutoModel.from_config(cfg)


def _check_spec(spec: dict[str, Any]) -> None:
    """A speech encoder entry's settings, each of the right type and range (ValueError naming the field)."""
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValueError("'name' must be a non-empty string")
    if spec.get("hub_id") is not None and not isinstance(spec["hub_id"], str):
        raise ValueError(f"'hub_id' must be a string or null, not {spec['hub_id']!r}")
    if not isinstance(spec["model_config"], dict):
        raise ValueError("'model_config' must be a JSON object")
    if spec.get("context", "clip") not in CONTEXTS:
        raise ValueError(f"'context' must be one of {', '.join(CONTEXTS)}, not {spec.get('context')!r}")
    if not isinstance(spec.get("trim", True), bool):
        raise ValueError(f"'trim' must be true or false, not {spec.get('trim')!r}")
    top_db = spec.get("top_db", 60.0)
    if isinstance(top_db, bool) or not isinstance(top_db, (int, float)) or not 0 < top_db < 200:
        raise ValueError(f"'top_db' must be a level in dB between 0 and 200, not {top_db!r}")


@register
class SpeechEncoder(Encoder):
    """A frozen transformers speech encoder that turns a waveform into one pooled vector.

    ``forward(inputs)`` takes what :meth:`inputs` makes of a signal (log-mel
    frames for Whisper, the normalised waveform for the others), batch of one,
    and returns ``(1, dim)``: mean and standard deviation over time of every
    hidden state, layer after layer. Its :class:`WaveformPreparer` trims the
    signal (``trim``, ``top_db``) before it is encoded.
    """

    kind = "speech"
    exportable = True
    onnx_by_default = True
    NAMES = DESCRIPTIONS
    PATTERNS = {"hf:HUB_ID_OR_FOLDER": "any transformers speech encoder (Whisper, wav2vec2, HuBERT, WavLM, data2vec-audio) "
                                       "by hub id or local folder"}

    def __init__(self, name: str, net: nn.Module, extractor: Any, config: dict[str, Any], hub_id: str | None = None,
                 context: str = "clip", trim: bool = True, top_db: float = 60.0):
        super().__init__(name)
        if context not in CONTEXTS:
            raise ModelError(f"context must be one of {', '.join(CONTEXTS)}, not {context!r}")
        self.model = net.eval()
        self.extractor = extractor
        self.config = config
        #: where the standard weights are on the hub (``None``: a local folder of its own)
        self.hub_id = hub_id
        self.context = context
        self.trim, self.top_db = bool(trim), float(top_db)
        self.whisper = config.get("model_type") == "whisper"
        self.width = int(config["d_model"] if self.whisper else config["hidden_size"])
        self.n_states = int(config["encoder_layers"] + 2 if self.whisper else config["num_hidden_layers"] + 1)
        if context == "full" and not self.whisper:
            raise ModelError("context='full' (30-s windows) applies to Whisper encoders only")
        for p in self.model.parameters():
            p.requires_grad = False
        if self.whisper:  # transformers < 4.50 layers also take a head mask, positionally
            import inspect

            self._new_layer_api = "layer_head_mask" not in inspect.signature(self.model.layers[0].forward).parameters

    # -- construction ----------------------------------------------------------
    @classmethod
    def handles(cls, name: str) -> bool:
        return is_speech_encoder(name)

    @classmethod
    def pretrained(cls, name: str, weights: str | Path | None = "pretrained", context: str = "clip", trim: bool = True,
                   top_db: float = 60.0, **settings: Any) -> SpeechEncoder:
        """Encoder ``name`` with its pretrained weights (see :func:`resolve_source`)."""
        if weights is None:
            raise ModelError(f"speech encoder {name!r} needs its weights (a folder, or the hub)")
        source = resolve_source(name, weights)
        net, extractor, config = _load_pretrained(source)
        local = Path(source).is_dir()
        hub_id = None if local else source
        if name.startswith("hf:") and Path(name[3:]).expanduser().is_dir():
            name = f"hf:{Path(name[3:]).expanduser().resolve().name}"  # a folder of this machine: only its name is kept
        return cls(name, net, extractor, config, hub_id or NAMED.get(name), context, trim, top_db)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> SpeechEncoder:
        """The architecture saved by :meth:`spec`, randomly initialised (a model folder's weights are loaded after)."""
        try:
            import transformers
        except ImportError:
            raise ModelError("this model uses a speech encoder: pip install 'emovox[speech]' (transformers)") from None
        config = spec["model_config"]
        _check_spec(spec)
        net = _network_from_config(config)
        cfg = transformers.AutoConfig.for_model(**config)
        fe_cfg = spec.get("feature_extractor") or {}
        fe_cls = getattr(transformers, fe_cfg.get("feature_extractor_type", ""), None)
        extractor = fe_cls(**{k: v for k, v in fe_cfg.items() if k != "feature_extractor_type"}) if fe_cls else _feature_extractor(None, cfg)
        return cls(spec["name"], net, extractor, config, spec.get("hub_id"), spec.get("context", "clip"),
                   spec.get("trim", True), spec.get("top_db", 60.0))

    def spec(self) -> dict[str, Any]:
        """JSON description: enough to rebuild the architecture, plus where the standard weights are and their digest."""
        fe = self.extractor.to_dict()
        fe.pop("mel_filters", None)  # recomputed from the sizes; large
        return {"kind": self.kind, "name": self.name, "hub_id": self.hub_id, "context": self.context, "trim": self.trim,
                "top_db": self.top_db, "dim": self.dim, "weights_sha256": self.weights_digest,
                "model_config": {k: v for k, v in self.config.items() if k != "_name_or_path"},  # no path of this machine
                "feature_extractor": {k: v for k, v in fe.items() if not isinstance(v, np.ndarray)}}

    @property
    def dim(self) -> int:
        return 2 * self.width * self.n_states

    @property
    def weights_digest(self) -> str:
        """Digest of the transformers network's own tensors (its state dict without this wrapper's prefix)."""
        if self._digest is None:
            self._digest = digest(self.model.state_dict())
        return self._digest

    def preparer(self) -> WaveformPreparer:
        return WaveformPreparer(SPEECH_RATE, self.trim, self.top_db)

    def example_input(self, seconds: float = 1.0) -> torch.Tensor:
        """A random model input for ``seconds`` of audio (for exports and checks)."""
        g = torch.Generator().manual_seed(0)
        if self.whisper:
            return torch.randn(1, self.extractor.feature_size, int(seconds * SPEECH_RATE) // self.extractor.hop_length, generator=g)
        return torch.randn(1, int(seconds * SPEECH_RATE), generator=g)

    # -- computation ------------------------------------------------------------
    def inputs(self, y: np.ndarray, source: str = "<array>") -> tuple[torch.Tensor, int]:
        """``(model input, frames to pool)`` of a 16 kHz mono signal."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or not y.size:
            raise AudioError(source, "no samples to encode")
        if y.size > MAX_SECONDS * SPEECH_RATE:
            start = (y.size - int(MAX_SECONDS * SPEECH_RATE)) // 2
            y = y[start : start + int(MAX_SECONDS * SPEECH_RATE)]
        if y.size < MIN_SECONDS * SPEECH_RATE:
            y = np.pad(y, (0, int(MIN_SECONDS * SPEECH_RATE) - y.size))
        if self.whisper:
            full = self.context == "full"
            feats = self.extractor(y, sampling_rate=SPEECH_RATE, return_tensors="pt", padding="max_length" if full else False,
                                   truncation=False).input_features
            n_frames = -(-min(y.size // self.extractor.hop_length, feats.shape[-1]) // 2)
            return feats, max(1, n_frames)
        values = self.extractor(y, sampling_rate=SPEECH_RATE, return_tensors="pt").input_values
        return values, 0  # 0: pool over every output frame

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden state ``(batch, frames, width)`` of the encoder, input layer first."""
        if not self.whisper:
            return list(self.model(x, output_hidden_states=True).hidden_states)
        net = self.model
        # WhisperEncoder.forward insists on 30-s inputs; its own layers run on any length.
        h = nn.functional.gelu(net.conv1(x))
        h = nn.functional.gelu(net.conv2(h)).permute(0, 2, 1)
        h = h + net.embed_positions.weight[: h.shape[1]]
        states = [h]
        for layer in net.layers:
            out = layer(h, None) if self._new_layer_api else layer(h, None, None)
            h = out[0] if isinstance(out, tuple) else out
            states.append(h)
        states.append(net.layer_norm(h))
        return states

    def forward(self, x: torch.Tensor, n_frames: int = 0) -> torch.Tensor:
        states = self.hidden_states(x)
        pooled = []
        for h in states:
            h = h[:, :n_frames] if n_frames else h
            pooled += [h.mean(1), h.std(1, unbiased=False)]
        return torch.cat(pooled, dim=1)

    @torch.inference_mode()
    def encode_one(self, y: np.ndarray, source: str = "<array>") -> np.ndarray:
        """Pooled vector ``(dim,)`` of a 16 kHz mono signal."""
        x, n = self.inputs(y, source)
        if self.session is not None and self.context == "clip":
            return self.session.run(None, {ONNX_INPUT: x.numpy()})[0][0]
        return self(x, n)[0].numpy()

    def encode(self, inputs: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(inputs):
            return torch.zeros((0, self.dim))
        return torch.from_numpy(np.stack([self.encode_one(y) for y in inputs]))

    def export_onnx(self, path: str | Path) -> Path:
        """Model input of any length -> pooled vector, checked against PyTorch on inputs of three lengths.
        Only ``context="clip"`` (every output frame pooled) is exported."""
        if self.context != "clip":
            raise ModelError("the ONNX speech encoder covers context='clip' only")
        axis = self.example_input().ndim - 1
        return export_checked(self, path, self.example_input(1.0), [self.example_input(s) for s in (0.7, 2.3, 5.1)],
                              input_name=ONNX_INPUT, output_name="vector", dynamic_axes={ONNX_INPUT: {axis: "length"}},
                              name=f"speech encoder {self.name!r}")
