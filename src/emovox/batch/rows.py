"""Rows of a batch dataset, the same for every engine: the schema, one row per input (or per timeline segment),
failed inputs as rows with their error, and the identity of the model that wrote them."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..audio.decode import os_path
from ..errors import AudioError, NoSpeechError
from ..identity import digest
from ..inference.results import flat, scored
from ..storage import is_url, text_name

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer
    from ..inference.results import Prediction, Timeline


def _require_pyarrow():
    from ..errors import EmovoxError

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EmovoxError("emovox batch writes Parquet with pyarrow: pip install 'emovox[batch]'") from None
    return pa, pq


def model_identity(rec: EmotionRecognizer) -> str:
    """The encoders' names and a short digest of the heads, labels, temperatures and encoder identities (what
    produced a row)."""
    m = rec.model
    heads = {k: v for k, v in m.state_dict().items() if k.startswith("heads.")}
    return f"{m.backbone}:{digest(heads, m.labels, m.temperatures_, [e.identity() for e in m.encoders], length=16)}"


def output_schema(labels: Sequence[str], segments: bool, speakers: bool = False):
    """The columns of a batch dataset (the same for every engine); ``speakers``: with the speaker key of each input
    and the head that answered."""
    pa, _ = _require_pyarrow()
    fields = [("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())]
    if segments:
        fields += [("start", pa.float64()), ("end", pa.float64())]
    fields += [("label", pa.string()), ("confidence", pa.float64())]
    fields += [(f"prob_{lab}", pa.float64()) for lab in labels]
    fields += [("uncertain", pa.bool_()), ("no_speech", pa.bool_()), ("duration", pa.float64()), ("model", pa.string()),
               ("error", pa.string())]
    if speakers:
        fields += [("speaker", pa.string()), ("head", pa.string())]
    return pa.schema(fields)


def file_duration(path: str) -> float | None:
    """Length in seconds from the file's header (libsndfile); ``None`` when it cannot be read."""
    import soundfile as sf

    try:
        if is_url(path):
            from ..storage import open_input

            with open_input(path) as f:
                return float(sf.info(f).duration)
        return float(sf.info(os_path(path)).duration)
    except Exception:
        return None


@dataclass(frozen=True)
class RowMaker:
    """Builds a dataset's rows from predictions, timelines and errors (shared by the engines)."""

    labels: tuple[str, ...]
    model: str
    threshold: float
    segments: bool
    speakers: bool = False
    #: timelines (``segments``): ``1`` one voice, or ``"auto"`` / a number: voices told apart (rows: ``speaker``)
    voices: str | int = 1

    def base(self, path: str, size: int, mtime_ns: int, duration: float | None) -> dict[str, Any]:
        return {"path": text_name(path), "size": size, "mtime_ns": mtime_ns, "model": self.model, "duration": duration}

    def error(self, base: dict[str, Any], err: Exception) -> list[dict[str, Any]]:
        problem = err.problem if isinstance(err, AudioError) else str(err)
        row = base | {"label": None, "confidence": None, "uncertain": None, "no_speech": isinstance(err, NoSpeechError),
                      "error": text_name(problem)} | {f"prob_{lab}": None for lab in self.labels}
        if self.segments:
            row |= {"start": None, "end": None}
        if self.speakers:
            row |= {"head": None}
        return [row]

    def _scored(self, label: str, probabilities: dict[str, float]) -> dict[str, Any]:
        return flat(scored(label, probabilities, self.threshold, self.labels)) | {"no_speech": False, "error": None}

    def prediction(self, base: dict[str, Any], p: Prediction) -> list[dict[str, Any]]:
        who = {"speaker": None if p.speaker is None else text_name(p.speaker), "head": p.head} if self.speakers else {}
        return [base | self._scored(p.label, p.probabilities) | who]

    def timeline(self, base: dict[str, Any], tl: Timeline) -> list[dict[str, Any]]:
        if not tl.segments:
            return self.error(base, NoSpeechError(base["path"], tl.message or "no speech found"))
        base = base | {"duration": tl.duration}
        who = (lambda s: {"speaker": s.speaker, "head": s.head}) if self.speakers else (lambda s: {})
        return [base | {"start": s.start, "end": s.end} | self._scored(s.label, s.probabilities) | who(s) for s in tl.segments]


def failed_inputs(rows: Iterable[dict[str, Any]]) -> set[str]:
    """Paths whose rows say they failed (an error other than "no speech")."""
    return {r["path"] for r in rows if r["error"] is not None and not r["no_speech"]}
