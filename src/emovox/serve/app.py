"""FastAPI application: an HTTP API and a web page for emotion prediction.

Endpoints:
    ``POST /v1/predict``  audio upload (multipart field ``file``, or the raw body);
                          ``segments=true`` (form field or query) adds the timeline,
                          ``adapt=auto|on|off`` its speaker adaptation, ``speakers=auto|N``
                          tells its voices apart (a conversation). Several ``file``
                          parts give one result per file; with ``same_speaker=true`` they
                          are one speaker's recordings, classified together by the
                          model's speaker head; ``speaker=KEY`` names a known speaker whose
                          running statistics (in memory) adapt its recordings as they come.
    ``WS /v1/stream``     live audio: binary PCM messages in, emotion events out as they happen
                          (:mod:`emovox.serve.live`).
    ``GET /v1/labels``    the model's labels.
    ``GET /healthz``      liveness and load.
    ``GET /``             the web page (no external resources).
    ``GET /docs``         OpenAPI documentation (Swagger UI, served from this service: :mod:`emovox.serve.docs`).

Uploads are streamed into a temporary file (deleted after every request)
with the size limit enforced while reading; inference runs in worker threads
so the event loop stays free.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .._version import __version__
from ..errors import AudioError, EmovoxError, UnknownSoundError
from ..inference.segments import segment_file
from ..inference.voices import parse_speakers
from .config import ServeConfig
from .docs import add_docs
from .guard import LOOPBACK, same_origin
from .live import Streams
from .schemas import (
    MAX_SPEAKER_KEY,
    PREDICT_BODY,
    SPEAKERS_PATTERN,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    LabelsResponse,
    PredictResponse,
)
from .upload import Reject, Upload, UploadedFile, flag, receive

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer

__all__ = ["ServeConfig", "create_app", "serve", "serve_app"]

log = logging.getLogger("emovox.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self' {ws}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ADAPT_MODES = ("auto", "on", "off", "true", "false")
#: How the query parameters of ``POST /v1/predict`` are documented (they are read as text, like its form fields).
FLAG = {"enum": ["true", "false"]}


@dataclass(frozen=True)
class PredictRequest:
    """What a ``POST /v1/predict`` asks for, its form fields over its query parameters."""

    segments: bool
    adapt: str
    same_speaker: bool
    speaker: str | None = None
    voices: str | int = 1

    @classmethod
    def of(cls, upload: Upload, segments: str | None, adapt: str | None, same_speaker: str | None,
           has_speaker_head: bool, speaker: str | None = None, speakers: str | None = None) -> PredictRequest:
        key = upload.fields.get("speaker", speaker)
        key = key.strip() if key is not None else None
        try:
            voices = parse_speakers(upload.fields.get("speakers", speakers) or "1")
        except EmovoxError as err:
            raise Reject(422, str(err)) from None
        req = cls(flag(upload.fields.get("segments", segments), "segments"),
                  (upload.fields.get("adapt", adapt) or "auto").strip().lower(),
                  flag(upload.fields.get("same_speaker", same_speaker), "same_speaker"), key or None, voices)
        if req.voices != 1 and not req.segments:
            raise Reject(422, "speakers=auto (or a number) tells the voices of a timeline apart: send segments=true too")
        if req.speaker is not None:
            if len(req.speaker) > MAX_SPEAKER_KEY or not req.speaker.isprintable():
                raise Reject(422, f"speaker must be a printable key of at most {MAX_SPEAKER_KEY} characters")
            if req.same_speaker:
                raise Reject(422, "send same_speaker=true or a speaker key, not both")
            if not has_speaker_head:
                raise Reject(422, "this model has no speaker-normalised head; send no speaker key")
        if req.adapt not in ADAPT_MODES:
            raise Reject(422, f"adapt must be auto, on or off, not {req.adapt[:32]!r}")
        if req.same_speaker and len(upload.files) < 2:
            raise Reject(422, "same_speaker=true needs several files of that speaker (send several 'file' parts)")
        if req.same_speaker and not has_speaker_head:
            raise Reject(422, "this model has no speaker-normalised head; send same_speaker=false")
        return req


class Predictor:
    """Runs the recognizer on uploaded files (in a worker thread) and renders the answers, with the uploads'
    own names in place of their temporary paths."""

    def __init__(self, recognizer: EmotionRecognizer, cfg: ServeConfig):
        self.recognizer, self.cfg = recognizer, cfg
        self.speakers_lock = threading.Lock()  # the recognizer's running speaker statistics are shared by threads

    def result(self, pred: Any, filename: str) -> dict[str, Any]:
        record = {k: v for k, v in pred.to_dict(self.cfg.uncertain_below).items() if k != "source"}
        return {"filename": filename} | record | {"threshold": self.cfg.uncertain_below}

    @staticmethod
    def audio_error(err: AudioError, files: list[UploadedFile]) -> Reject:
        problem = err.problem
        for f in files:
            problem = problem.replace(str(f.path), f.filename)
        name = next((f.filename for f in files if str(f.path) == err.source), files[0].filename)
        status = 415 if ("not a readable audio file" in problem or "cannot be read" in problem) else 422
        extra = {"unknown": True, "ood_score": round(err.score, 4)} if isinstance(err, UnknownSoundError) else {}
        return Reject(status, f"{name}: {problem}", **extra)

    def timeline(self, f: UploadedFile, adapt: str, voices: str | int = 1) -> dict[str, Any]:
        timeline = segment_file(self.recognizer, f.path, self.cfg.segment_options, adapt=adapt, speakers=voices).to_dict()
        timeline["source"] = f.filename
        for key in ("message", "adaptation_note"):
            if timeline.get(key):
                timeline[key] = timeline[key].replace(str(f.path), f.filename)
        return timeline

    def __call__(self, files: list[UploadedFile], req: PredictRequest) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            if req.speaker is not None:
                with self.speakers_lock:
                    preds = self.recognizer.predict([f.path for f in files], speaker=req.speaker)
            else:
                preds = self.recognizer.predict([f.path for f in files], same_speaker=req.same_speaker)
            outs = [self.result(p, f.filename) for p, f in zip(preds, files)]
            if req.segments:
                for out, f in zip(outs, files):
                    out["timeline"] = self.timeline(f, req.adapt, req.voices)
        except AudioError as err:
            raise self.audio_error(err, files) from None
        except EmovoxError as err:
            raise Reject(422, str(err)) from None
        for out in outs:
            log.info("%s: %s (%.2f)", out["filename"], out["label"], out["confidence"])
        log.info("%d file(s) in %.2f s", len(files), time.perf_counter() - t0)
        return outs[0] if len(files) == 1 and not req.same_speaker else {"files": outs, "same_speaker": req.same_speaker}


class Admission:
    """Inference threads (``cfg.workers``) and the requests waiting for them: at most ``cfg.max_pending`` whose
    body has arrived; beyond that a request waits ``cfg.queue_timeout_s`` for a slot, then gets 503."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.limiter = anyio.CapacityLimiter(cfg.workers)
        self.slots = anyio.Semaphore(cfg.max_pending)

    @property
    def pending(self) -> int:
        return self.cfg.max_pending - self.slots.value

    async def run(self, fn: Any, *args: Any) -> Any:
        with anyio.move_on_after(self.cfg.queue_timeout_s) as waited:
            await self.slots.acquire()
        if waited.cancelled_caught:
            raise Reject(503, f"the server is busy ({self.pending} requests in progress); try again shortly")
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.slots.release()


def resolve_config(config: ServeConfig | None, changes: dict[str, Any]) -> ServeConfig:
    """``config`` (or the defaults) with ``changes`` to its fields by name."""
    if changes.get("allowed_hosts") is not None:
        changes["allowed_hosts"] = tuple(changes["allowed_hosts"])
    if "allowed_origins" in changes:
        changes["allowed_origins"] = tuple(changes["allowed_origins"])
    if config is not None and "segment_options" not in changes:
        changes["segment_options"] = config.segment_options
    return replace(config or ServeConfig(), **changes) if changes else (config or ServeConfig())


def create_app(recognizer: EmotionRecognizer, config: ServeConfig | None = None, *, docs: bool = True,
               **changes: Any) -> FastAPI:
    """A FastAPI app serving ``recognizer`` (see the module docstring for the endpoints), configured by ``config``
    (a :class:`ServeConfig`, passed whole) with ``changes`` to its fields by name on top."""
    cfg = resolve_config(config, changes)
    labels = recognizer.labels
    predictor, admission = Predictor(recognizer, cfg), Admission(cfg)
    streams = Streams(recognizer, cfg, admission.limiter)
    app = FastAPI(
        title="emovox",
        version=__version__,
        description="Speech emotion recognition. Upload a recording to `POST /v1/predict`; stream live audio to the "
                    "WebSocket `/v1/stream` (binary PCM in, JSON events out; see docs/live.md); the web page is at `/`.",
        docs_url=None,  # add_docs serves Swagger UI from this service (no CDN)
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        responses={403: {"model": ErrorResponse, "description": "an unexpected Host header, or a foreign page's request"}},
    )
    app.state.config = cfg
    app.state.recognizer = recognizer
    app.state.streams = streams
    app.middleware("http")(same_origin(cfg))

    @app.exception_handler(Reject)
    async def _rejected(request: Request, exc: Reject) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail} | exc.extra, status_code=exc.status, headers=headers)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse | BatchResponse,
        response_model_exclude_none=True,
        summary="Predict the emotion of an audio file",
        openapi_extra={"requestBody": PREDICT_BODY},
        responses={
            408: {"model": ErrorResponse, "description": "the upload did not arrive in time"},
            413: {"model": ErrorResponse, "description": "upload too large"},
            415: {"model": ErrorResponse, "description": "not a readable audio file"},
            422: {"model": ErrorResponse, "description": "no file, empty, silent or otherwise unusable audio"},
            503: {"model": ErrorResponse, "description": "too many requests in progress"},
        },
    )
    async def predict(
        request: Request,
        segments: str | None = Query(None, json_schema_extra=FLAG,
                                     description="true: also return the emotion timeline (also accepted as a form field)"),
        adapt: str | None = Query(None, json_schema_extra={"enum": ["auto", "on", "off"]},
                                  description="timeline speaker adaptation: auto (default), on or off (also a form field)"),
        same_speaker: str | None = Query(None, json_schema_extra=FLAG,
                                         description="true: the files are ONE speaker's recordings; classify them together "
                                                     "with the model's speaker head (also a form field)"),
        speaker: str | None = Query(None, json_schema_extra={"maxLength": MAX_SPEAKER_KEY},
                                    description="the key of a known speaker (a user, an agent): the files join its running "
                                                "statistics, kept by this service in memory, and are classified by the speaker "
                                                "head once it has enough recordings (also a form field)"),
        speakers: str | None = Query(None, json_schema_extra={"pattern": SPEAKERS_PATTERN},
                                     description="with segments=true: auto (or a number) tells the voices of the recording "
                                                 "apart; each segment gets its speaker (S1, S2 ...), each speaker is adapted "
                                                 "to on its own, and the timeline gains a per-speaker summary (also a form field)"),
        filename: str | None = Query(None, description="with the audio as the raw body: its name in the answer "
                                                       "(default: upload)"),
    ) -> dict[str, Any]:
        """Upload audio as multipart field ``file`` (or as the raw body); get the emotion and its probabilities.

        Several ``file`` parts give ``{"files": [...], "same_speaker": ...}``, one result per file in upload order.
        """
        upload = Upload(cfg.tmp_dir)
        try:
            try:
                with anyio.fail_after(cfg.upload_timeout_s):
                    await receive(request, upload, cfg.max_upload_bytes, filename)
            except TimeoutError:
                raise Reject(408, f"the upload did not arrive within {cfg.upload_timeout_s:g} s") from None
            req = PredictRequest.of(upload, segments, adapt, same_speaker, recognizer.model.has_speaker_head, speaker, speakers)
            # Only a request whose body has arrived takes a slot; when all are taken it queues briefly, then 503.
            return await admission.run(predictor, upload.files, req)
        finally:
            upload.cleanup()

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await streams(websocket)

    @app.get("/v1/labels", response_model=LabelsResponse, summary="The labels the model predicts")
    async def get_labels() -> dict[str, Any]:
        return {"labels": labels}

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness and load")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "labels": len(labels), "pending": admission.pending,
                "workers": cfg.workers, "max_upload_mb": cfg.max_upload_mb, "streams": streams.open,
                "max_streams": cfg.max_streams}

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> FileResponse:
        host = request.headers.get("host", "")  # the live stream's socket: the page's own host (checked by the guard)
        ws = f"ws://{host} wss://{host}" if host and all(c.isalnum() or c in ".-:[]" for c in host) else ""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP.format(ws=ws), "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if app.openapi_url is not None:
        add_docs(app, app.openapi_url)
    return app


def serve_app(model_dir: str | Path, host: str = "127.0.0.1", **options: Any) -> FastAPI:
    """The app :func:`serve` runs on ``host``: the model in ``model_dir``, ``options`` to :func:`create_app`; bound to
    a loopback address it answers only to this machine's names unless ``allowed_hosts`` says otherwise."""
    from ..inference.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.load(model_dir)
    if options.get("allowed_hosts") is None and host in LOOPBACK:
        # a service on this machine only answers to this machine's names (no DNS rebinding)
        options["allowed_hosts"] = sorted({"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]"})
    return create_app(recognizer, **options)


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

    app = serve_app(model_dir, host, **options)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
