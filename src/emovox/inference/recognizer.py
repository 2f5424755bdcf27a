"""The object a user holds: load a model folder, predict emotions from audio.

>>> from emovox import EmotionRecognizer
>>> rec = EmotionRecognizer.load("runs/tess/model")   # doctest: +SKIP
>>> rec.predict("clip.wav").label                       # doctest: +SKIP
'happy'
>>> rec = EmotionRecognizer.load("hf:user/repo")       # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from ..audio.vad import MIN_SPEECH_S, SPEECH_GATES
from ..corpora.base import AUDIO_EXTENSIONS, audio_files
from ..errors import AudioError, EmovoxError, ModelError, NoSpeechError, UnknownSoundError
from ..model import EmotionClassifier, load_model
from ..model.familiar import CONFIRM_MEAN_P, CONFIRM_SPEECH_S
from ..model.hub import is_hub_model, load_hub_model
from .engine import Engine, OnnxEngine, TorchEngine, select_engine
from .frontend import Frontend, Prepared
from .results import UNCERTAIN_BELOW, Prediction, Timeline, prediction_of
from .scoring import Scores, concat_scores
from .segments import SegmentOptions
from .speakers import SpeakerBook

if TYPE_CHECKING:
    from .live import EmotionStream

AudioInput = Union[str, Path, np.ndarray]
#: What :meth:`EmotionRecognizer.featurize` returns: one prepared input per encoder (a bare array is taken as the
#: input of a model's only encoder)
Item = Union[Prepared, np.ndarray]

#: The model shipped inside the package (see MODEL_CARD.md; non-commercial use only).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"
DEFAULT_MODEL_NOTICE = (
    "using emovox's bundled default model (Whisper base encoder, multilingual, + emotion heads trained on TESS + "
    "RAVDESS + nEMO, acted English and Polish speech); its heads inherit the data's non-commercial licenses: "
    "non-commercial use only (see MODEL_CARD.md)"
)


#: the longest stretch of a waveform the familiarity gate judges (about the training clips' length)
GATE_WINDOW_S = 5.0


def _loudest(y: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` samples of ``y`` with the most energy (``y`` itself when it is not longer)."""
    if y.size <= n:
        return y
    power = np.concatenate([[0.0], np.cumsum(np.asarray(y, dtype=np.float64) ** 2)])
    step = max(1, n // 50)
    starts = np.arange(0, y.size - n + 1, step)
    best = int(starts[np.argmax(power[starts + n] - power[starts])])
    return y[best : best + n]


def _speaker_rows(scores: Scores, keys: Sequence[str | None]) -> dict[str, list[int]]:
    """The rows of each known speaker's familiar items."""
    known = scores.known
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None and known[i]:
            groups.setdefault(str(key), []).append(i)
    return groups


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the audio files below them (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        out.extend(audio_files(p) if p.is_dir() else [p])
    return out


class EmotionRecognizer:
    """A trained emotion model, ready to predict: its :class:`Frontend` (decoding, speech gate, each encoder's
    preparer) and an :class:`~emovox.inference.engine.Engine` that runs its networks."""

    def __init__(self, model: EmotionClassifier, config: dict[str, Any] | None = None, engine: Engine | None = None,
                 speech_gate: str = "energy", min_speech_s: float = MIN_SPEECH_S, ood_gate: bool = True):
        self.model = model.eval()
        self.config = config or {}
        #: what runs the model: PyTorch, or ONNX Runtime (see :mod:`emovox.inference.engine`)
        self.engine = engine or TorchEngine(self.model)
        #: decoding, speech gate and each encoder's preparer: the model-free half of :meth:`featurize`
        self.frontend = Frontend(tuple(e.preparer() for e in model.encoders), speech_gate, float(min_speech_s))
        self.origin: dict[str, str] | None = None  # set by load()
        #: running statistics of the speakers predictions were asked for by key (``predict(..., speaker=KEY)``)
        self.speakers = SpeakerBook()
        #: the out-of-distribution gate: inputs unlike all training speech get no emotion (``None``: off, or a model
        #: saved without familiarity statistics; :attr:`ood_note` says which)
        self.familiarity = model.familiarity if ood_gate else None
        self.ood_note: str | None = None
        self._said_no_second_opinion = False
        if ood_gate and model.familiarity is None:
            self.ood_note = ("this model has no familiarity statistics (saved before emovox fitted them, or fine-tuned): "
                             "inputs unlike any speech it knows (tones, music, noise) still get an emotion; re-train it to "
                             "add the gate")
        #: what computes the vectors the gate reads: the engine, or PyTorch beside an engine that runs the whole
        #: exported network (it never shows them)
        self._vector_engine: Engine = self.engine
        if self.familiarity is not None and isinstance(self.engine, OnnxEngine):
            self._vector_engine = TorchEngine(self.model)
            self.ood_note = (f"the familiarity gate reads the model's vectors: PyTorch runs it, not the {self.engine.name} "
                             "export (load with ood_gate=False to use the export)")

    @property
    def speech_gate(self) -> str:
        """Voice-activity detector that must find :attr:`min_speech_s` seconds of speech before an emotion is given."""
        return self.frontend.speech_gate

    @property
    def min_speech_s(self) -> float:
        return self.frontend.min_speech_s

    @property
    def features(self):
        """The spectrogram settings of the model's spectrogram encoders (see :attr:`EmotionClassifier.features`)."""
        return self.model.features

    @property
    def sample_rate(self) -> int:
        """The rate audio is best given at (what the first encoder reads)."""
        return self.frontend.sample_rate

    @classmethod
    def load(cls, path: str | Path | None = None, engine: str = "auto", speech_gate: str = "energy",
             min_speech_s: float = MIN_SPEECH_S, threads: int | None = None, ood_gate: bool = True) -> EmotionRecognizer:
        """Load a model folder written by ``emovox train`` (``RUN_DIR/model``), one on the Hugging Face hub
        (``"hf:USER/REPO"``, or ``"hf:USER/REPO@REVISION"``: a branch, tag or commit; see :mod:`emovox.model.hub`),
        or the bundled default model.

        ``engine``: ``"auto"`` (ONNX Runtime when the folder has an up-to-date
        ``model.onnx``, see ``emovox export``, and onnxruntime is installed;
        else PyTorch), ``"torch"``, ``"onnx"`` or ``"onnx-int8"``. ``threads``: ONNX Runtime's / PyTorch's
        intra-op threads (default: theirs). ``ood_gate=False``: give an emotion to everything that passes the
        speech gate, however unlike the training speech (see :attr:`familiarity`).
        """
        if path is None or str(path) == "default":
            if not (DEFAULT_MODEL / "config.json").is_file():
                raise ModelError(f"{DEFAULT_MODEL}: this installation has no bundled default model; pass a model folder")
            path = DEFAULT_MODEL
        if is_hub_model(path):
            model, _, config, hub = load_hub_model(path)
            path, origin = hub.path, hub.pinned  # workers load the same commit
        else:
            model, _, config = load_model(path)
            origin = str(Path(path).expanduser().resolve())
        rec = cls(model, config, select_engine(model, path, engine, threads), speech_gate=speech_gate,
                  min_speech_s=min_speech_s, ood_gate=ood_gate)
        if rec.ood_note:
            warnings.warn(f"{path}: {rec.ood_note}", stacklevel=2)
        #: how to load this recognizer again elsewhere (batch workers): the model folder (``hf:USER/REPO@COMMIT`` for
        #: one from the hub) and the engine asked for
        rec.origin = {"path": origin, "engine": engine, "ood_gate": ood_gate}
        return rec

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    # -- core ---------------------------------------------------------------
    def featurize(self, x: str | Path | np.ndarray, sample_rate: int | None = None, source: str | None = None,
                  gate: bool = True) -> Prepared:
        """What the model's encoders read from one file or signal (:meth:`Frontend.prepare`); ``gate``: first check
        that it holds speech."""
        return self.frontend.prepare(x, sample_rate, source, gate)

    def check_speech(self, y: np.ndarray, sr: int, source: str = "<array>") -> float:
        """Seconds of voice activity in ``y``; :class:`NoSpeechError` when below :attr:`min_speech_s`."""
        return self.frontend.check_speech(y, sr, source)

    def _columns(self, items: Sequence[Item]) -> list[list[np.ndarray]]:
        """Items -> one list of inputs per encoder."""
        rows = [it.inputs if isinstance(it, Prepared) else (it,) for it in items]
        n = len(self.model.encoders)
        if any(len(r) != n for r in rows):
            raise ModelError(f"this model has {n} encoders: give featurize() results, not bare arrays")
        return [[r[k] for r in rows] for k in range(n)]

    def _items(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None) -> tuple[list[Prepared], list[str], bool]:
        single = isinstance(x, (str, Path, np.ndarray)) and not (isinstance(x, (str, Path)) and Path(x).is_dir())
        items: list[AudioInput]
        if isinstance(x, (str, Path)):
            items = list(expand_inputs([x]))
        elif isinstance(x, np.ndarray):
            items = [x]
        else:
            items = list(x)
        out, names = [], []
        for i, item in enumerate(items):
            name = f"<array {i}>" if isinstance(item, np.ndarray) else str(item)
            out.append(self.featurize(item, sample_rate, source=name))
            names.append(name)
        return out, names, single

    def probabilities(self, items: Sequence[Item], batch_size: int = 32, same_speaker: bool = False) -> np.ndarray:
        """Calibrated class probabilities ``(n, n_labels)`` of :meth:`featurize` results (for every input, familiar
        or not: see :meth:`assess`).

        ``same_speaker=True`` says all ``items`` are recordings of one speaker:
        their vectors are normalised by their own statistics and the model's
        speaker-normalised head classifies them (models trained with
        ``normalize="speaker"``, e.g. ``--recipe speech``). Give several
        recordings, ideally in more than one emotion.
        """
        return self.assess(items, batch_size, same_speaker)[0]

    def assess(self, items: Sequence[Item], batch_size: int = 32,
               same_speaker: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(probabilities, ood_scores)`` of :meth:`featurize` results: :meth:`probabilities`, and each input's
        distance from the training speech as a multiple of the model's threshold (above 1: unlike any speech the
        model knows; ``None`` when the gate is off or the model has none). With ``same_speaker``, unfamiliar
        inputs are left out of the speaker's statistics (their probabilities are the per-file head's)."""
        scores = self.score(items, same_speaker=same_speaker, batch_size=batch_size)
        return scores.probabilities, scores.ood

    @property
    def can_adapt(self) -> bool:
        """True when the model has a speaker-normalised head (speaker keys, ``same_speaker``, timeline adaptation)."""
        return self.model.has_speaker_head

    def score(self, items: Sequence[Item], keys: Sequence[str | None] | None = None, *, book: SpeakerBook | None = None,
              same_speaker: bool = False, vectors: np.ndarray | None = None, keep_vectors: bool = False,
              refuse: Sequence[str] | None = None, batch_size: int = 32) -> Scores:
        """The scoring core (:mod:`emovox.inference.scoring`): :class:`~emovox.inference.scoring.Scores` of
        :meth:`featurize` results, the familiarity gate applied (:meth:`ood_of`).

        Which head answers: without ``keys``, the per-file head; ``same_speaker=True``: all items are one speaker's,
        normalised together, speaker head (when at least two are familiar); ``keys``: each item's speaker key
        (``None``: unknown), its vectors join the running statistics of ``book`` (default: :attr:`speakers`) and the
        speaker head answers once the key has enough recordings (:meth:`learn_speakers`, then :meth:`by_speaker`). Unfamiliar items never
        join any statistics. ``vectors``: the items' vectors, computed before (a live stream encodes ahead);
        ``keep_vectors``: return them even where an exported network would not show them; ``refuse``: the items'
        names: raise the :class:`~emovox.errors.UnknownSoundError` of the first unfamiliar item before any statistics
        change (a refused request leaves the speakers as they were).
        """
        n, speakered = len(items), same_speaker or (keys is not None and any(k is not None for k in keys))
        if speakered:
            self.model.require_speaker_head()
        if keys is not None and len(keys) != n:
            raise EmovoxError(f"{len(keys)} speaker keys for {n} inputs")
        if not n:
            empty = np.zeros(0, np.float32) if self.familiarity is not None else None
            return Scores(np.zeros((0, len(self.labels)), np.float32), empty, [], np.zeros((0, self.model.vector_dim), np.float32))
        probs = None
        if vectors is None and not speakered:  # probabilities and vectors in one pass of the engine
            outs = [self._vector_engine.outputs(self._columns(items[i : i + batch_size])) for i in range(0, n, batch_size)]
            probs = np.concatenate([p for p, _ in outs])
            if all(v is not None for _, v in outs):
                vectors = np.concatenate([v for _, v in outs])
            elif keep_vectors:
                vectors = self.vectors(items, batch_size).numpy()
        elif vectors is None:
            vectors = self.vectors(items, batch_size).numpy()
        ood = None if vectors is None else self.ood_of(items, vectors)
        scores = Scores(probs, ood, ["file"] * n, vectors)
        known = scores.known
        if refuse is not None and not known.all():
            i = int(np.argmax(~known))
            raise UnknownSoundError(refuse[i], float(ood[i]))
        if probs is None:
            probs = self.classify(torch.from_numpy(np.asarray(vectors, dtype=np.float32)))
        heads = ["file"] * n
        if same_speaker and known.sum() >= 2:  # one recording alone normalises to zeros: its per-file answer stays
            probs[known] = self.classify(torch.from_numpy(vectors[known]), same_speaker=True)
            heads = ["speaker" if k else "file" for k in known]
        elif keys is not None and speakered:  # the items join their speakers' statistics, then are answered by them
            book = self.speakers if book is None else book
            scores = Scores(probs, ood, heads, vectors)
            self.learn_speakers(scores, keys, book)
            return self.by_speaker(scores, keys, book)
        return Scores(probs, ood, heads, vectors)

    def ood_scores(self, vectors: np.ndarray) -> np.ndarray | None:
        """The ``ood_score`` of each of :meth:`vectors` (``None`` without a familiarity gate)."""
        return None if self.familiarity is None else self.familiarity.score(np.asarray(vectors, dtype=np.float32))

    def ood_of(self, items: Sequence[Item], vectors: np.ndarray) -> np.ndarray | None:
        """The ``ood_score`` of each of :meth:`featurize` results, given their :meth:`vectors`.

        The gate knows the length of the training clips: a waveform longer than :data:`GATE_WINDOW_S` (several
        sentences, a long recording) is judged by its loudest :data:`GATE_WINDOW_S` seconds, encoded once more,
        since a whole long clip's pooled vector lies far from every short one's, speech or not."""
        if self.familiarity is None:
            return None
        vectors = np.asarray(vectors, dtype=np.float32).copy()
        long_rows, crops = [], []
        for i, item in enumerate(items):
            inputs = item.inputs if isinstance(item, Prepared) else (item,)
            cut = tuple(_loudest(x, int(GATE_WINDOW_S * p.sample_rate)) if p.waveform_of(x) is not None else x
                        for x, p in zip(inputs, self.frontend.preparers))
            if any(c is not x for c, x in zip(cut, inputs)):
                long_rows.append(i)
                crops.append(Prepared(cut, getattr(item, "source", "<array>")))
        if crops:
            vectors[long_rows] = self.model.vectors(self._columns(crops)).numpy()
        scores = self.familiarity.score(vectors)
        return self.familiarity.second_opinion(scores, lambda i: self.sounds_like_speech(items[i]))

    def sounds_like_speech(self, item: Item) -> bool:
        """The second opinion of the familiarity gate: whether the neural voice-activity detector (silero) hears
        speech in the input's waveform: at least :data:`~emovox.model.familiar.CONFIRM_SPEECH_S` of it, or a mean
        speech probability of :data:`~emovox.model.familiar.CONFIRM_MEAN_P` over its loud frames
        (:func:`emovox.audio.vad.speech_evidence`; False when silero-vad is not installed, or the model reads no
        waveform)."""
        from ..audio.vad import silero_available, speech_evidence

        inputs = item.inputs if isinstance(item, Prepared) else (item,)
        wave = next(((p.waveform_of(x), p.sample_rate) for x, p in zip(inputs, self.frontend.preparers)
                     if p.waveform_of(x) is not None), None)
        if wave is None:
            return False  # a model that reads spectrograms only: no waveform to ask about
        if not silero_available():
            if not self._said_no_second_opinion:
                self._said_no_second_opinion = True
                warnings.warn("the familiarity gate's second opinion needs silero-vad (pip install silero-vad): "
                              "speech far from the training speech (phone lines, rooms, other corpora) is refused more "
                              "often without it", stacklevel=3)
            return False
        y = _loudest(wave[0], int(GATE_WINDOW_S * wave[1]))  # the stretch the gate judged
        seconds, mean_p = speech_evidence(y, wave[1], getattr(item, "source", "<array>"))
        return seconds >= CONFIRM_SPEECH_S or mean_p >= CONFIRM_MEAN_P

    def vectors(self, items: Sequence[Item], batch_size: int = 32) -> torch.Tensor:
        """What the heads read, ``(n, vector_dim)``, of :meth:`featurize` results (see :meth:`classify`)."""
        if not len(items):
            return torch.zeros((0, self.model.vector_dim))
        return torch.cat([self.model.vectors(self._columns(items[i : i + batch_size])) for i in range(0, len(items), batch_size)])

    def classify(self, vectors: torch.Tensor, same_speaker: bool = False) -> np.ndarray:
        """Calibrated probabilities of :meth:`vectors`; ``same_speaker=True`` normalises them together first
        and uses the speaker-normalised head (see :meth:`probabilities`)."""
        return self.model.probabilities(vectors, same_speaker)

    def speaker_probabilities(self, vectors: np.ndarray, key: str, book: SpeakerBook) -> np.ndarray:
        """The speaker head's probabilities of ``vectors`` normalised by ``book``'s statistics of ``key`` (as they
        are: nothing is added)."""
        z = torch.from_numpy(book.normalize(key, vectors))
        with torch.inference_mode():
            logits = self.model.classify(z, speaker_normalized=True)
        return torch.softmax(logits / self.model.temperature_of(True), dim=1).numpy()

    def by_speaker(self, scores: Scores, keys: Sequence[str | None], book: SpeakerBook) -> Scores:
        """``scores`` (with their vectors) answered by the speaker head wherever ``book`` already holds the statistics
        of the item's speaker and it is ready; unknown keys, speakers not ready and unfamiliar items keep the per-file
        answer. Nothing is added to ``book``: give it every recording of each speaker first (:meth:`learn_speakers`),
        and no recording's answer depends on the order they came in."""
        if scores.vectors is None:
            raise EmovoxError("speaker answers need the items' vectors (score(..., keep_vectors=True))")
        probs, heads = scores.probabilities.copy(), list(scores.heads)
        for key, rows in _speaker_rows(scores, keys).items():
            if book.ready(key):
                probs[rows] = self.speaker_probabilities(scores.vectors[rows], key, book)
                for i in rows:
                    heads[i] = "speaker"
        return Scores(probs, scores.ood, heads, scores.vectors)

    def learn_speakers(self, scores: Scores, keys: Sequence[str | None], book: SpeakerBook) -> None:
        """Add the familiar items of known speakers to ``book`` (an unfamiliar input never joins any statistics)."""
        for key, rows in _speaker_rows(scores, keys).items():
            book.add(key, scores.vectors[rows])

    def stream(self, sample_rate: int = 16000, options: SegmentOptions | None = None, *, channels: int = 1,
               name: str = "<stream>", **changes: Any) -> "EmotionStream":
        """A live session over blocks of samples at ``sample_rate``: :class:`~emovox.inference.live.EmotionStream`
        (``stream.feed(block)`` -> events, ``stream.close()``); the timeline options by name as for
        :meth:`timeline`."""
        from .live import EmotionStream

        return EmotionStream(self, sample_rate, options, channels=channels, name=name, **changes)

    def predict_proba(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None = None, same_speaker: bool = False) -> np.ndarray:
        """Probabilities over :attr:`labels`: ``(n_labels,)`` for one input, ``(n, n_labels)`` for several."""
        specs, _, single = self._items(x, sample_rate)
        p = self.probabilities(specs, same_speaker=same_speaker)
        return p[0] if single else p

    def predict(self, x: AudioInput | Sequence[AudioInput], sample_rate: int | None = None,
                same_speaker: bool = False, speaker: str | Sequence[str | None] | None = None) -> Prediction | list[Prediction]:
        """Predict the emotion of a file, a folder, an array (with ``sample_rate``) or a list of these.

        ``same_speaker=True``: the inputs are all one speaker's recordings;
        normalise them together (see :meth:`probabilities`). ``speaker``: the key of the speaker of all inputs
        (or one key per input, ``None`` for unknown): they join that speaker's running statistics and are
        classified by the speaker head once enough of its recordings are in (see :meth:`score`); each
        prediction says which head answered. Raises :class:`AudioError` for an unusable input (and
        :class:`~emovox.errors.UnknownSoundError`, a "no speech" error, for one unlike all the speech the model knows:
        its ``ood_score`` is above 1); use :meth:`predict_files` to skip bad files in a batch.
        """
        specs, names, single = self._items(x, sample_rate)
        keys = None if speaker is None else [speaker] * len(specs) if isinstance(speaker, str) else list(speaker)
        answers = self._answers(specs, names, keys, same_speaker, strict=True)
        for a in answers:
            if isinstance(a, UnknownSoundError):
                raise a
        return answers[0] if single else answers  # type: ignore[return-value]

    def _answers(self, items: Sequence[Item], names: Sequence[str], keys: Sequence[str | None] | None = None,
                 same_speaker: bool = False, batch_size: int = 32, strict: bool = False) -> list[Prediction | UnknownSoundError]:
        """A :class:`Prediction` of each item, or the :class:`UnknownSoundError` of one the familiarity gate stops
        (``strict``: raised before speaker statistics change)."""
        if keys is not None:
            self.model.require_speaker_head()
        scores = self.score(items, keys, same_speaker=same_speaker, batch_size=batch_size,
                            refuse=names if strict and keys is not None else None)
        return [self.answer(scores, i, name, keys is not None, None if keys is None else keys[i])
                for i, name in enumerate(names)]

    def answer(self, scores: Scores, i: int, source: str | None, keyed: bool = False,
               speaker: str | None = None) -> Prediction | UnknownSoundError:
        """Item ``i`` of :meth:`score` results as the user gets it: a :class:`Prediction` (saying which head answered
        when speaker keys were given: ``keyed``), or the :class:`UnknownSoundError` of an input unlike all the speech
        the model knows."""
        ood = scores.ood_score(i)
        if not scores.known[i]:
            return UnknownSoundError(source or "<array>", ood)
        return self._prediction(scores.probabilities[i], source, speaker, scores.heads[i] if keyed else None, ood)

    def _prediction(self, probs: np.ndarray, source: str | None, speaker: str | None = None,
                    head: str | None = None, ood_score: float | None = None) -> Prediction:
        return prediction_of(probs, self.labels, source, None if speaker is None else str(speaker), head, ood_score)

    def timeline(self, x: str | Path | np.ndarray, sample_rate: int | None = None, options: SegmentOptions | None = None,
                 **changes: Any) -> Timeline:
        """Emotion over time of a (long) file or array: a :class:`~emovox.inference.results.Timeline`.

        ``options`` (a :class:`~emovox.inference.segments.SegmentOptions`) and ``changes`` by name (``vad``,
        ``max_segment_s``, ``hop_s``, ``adapt`` ...) set how.
        """
        from .segments import segment_file, segment_signal

        if isinstance(x, np.ndarray):
            if sample_rate is None:
                raise EmovoxError("an audio array needs its sample rate: timeline(signal, sample_rate=16000)")
            return segment_signal(self, x, sample_rate, options, **changes)
        return segment_file(self, x, options, **changes)

    segments = timeline  # the name used for long audio elsewhere in the docs

    def predict_files(self, paths: Iterable[str | Path], batch_size: int = 32, same_speaker: bool = False,
                      speaker_of: Callable[[str], str | None] | None = None) -> Iterator[Prediction | AudioError]:
        """Predictions over many files, ``batch_size`` at a time, in input order.

        A file that cannot be used yields its :class:`AudioError` instead of a
        prediction, and the rest go on. Predictions stream and memory stays bounded by the batch, except with
        ``same_speaker=True`` (all files are one speaker's, normalised together) and ``speaker_of`` (the speaker key
        of a file's path, ``None``: unknown): every file is encoded first, each speaker's recordings join its
        statistics in :attr:`speakers`, then each is classified against its speaker's statistics over all of them
        (:meth:`by_speaker`), so that no answer depends on the order of the files. Memory: one vector per file.
        """
        if speaker_of is not None and not same_speaker:
            yield from self._keyed_files(paths, batch_size, speaker_of)
            return
        flush_at = 1 << 62 if same_speaker else batch_size
        batch: list[tuple[str, Item | AudioError]] = []

        def flush() -> Iterator[Prediction | AudioError]:
            good = [(n, s) for n, s in batch if not isinstance(s, AudioError)]
            answers = iter(self._answers([s for _, s in good], [n for n, _ in good], None, same_speaker, batch_size)
                           if good else ())
            for _, s in batch:
                yield s if isinstance(s, AudioError) else next(answers)
            batch.clear()

        for path in paths:
            batch.append((str(path), self._featurized(path)))
            if len(batch) >= flush_at:
                yield from flush()
        yield from flush()

    def _featurized(self, path: str | Path) -> Item | AudioError:
        try:
            return self.featurize(path)
        except AudioError as err:
            return err

    def encode_files(self, paths: Iterable[str | Path], batch_size: int = 32,
                     on_file: Callable[[], object] | None = None) -> tuple[list[str], Scores, list[AudioError | None]]:
        """Pass one of a speaker-keyed run: ``(names, scores with vectors of the good files, the error of each file or
        None)``; the scores' rows follow the files without an error, in order. ``on_file``: called after each file
        (a progress bar)."""
        self.model.require_speaker_head()
        names: list[str] = []
        errors: list[AudioError | None] = []
        parts: list[Scores] = []
        pending: list[Item] = []

        def flush() -> None:
            if pending:
                parts.append(self.score(pending, keep_vectors=True, batch_size=batch_size))
                pending.clear()

        for path in paths:
            item = self._featurized(path)
            names.append(str(path))
            errors.append(item if isinstance(item, AudioError) else None)
            if not isinstance(item, AudioError):
                pending.append(item)
                if len(pending) >= batch_size:
                    flush()
            if on_file is not None:
                on_file()
        flush()
        return names, concat_scores(parts, len(self.labels), self.model.vector_dim, self.familiarity is not None), errors

    def _keyed_files(self, paths: Iterable[str | Path], batch_size: int,
                     speaker_of: Callable[[str], str | None]) -> Iterator[Prediction | AudioError]:
        names, scores, errors = self.encode_files(paths, batch_size)
        good = [n for n, e in zip(names, errors) if e is None]
        keys = [speaker_of(n) for n in good]
        self.learn_speakers(scores, keys, self.speakers)
        scores = self.by_speaker(scores, keys, self.speakers)
        i = 0
        for err in errors:
            if err is not None:
                yield err
                continue
            yield self.answer(scores, i, good[i], True, keys[i])
            i += 1


__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_MODEL", "EmotionRecognizer", "Frontend", "MIN_SPEECH_S", "ModelError", "NoSpeechError",
           "Prepared", "Prediction", "SPEECH_GATES", "UNCERTAIN_BELOW", "expand_inputs"]
