"""FastAPI application: an HTTP API and a web page for emotion prediction.

Endpoints:
    ``POST /v1/predict``  audio upload (multipart field ``file``, or the raw body);
                          ``segments=true`` (form field or query) adds the timeline,
                          ``adapt=auto|on|off`` its speaker adaptation. Several ``file``
                          parts give one result per file; with ``same_speaker=true`` they
                          are one speaker's recordings, classified together by the
                          model's speaker head.
    ``GET /v1/labels``    the model's labels.
    ``GET /healthz``      liveness and load.
    ``GET /``             the web page (no external resources).
    ``GET /docs``         OpenAPI documentation.

Uploads are streamed into a temporary file (deleted after every request)
with the size limit enforced while reading; inference runs in worker threads
so the event loop stays free.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from .._version import __version__
from ..errors import AudioError, EmovoxError
from ..inference.results import UNCERTAIN_BELOW, scored
from ..inference.segments import SegmentOptions, segment_file

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer

log = logging.getLogger("emovox.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MIB = 1024 * 1024
#: Room for multipart headers and small form fields on top of the file limit.
BODY_OVERHEAD = 64 * 1024
#: Largest non-file form field, bytes.
MAX_FIELD_BYTES = 4096
#: After a 413, this many extra bytes are read and discarded so the client sees the answer.
DRAIN_BYTES = 8 * MIB
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Most audio files in one request (several ``file`` parts).
MAX_FILES = 64
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ServeConfig:
    """Options of the service.

    Attributes:
        max_upload_mb: largest accepted audio file, MiB (larger: HTTP 413).
        uncertain_below: a prediction whose top probability is below this is flagged ``uncertain``.
        workers: inference threads (requests beyond them wait their turn).
        max_pending: requests waiting or running at once before new ones get HTTP 503.
        tmp_dir: folder for the temporary upload files (default: the system's).
        segment_options: how timelines are made (:class:`~emovox.inference.segments.SegmentOptions`, or a dict of
            its fields); ``max_duration_s`` is set from ``max_audio_minutes``.
        upload_timeout_s: a request body must arrive within this many seconds (slow or stalled uploads get 408).
        queue_timeout_s: when ``max_pending`` requests are in progress, a new one waits this long for a slot before 503.
        max_audio_minutes: longest recording accepted for a timeline (``segments=true``), minutes.
        allowed_hosts: ``Host`` header values accepted (``None``: any; the CLI sets the bound address, which stops
            DNS-rebinding pages from reaching a service on this machine).
        allowed_origins: origins whose browser pages may POST (the service's own page always may); other
            cross-origin requests get 403.
    """

    max_upload_mb: float = 25.0
    uncertain_below: float = UNCERTAIN_BELOW
    workers: int = 2
    max_pending: int = 32
    tmp_dir: str | Path | None = None
    segment_options: SegmentOptions | dict[str, Any] = field(default_factory=SegmentOptions)
    upload_timeout_s: float = 60.0
    queue_timeout_s: float = 10.0
    max_audio_minutes: float = 30.0
    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise EmovoxError(f"max_upload_mb must be positive, not {self.max_upload_mb}")
        if not 0 <= self.uncertain_below <= 1:
            raise EmovoxError(f"uncertain_below must be between 0 and 1, not {self.uncertain_below}")
        if self.workers < 1 or self.max_pending < 1:
            raise EmovoxError(f"workers and max_pending must be at least 1, not {self.workers} and {self.max_pending}")
        if min(self.upload_timeout_s, self.max_audio_minutes) <= 0 or self.queue_timeout_s < 0:
            raise EmovoxError("upload_timeout_s and max_audio_minutes must be positive, queue_timeout_s at least 0")
        if self.tmp_dir is not None and not Path(self.tmp_dir).is_dir():
            raise EmovoxError(f"tmp_dir {self.tmp_dir}: not a folder")
        given = self.segment_options
        options = SegmentOptions.of(given if isinstance(given, SegmentOptions) else None,
                                    **({} if isinstance(given, SegmentOptions) else dict(given or {})))
        object.__setattr__(self, "segment_options", SegmentOptions.of(options, max_duration_s=self.max_audio_minutes * 60))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)


# --------------------------------------------------------------------------- response schemas (for /docs)
class PredictResponse(BaseModel):
    filename: str = Field(description="name of the uploaded file")
    label: str = Field(description="most probable emotion")
    confidence: float = Field(description="probability of that emotion")
    probabilities: dict[str, float] = Field(description="probability of every label, in the model's order")
    uncertain: bool = Field(description="true when the top probability is below the service's threshold")
    threshold: float = Field(description="the threshold used for `uncertain`")
    timeline: dict[str, Any] | None = Field(None, description="emotion over time (only with segments=true)")


class BatchResponse(BaseModel):
    files: list[PredictResponse] = Field(description="one result per uploaded file, in upload order")
    same_speaker: bool = Field(description="true when the files were classified together as one speaker's recordings")


class LabelsResponse(BaseModel):
    labels: list[str]


class HealthResponse(BaseModel):
    status: str
    version: str
    labels: int
    pending: int
    workers: int
    max_upload_mb: float


class ErrorResponse(BaseModel):
    detail: str


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "audio file(s) (wav, flac, ogg, mp3, ...); several give one result each"},
                    "segments": {"type": "boolean", "description": "also return the emotion timeline"},
                    "adapt": {"type": "string", "enum": ["auto", "on", "off"], "description": "speaker adaptation of the timeline"},
                    "same_speaker": {"type": "boolean", "description": "several files of ONE speaker: classify them together with the speaker head"},
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": "raw audio file"}},
    },
}


# --------------------------------------------------------------------------- upload streaming
class _Reject(Exception):
    """Ends a request with an HTTP error (after the body has been dealt with)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class _TooLarge(Exception):
    pass


@dataclass
class _File:
    filename: str
    path: Path
    content_type: str | None = None
    size: int = 0


@dataclass
class _Upload:
    """What a request carried: its audio files (each streamed to a temporary file) and small form fields."""

    tmp_dir: str | Path | None = None
    files: list[_File] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    out: BinaryIO | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def new_file(self, filename: str, content_type: str | None) -> None:
        self.close()
        fd, name = tempfile.mkstemp(prefix="emovox-upload-", dir=self.tmp_dir)
        self.files.append(_File(filename, Path(name), content_type))
        self.out = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self.out is not None
        self.out.write(data)
        self.files[-1].size += len(data)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def cleanup(self) -> None:
        self.close()
        for f in self.files:
            f.path.unlink(missing_ok=True)


class _FormReader:
    """Multipart callbacks: every ``file`` part streams into its own temporary file, small text fields are kept."""

    def __init__(self, upload: _Upload, max_bytes: int):
        self.upload, self.max_bytes = upload, max_bytes
        self.header_name, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.mode = "skip"  # "file", "field" or "skip"
        self.name = ""
        self.value = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.headers, self.mode, self.name, self.value = {}, "skip", "", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_name.strip().lower()] = self.header_value.strip()
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options or self.name == "file":  # a 'file' part sent without a filename is still the audio
            if self.name != "file":
                raise _Reject(422, f"send audio in form fields named 'file', not {self.name[:64]!r}")
            if len(self.upload.files) >= MAX_FILES:
                raise _Reject(422, f"at most {MAX_FILES} files per request")
            self.mode = "file"
            ctype = self.headers.get(b"content-type")
            self.upload.new_file(_safe_name(options.get(b"filename", b"").decode("utf-8", "replace")), ctype.decode("latin-1") if ctype else None)
        else:
            self.mode = "field"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self.mode == "file":
            if self.upload.size + n > self.max_bytes:
                raise _TooLarge()
            self.upload.write(data[start:end])
        elif self.mode == "field":
            if len(self.value) + n > MAX_FIELD_BYTES:
                raise _Reject(422, f"form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes")
            self.value += data[start:end]

    def on_part_end(self) -> None:
        if self.mode == "file":
            self.upload.close()
        if self.mode == "field" and self.name:
            self.upload.fields[self.name] = self.value.decode("utf-8", "replace")
        self.mode = "skip"


def _host_name(host: str) -> str:
    """``host[:port]`` without the port, lower-case (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _safe_name(name: str) -> str:
    """The base name of an uploaded file, for messages only (it never becomes a path)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "".join(c for c in base if c.isprintable())[:200] or "upload"


async def _receive(request: Request, upload: _Upload, max_bytes: int) -> _Upload:
    """Stream the request body into ``upload``'s temporary files; raises :class:`_Reject` for a bad or oversized upload."""
    body_limit = max_bytes + BODY_OVERHEAD
    too_large_msg = f"upload is larger than the limit of {round(max_bytes / MIB, 3):g} MiB"
    ctype = request.headers.get("content-type", "")
    kind, params = parse_options_header(ctype)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        if int(declared) > body_limit + DRAIN_BYTES:
            raise _Reject(413, too_large_msg)  # too much to drain: answer now, the connection will close
        await _drain(request.stream(), DRAIN_BYTES + body_limit)
        raise _Reject(413, too_large_msg)

    parser: MultipartParser | None = None
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise _Reject(422, "multipart body without a boundary in its Content-Type")
        parser = MultipartParser(boundary, _FormReader(upload, max_bytes).callbacks())
    elif kind == b"application/x-www-form-urlencoded":
        raise _Reject(415, "send the audio as multipart/form-data (field 'file') or as the raw request body, not as a URL-encoded form")
    else:
        upload.new_file(_safe_name(request.query_params.get("filename", "upload")), ctype or None)

    stream = request.stream()
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > body_limit:
                raise _TooLarge()
            if parser is not None:
                parser.write(chunk)
            else:
                if received > max_bytes:
                    raise _TooLarge()
                upload.write(chunk)
        if parser is not None:
            parser.finalize()
    except _TooLarge:
        await _drain(stream, DRAIN_BYTES)
        raise _Reject(413, too_large_msg) from None
    except MultipartParseError as err:
        raise _Reject(422, f"malformed multipart body ({err})") from None
    except ClientDisconnect:
        raise _Reject(400, "the client disconnected during the upload") from None
    finally:
        upload.close()
    if not upload.files:
        raise _Reject(422, "no audio file in the request: send it in a multipart field named 'file'")
    for f in upload.files:
        if f.size == 0:
            raise _Reject(422, f"{f.filename}: file is empty (0 bytes)")
    return upload


async def _drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and discard up to ``limit`` more bytes, so a client still sending can read the error."""
    n = 0
    try:
        async for chunk in stream:
            n += len(chunk)
            if n > limit:
                break
    except ClientDisconnect:
        pass


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise _Reject(422, f"{name} must be true or false, not {value!r}")


# --------------------------------------------------------------------------- the app
def create_app(recognizer: EmotionRecognizer, config: ServeConfig | None = None, *, docs: bool = True,
               **changes: Any) -> FastAPI:
    """A FastAPI app serving ``recognizer`` (see the module docstring for the endpoints), configured by ``config``
    (a :class:`ServeConfig`, passed whole) with ``changes`` to its fields by name on top."""
    if "allowed_hosts" in changes and changes["allowed_hosts"] is not None:
        changes["allowed_hosts"] = tuple(changes["allowed_hosts"])
    if "allowed_origins" in changes:
        changes["allowed_origins"] = tuple(changes["allowed_origins"])
    if config is not None and "segment_options" not in changes:
        changes["segment_options"] = config.segment_options
    cfg = replace(config or ServeConfig(), **changes) if changes else (config or ServeConfig())
    labels = recognizer.labels
    limiter = anyio.CapacityLimiter(cfg.workers)
    slots = anyio.Semaphore(cfg.max_pending)  # requests whose body has arrived, waiting for or running inference

    def pending() -> int:
        return cfg.max_pending - slots.value

    app = FastAPI(
        title="emovox",
        version=__version__,
        description="Speech emotion recognition. Upload a recording to `POST /v1/predict`; the web page is at `/`.",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.config = cfg
    app.state.recognizer = recognizer

    @app.middleware("http")
    async def _same_origin(request: Request, call_next):
        host = request.headers.get("host", "")
        if cfg.allowed_hosts is not None and _host_name(host) not in {_host_name(h) for h in cfg.allowed_hosts}:
            return JSONResponse({"detail": f"unexpected Host header {host[:100]!r}; this service answers to "
                                           f"{', '.join(cfg.allowed_hosts)}"}, status_code=403)
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            own = {f"http://{host}", f"https://{host}"}
            if origin not in own and origin not in cfg.allowed_origins:
                return JSONResponse({"detail": f"cross-origin request from {origin[:100]} refused; allow it with "
                                               "--allow-origin"}, status_code=403)
        return await call_next(request)

    def result(pred: Any, filename: str) -> dict[str, Any]:
        return {"filename": filename} | scored(pred.label, pred.probabilities, cfg.uncertain_below, labels) \
            | {"threshold": cfg.uncertain_below}

    def audio_error(err: AudioError, files: list[_File]) -> _Reject:
        problem = err.problem
        for f in files:
            problem = problem.replace(str(f.path), f.filename)
        name = next((f.filename for f in files if str(f.path) == err.source), files[0].filename)
        status = 415 if ("not a readable audio file" in problem or "cannot be read" in problem) else 422
        return _Reject(status, f"{name}: {problem}")

    def timeline_of(f: _File, adapt: str) -> dict[str, Any]:
        timeline = segment_file(recognizer, f.path, cfg.segment_options, adapt=adapt).to_dict()
        timeline["source"] = f.filename
        for key in ("message", "adaptation_note"):
            if timeline.get(key):
                timeline[key] = timeline[key].replace(str(f.path), f.filename)
        return timeline

    def infer(files: list[_File], segments: bool, adapt: str, same_speaker: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            preds = recognizer.predict([f.path for f in files], same_speaker=same_speaker)
            outs = [result(p, f.filename) for p, f in zip(preds, files)]
            if segments:
                for out, f in zip(outs, files):
                    out["timeline"] = timeline_of(f, adapt)
        except AudioError as err:
            raise audio_error(err, files) from None
        except EmovoxError as err:
            raise _Reject(422, str(err)) from None
        for out in outs:
            log.info("%s: %s (%.2f)", out["filename"], out["label"], out["confidence"])
        log.info("%d file(s) in %.2f s", len(files), time.perf_counter() - t0)
        return outs[0] if len(files) == 1 and not same_speaker else {"files": outs, "same_speaker": same_speaker}

    @app.exception_handler(_Reject)
    async def _rejected(request: Request, exc: _Reject) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse | BatchResponse,
        response_model_exclude_none=True,
        summary="Predict the emotion of an audio file",
        openapi_extra={"requestBody": PREDICT_BODY},
        responses={
            413: {"model": ErrorResponse, "description": "upload too large"},
            415: {"model": ErrorResponse, "description": "not a readable audio file"},
            422: {"model": ErrorResponse, "description": "no file, empty, silent or otherwise unusable audio"},
            503: {"model": ErrorResponse, "description": "too many requests in progress"},
        },
    )
    async def predict(
        request: Request,
        segments: str | None = Query(None, description="true: also return the emotion timeline (also accepted as a form field)"),
        adapt: str | None = Query(None, description="timeline speaker adaptation: auto (default), on or off (also a form field)"),
        same_speaker: str | None = Query(None, description="true: the files are ONE speaker's recordings; classify them together "
                                                           "with the model's speaker head (also a form field)"),
    ) -> dict[str, Any]:
        """Upload audio as multipart field ``file`` (or as the raw body); get the emotion and its probabilities.

        Several ``file`` parts give ``{"files": [...], "same_speaker": ...}``, one result per file in upload order.
        """
        upload = _Upload(cfg.tmp_dir)
        try:
            try:
                with anyio.fail_after(cfg.upload_timeout_s):
                    await _receive(request, upload, cfg.max_upload_bytes)
            except TimeoutError:
                raise _Reject(408, f"the upload did not arrive within {cfg.upload_timeout_s:g} s") from None
            want_segments = _flag(upload.fields.get("segments", segments), "segments")
            want_same = _flag(upload.fields.get("same_speaker", same_speaker), "same_speaker")
            mode = (upload.fields.get("adapt", adapt) or "auto").strip().lower()
            if mode not in ("auto", "on", "off", "true", "false"):
                raise _Reject(422, f"adapt must be auto, on or off, not {mode[:32]!r}")
            if want_same and len(upload.files) < 2:
                raise _Reject(422, "same_speaker=true needs several files of that speaker (send several 'file' parts)")
            if want_same and not recognizer.model.has_speaker_head:
                raise _Reject(422, "this model has no speaker-normalised head; send same_speaker=false")
            # Only a request whose body has arrived takes a slot; when all are taken it queues briefly, then 503.
            with anyio.move_on_after(cfg.queue_timeout_s) as waited:
                await slots.acquire()
            if waited.cancelled_caught:
                raise _Reject(503, f"the server is busy ({pending()} requests in progress); try again shortly")
            try:
                return await anyio.to_thread.run_sync(infer, upload.files, want_segments, mode, want_same, limiter=limiter)
            finally:
                slots.release()
        finally:
            upload.cleanup()

    @app.get("/v1/labels", response_model=LabelsResponse, summary="The labels the model predicts")
    async def get_labels() -> dict[str, Any]:
        return {"labels": labels}

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness and load")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "labels": len(labels), "pending": pending(), "workers": cfg.workers,
                "max_upload_mb": cfg.max_upload_mb}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    return app


def serve(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Load the model in ``model_dir`` and serve it with uvicorn until interrupted.

    ``options`` go to :func:`create_app` (``max_upload_mb``, ``workers``, ...).
    """
    import uvicorn

    from ..inference.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.load(model_dir)
    if options.get("allowed_hosts") is None and host in LOOPBACK:
        # a service on this machine only answers to this machine's names (no DNS rebinding)
        options["allowed_hosts"] = sorted({"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]"})
    app = create_app(recognizer, **options)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
