"""The object a user holds: load a model folder, predict emotions from audio.

>>> from emovox import EmotionRecognizer
>>> rec = EmotionRecognizer.load("runs/tess/model")   # doctest: +SKIP
>>> rec.predict("clip.wav").label                       # doctest: +SKIP
'happy'
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
import torch

from .audio import load_audio, prepare_signal
from .corpora.base import AUDIO_EXTENSIONS, Utterance, audio_files
from .encoders.speech import SPEECH_RATE
from .engine import Engine, TorchEngine, select_engine
from .errors import AudioError, EmovoxError, ModelError, NoSpeechError
from .features import FeatureConfig, signal_features, spec_images
from .labels import sort_labels
from .model import EmotionClassifier, load_model

AudioInput = Union[str, Path, np.ndarray]
#: What :meth:`EmotionRecognizer.featurize` returns: a spectrogram, or ``(spectrogram, functionals)``
#: (for a speech-encoder model: its pooled vector instead of the spectrogram)
Item = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]

#: The model shipped inside the package (see MODEL_CARD.md; non-commercial use only).
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default"
#: Below this top probability a prediction is reported as uncertain.
UNCERTAIN_BELOW = 0.4
#: Voice activity (seconds) an input needs before it gets an emotion; less is "no speech".
MIN_SPEECH_S = 0.25
#: Voice-activity detectors that gate predictions: ``energy`` (level + spectral flatness: rejects silence,
#: noise, DC and clips of a few milliseconds; cheap), ``silero`` (neural: also rejects tones and music;
#: needs the vad extra), ``off``.
SPEECH_GATES = ("energy", "silero", "off")
DEFAULT_MODEL_NOTICE = (
    "using emovox's bundled default model (Whisper tiny.en encoder + emotion heads trained on TESS + RAVDESS + nEMO, "
    "acted English and Polish speech); its heads inherit the data's non-commercial licenses: non-commercial use only "
    "(see MODEL_CARD.md)"
)


@dataclass(frozen=True)
class Prediction:
    """The predicted ``label`` and the probability of every label."""

    label: str
    probabilities: dict[str, float]
    source: str | None = None

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def is_uncertain(self, threshold: float = UNCERTAIN_BELOW) -> bool:
        """True when the top probability is below ``threshold``: a guess, not an answer."""
        return self.confidence < threshold

    def to_dict(self, threshold: float = UNCERTAIN_BELOW) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "confidence": self.confidence,
                "uncertain": self.is_uncertain(threshold), "probabilities": self.probabilities}


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the audio files below them (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        out.extend(audio_files(p) if p.is_dir() else [p])
    return out


class Prepared(NamedTuple):
    """A decoded, checked input before the model: the model's signal (speech encoders) or spectrogram, and
    acoustic functionals (``None`` unless the model uses them)."""

    x: np.ndarray
    functionals: np.ndarray | None
    source: str


@dataclass(frozen=True)
class Frontend:
    """Decoding, the speech gate and features: everything of :meth:`EmotionRecognizer.featurize` but the
    network. Small and picklable, so workers without the model (batch jobs on Ray) can run it."""

    features: FeatureConfig
    reads_waveform: bool
    acoustic: str | None = None
    #: ``energy``, ``silero`` or ``off`` (see :data:`SPEECH_GATES`)
    speech_gate: str = "energy"
    min_speech_s: float = MIN_SPEECH_S

    def __post_init__(self) -> None:
        if self.speech_gate not in SPEECH_GATES:
            raise EmovoxError(f"speech_gate must be one of {', '.join(SPEECH_GATES)}, not {self.speech_gate!r}")

    def prepare(self, x: str | Path | np.ndarray, sample_rate: int | None = None, source: str | None = None,
                gate: bool = True) -> Prepared:
        """Decode ``x`` (a file, or an array at ``sample_rate``), check it holds speech (``gate``) and compute
        what the model's body reads. Raises :class:`AudioError` for an unusable input."""
        if isinstance(x, np.ndarray):
            if sample_rate is None:
                raise EmovoxError("an audio array needs its sample rate: predict(signal, sample_rate=16000)")
            y, sr, name = x, sample_rate, source or "<array>"
        else:
            sr = SPEECH_RATE if self.reads_waveform else self.features.sample_rate
            y, name = load_audio(x, sr), str(x)
        if gate:
            self.check_speech(y, sr, name)
        if self.reads_waveform:
            # A speech encoder reads the trimmed waveform at its own length.
            spec = prepare_signal(y, sr, SPEECH_RATE, trim=self.features.trim, top_db=self.features.top_db, source=name)
        else:
            spec = signal_features(y, sr, self.features, source=name)
        functionals = None
        if self.acoustic:
            from .acoustic import signal_functionals

            functionals = signal_functionals(y, sr, self.acoustic, source=name)
        return Prepared(spec, functionals, name)

    def check_speech(self, y: np.ndarray, sr: int, source: str = "<array>") -> float:
        """Seconds of voice activity in ``y``; :class:`NoSpeechError` when below :attr:`min_speech_s`."""
        if self.speech_gate == "off":
            return float(len(y)) / sr
        from .segments import speech_regions

        regions = speech_regions(y, sr, vad=self.speech_gate, min_speech_s=0.05, min_silence_s=0.1, pad_s=0.0, name=source)
        speech = float(sum(e - s for s, e in regions))
        if speech < self.min_speech_s:
            found = f"{speech * 1000:.0f} ms of voice activity" if speech else "no voice activity"
            raise NoSpeechError(source, f"no speech found ({found}; {self.min_speech_s:g} s needed, {self.speech_gate} "
                                        "detector): noise, a tone, silence or too short")
        return speech


class EmotionRecognizer:
    """A trained emotion model with its feature config, ready to predict."""

    def __init__(self, model: EmotionClassifier, features: FeatureConfig, config: dict[str, Any] | None = None,
                 engine: Engine | None = None, speech_gate: str = "energy", min_speech_s: float = MIN_SPEECH_S):
        self.model = model.eval()
        self.features = features
        self.config = config or {}
        #: what runs the model: PyTorch, or ONNX Runtime (see :mod:`emovox.engine`)
        self.engine = engine or TorchEngine(self.model)
        #: decoding, speech gate and features: the model-free half of :meth:`featurize`
        self.frontend = Frontend(features, model.reads_waveform, model.acoustic, speech_gate, float(min_speech_s))
        self.origin: dict[str, str] | None = None  # set by load()

    @property
    def speech_gate(self) -> str:
        """Voice-activity detector that must find :attr:`min_speech_s` seconds of speech before an emotion is given."""
        return self.frontend.speech_gate

    @property
    def min_speech_s(self) -> float:
        return self.frontend.min_speech_s

    @classmethod
    def load(cls, path: str | Path | None = None, engine: str = "auto", speech_gate: str = "energy",
             min_speech_s: float = MIN_SPEECH_S, threads: int | None = None) -> EmotionRecognizer:
        """Load a model folder written by ``emovox train`` (``RUN_DIR/model``), or the bundled default model.

        ``engine``: ``"auto"`` (ONNX Runtime when the folder has an up-to-date
        ``model.onnx``, see ``emovox export``, and onnxruntime is installed;
        else PyTorch), ``"torch"``, ``"onnx"`` or ``"onnx-int8"``. ``threads``: ONNX Runtime's / PyTorch's
        intra-op threads (default: theirs).
        """
        if path is None or str(path) == "default":
            if not (DEFAULT_MODEL / "config.json").is_file():
                raise ModelError(f"{DEFAULT_MODEL}: this installation has no bundled default model; pass a model folder")
            path = DEFAULT_MODEL
        model, features, config = load_model(path)
        rec = cls(model, features, config, select_engine(model, path, engine, threads), speech_gate=speech_gate,
                  min_speech_s=min_speech_s)
        #: how to load this recognizer again elsewhere (batch workers): the model folder and engine asked for
        rec.origin = {"path": str(Path(path).expanduser().resolve()), "engine": engine}
        return rec

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    # -- core ---------------------------------------------------------------
    def featurize(self, x: str | Path | np.ndarray, sample_rate: int | None = None, source: str | None = None,
                  gate: bool = True) -> Item:
        """What the model reads from one file or signal: its spectrogram (or speech-encoder vector), and its
        acoustic functionals when the model uses them. ``gate``: first check that it holds speech
        (:meth:`check_speech`)."""
        return self.encode(self.frontend.prepare(x, sample_rate, source, gate))

    def encode(self, prepared: Prepared) -> Item:
        """The :meth:`featurize` result of a :meth:`Frontend.prepare` result: a speech-encoder model runs its
        encoder on the signal; a spectrogram model's input is already what it reads."""
        x = self.model.body.encode(prepared.x, source=prepared.source) if self.model.reads_waveform else prepared.x
        return x if prepared.functionals is None else (x, prepared.functionals)

    def check_speech(self, y: np.ndarray, sr: int, source: str = "<array>") -> float:
        """Seconds of voice activity in ``y``; :class:`NoSpeechError` when below :attr:`min_speech_s`."""
        return self.frontend.check_speech(y, sr, source)

    def _specs(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None) -> tuple[list[Item], list[str], bool]:
        single = isinstance(x, (str, Path, np.ndarray)) and not (isinstance(x, (str, Path)) and Path(x).is_dir())
        items: list[AudioInput]
        if isinstance(x, (str, Path)):
            items = list(expand_inputs([x]))
        elif isinstance(x, np.ndarray):
            items = [x]
        else:
            items = list(x)
        specs, names = [], []
        for i, item in enumerate(items):
            name = f"<array {i}>" if isinstance(item, np.ndarray) else str(item)
            specs.append(self.featurize(item, sample_rate, source=name))
            names.append(name)
        return specs, names, single

    def probabilities(self, items: Sequence[Item], batch_size: int = 32, same_speaker: bool = False) -> np.ndarray:
        """Calibrated class probabilities ``(n, n_labels)`` of :meth:`featurize` results.

        ``same_speaker=True`` says all ``items`` are recordings of one speaker:
        their vectors are normalised by their own statistics and the model's
        speaker-normalised head classifies them (models trained with
        ``normalize="speaker"``, e.g. ``--recipe robust``). Give several
        recordings, ideally in more than one emotion.
        """
        if same_speaker:
            self._require_speaker_head()
        if not self.model.acoustic and not same_speaker and not self.model.reads_waveform:
            logits = self.engine.spec_logits(items, self.model, self.features, batch_size)
            return torch.softmax(logits / self.model.temperature, dim=1).numpy()
        if not len(items):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.classify(self.vectors(items, batch_size), same_speaker)

    def vectors(self, items: Sequence[Item], batch_size: int = 32) -> torch.Tensor:
        """What the heads read, ``(n, dim)``, of :meth:`featurize` results (frozen-backbone models; see :meth:`classify`)."""
        if not len(items):
            return torch.zeros((0, 0))
        specs = [it[0] if isinstance(it, tuple) else it for it in items]
        with torch.inference_mode():
            if self.model.reads_waveform:  # featurize already ran the encoder: these are its pooled vectors
                emb = torch.from_numpy(np.stack(specs))
            else:
                emb = torch.cat([self.model.embed(spec_images(specs[i : i + batch_size], self.model.spec, self.features))
                                 for i in range(0, len(specs), batch_size)])
            return self.model.vectors(emb, np.stack([it[1] for it in items]) if self.model.acoustic else None)

    def classify(self, vectors: torch.Tensor, same_speaker: bool = False) -> np.ndarray:
        """Calibrated probabilities of :meth:`vectors`; ``same_speaker=True`` normalises them together first
        and uses the speaker-normalised head (see :meth:`probabilities`)."""
        if same_speaker:
            self._require_speaker_head()
        with torch.inference_mode():
            if same_speaker:
                from .acoustic import speaker_normalize

                vectors = torch.from_numpy(speaker_normalize(vectors.numpy()))
            logits = self.model.classify(vectors, speaker_normalized=same_speaker)
        return torch.softmax(logits / self.model.temperature_of(same_speaker), dim=1).numpy()

    def _require_speaker_head(self) -> None:
        if self.model.normalize != "speaker":
            raise ModelError("this model was trained without speaker normalisation (train with --recipe speech or robust); "
                             "predict without same_speaker")

    def predict_proba(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None = None, same_speaker: bool = False) -> np.ndarray:
        """Probabilities over :attr:`labels`: ``(n_labels,)`` for one input, ``(n, n_labels)`` for several."""
        specs, _, single = self._specs(x, sample_rate)
        p = self.probabilities(specs, same_speaker=same_speaker)
        return p[0] if single else p

    def predict(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None = None,
                same_speaker: bool = False) -> Prediction | list[Prediction]:
        """Predict the emotion of a file, a folder, an array (with ``sample_rate``) or a list of these.

        ``same_speaker=True``: the inputs are all one speaker's recordings;
        normalise them together (see :meth:`probabilities`). Raises
        :class:`AudioError` for an unusable input; use :meth:`predict_files`
        to skip bad files in a batch.
        """
        specs, names, single = self._specs(x, sample_rate)
        preds = [self._prediction(p, n) for p, n in zip(self.probabilities(specs, same_speaker=same_speaker), names)]
        return preds[0] if single else preds

    def _prediction(self, probs: np.ndarray, source: str | None) -> Prediction:
        labels = self.labels
        return Prediction(labels[int(np.argmax(probs))], {lab: float(v) for lab, v in zip(labels, probs)}, source)

    def timeline(self, x: str | Path | np.ndarray, sample_rate: int | None = None, **options: Any):
        """Emotion over time of a (long) file or array: a :class:`emovox.segments.Timeline`.

        ``options`` go to :func:`emovox.segments.segment_file` (``vad``, ``max_segment_s``, ``hop_s`` ...).
        """
        from .segments import segment_file, segment_signal

        if isinstance(x, np.ndarray):
            if sample_rate is None:
                raise EmovoxError("an audio array needs its sample rate: timeline(signal, sample_rate=16000)")
            return segment_signal(self, x, sample_rate, **options)
        return segment_file(self, x, **options)

    segments = timeline  # the name used for long audio elsewhere in the docs

    def predict_files(self, paths: Iterable[str | Path], batch_size: int = 32, same_speaker: bool = False) -> Iterator[Prediction | AudioError]:
        """Stream predictions over many files, ``batch_size`` at a time, in input order.

        A file that cannot be used yields its :class:`AudioError` instead of a
        prediction, and the rest go on. Memory stays bounded by the batch,
        except with ``same_speaker=True`` (all files are one speaker's,
        normalised together: every file is read before the first prediction).
        """
        flush_at = 1 << 62 if same_speaker else batch_size
        batch: list[tuple[str, Item | AudioError]] = []

        def flush() -> Iterator[Prediction | AudioError]:
            good = [(n, s) for n, s in batch if not isinstance(s, AudioError)]
            probs = iter(self.probabilities([s for _, s in good], batch_size, same_speaker)) if good else iter(())
            for name, s in batch:
                yield s if isinstance(s, AudioError) else self._prediction(next(probs), name)
            batch.clear()

        for path in paths:
            try:
                item: Item | AudioError = self.featurize(path)
            except AudioError as err:
                item = err
            batch.append((str(path), item))
            if len(batch) >= flush_at:
                yield from flush()
        yield from flush()

    def evaluate(
        self, utts: Sequence[Utterance], *, workers: int | None = None, cache_dir: str | Path | None = None,
        use_cache: bool = True, progress: bool = True, speaker_norm: bool = False, restrict_labels: bool = False,
    ) -> dict[str, Any]:
        """Metrics of this model on labelled utterances (see :func:`emovox.metrics.classification_metrics`).

        ``speaker_norm=True`` normalises each speaker's recordings together and
        scores the speaker-normalised head. ``restrict_labels=True`` also scores
        with the argmax restricted to the labels the utterances use (a
        4-emotion corpus scored by an 8-emotion model), under ``"restricted"``.
        Unreadable files are skipped and listed under ``"skipped"``.
        """
        from .inputs import model_inputs, prepare, score, speaker_inputs

        if speaker_norm and self.model.normalize != "speaker":
            raise ModelError("this model was trained without speaker normalisation (train with --recipe robust)")
        data = prepare(utts, self.features, spectrograms=not self.model.reads_waveform, workers=workers, cache_dir=cache_dir,
                       use_cache=use_cache, progress=progress, log=lambda m: None)
        frozen = self.model.acoustic or speaker_norm or self.model.reads_waveform
        inputs = model_inputs(self.model, data, None, progress=progress) if frozen else data.specs
        if speaker_norm:
            inputs = speaker_inputs(inputs, data.utts)
        metrics, _ = score(self.model, inputs, range(len(data.utts)), data.utts, self.features, speaker_norm)
        if restrict_labels:
            used = sort_labels(u.emotion for u in data.utts)
            metrics["restricted"], _ = score(self.model, inputs, range(len(data.utts)), data.utts, self.features, speaker_norm,
                                             restrict=used)
        metrics["skipped"] = data.skipped
        return metrics


__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_MODEL", "EmotionRecognizer", "Frontend", "MIN_SPEECH_S", "ModelError", "NoSpeechError", "Prepared", "Prediction",
           "SPEECH_GATES", "UNCERTAIN_BELOW", "expand_inputs"]
