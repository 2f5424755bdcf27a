"""``/v1/stream``: live audio over a WebSocket, emotion events back as they happen.

The protocol:

1. Connect to ``ws://HOST/v1/stream?rate=48000&format=f32le`` (query parameters ``rate``, ``format`` = ``s16le``
   (default) or ``f32le``, ``channels``, ``adapt`` = ``auto|on|off``), or connect without ``rate`` and send them
   as the first message, a JSON text ``{"sample_rate": 48000, "format": "f32le"}``.
2. The server answers ``{"type": "ready", "sample_rate": ..., "labels": [...], ...}``.
3. Send the audio as binary messages of raw little-endian PCM (any size up to ``max_frame_kb``, whole samples).
   The server sends JSON text events: ``speech_start`` / ``speech_end`` (``time``) and ``segment`` (``start``,
   ``end``, ``label``, ``confidence``, ``uncertain``, ``probabilities``, ``head``, ``adapted``), ``revised`` (the
   same fields: an earlier segment whose label changed once the session's speaker statistics grew), and ``unknown``
   (``start``, ``end``, ``ood_score``) for a window unlike all the speech the model knows, see
   :class:`~emovox.inference.live.StreamEvent`.
4. Send the text ``{"type": "end"}``: the server sends what is still due, then ``{"type": "end", ...}`` with the
   session's summary, and closes (1000).

Every limit closes the socket with a code and a reason that says which: the page's origin or the Host refused
(the handshake gets 403), too many streams (1013), bad settings (1008), text where audio was expected (1003), bytes
that are not whole samples or not finite (1007), a message over ``max_frame_kb`` (1009), audio arriving more than
``max_ahead_s`` ahead of real time or past ``max_stream_minutes`` (1008), nothing sent for ``stream_idle_s``
(4408). A client that does not read its events for ``send_timeout_s`` is dropped. The audio is processed in the
service's inference threads, so streams and uploads share the CPU fairly and the event loop stays free.
"""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..errors import AudioError, EmovoxError
from ..inference.live import PCM_FORMATS, StreamEvent
from .config import ServeConfig
from .guard import refused

if TYPE_CHECKING:
    from ..inference.recognizer import EmotionRecognizer

log = logging.getLogger("emovox.serve")

IDLE = 4408  # application code: nothing arrived for stream_idle_s


class Close(Exception):
    """End the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class Streams:
    """The ``/v1/stream`` endpoint: at most ``cfg.max_streams`` sessions, each an
    :class:`~emovox.inference.live.EmotionStream` fed in the inference threads."""

    def __init__(self, recognizer: EmotionRecognizer, cfg: ServeConfig, limiter: anyio.CapacityLimiter):
        self.recognizer, self.cfg, self.limiter = recognizer, cfg, limiter
        self.open = 0
        self.served = 0

    async def __call__(self, ws: WebSocket) -> None:
        why = refused(ws.headers, "WEBSOCKET", self.cfg)
        if why is not None:
            log.warning("stream refused: %s", why)
            await ws.close(code=1008, reason=why[:120])  # before accepting: the handshake gets 403
            return
        await ws.accept()
        if self.open >= self.cfg.max_streams:
            await ws.close(code=1013, reason=f"{self.open} streams are open, the most this server takes; try again later")
            return
        self.open += 1
        self.served += 1
        name = f"<stream {self.served}>"
        try:
            await self.session(ws, name)
        except Close as c:
            log.info("%s closed: %s", name, c.reason)
            await _close(ws, c.code, c.reason)
        except WebSocketDisconnect:
            log.info("%s: the client left", name)
        finally:
            self.open -= 1

    async def session(self, ws: WebSocket, name: str) -> None:
        cfg = self.cfg
        settings = dict(ws.query_params)
        if "rate" not in settings and "sample_rate" not in settings:
            settings = await self.first_message(ws)
        rate, fmt, channels, adapt = _settings(settings)
        try:
            stream = await anyio.to_thread.run_sync(
                lambda: self.recognizer.stream(rate, cfg.segment_options, channels=channels, name=name, adapt=adapt),
                limiter=self.limiter)
        except (AudioError, EmovoxError) as err:
            raise Close(1008, str(err)[:120]) from None
        await self.send(ws, {"type": "ready", "sample_rate": rate, "format": fmt, "channels": channels,
                             "labels": self.recognizer.labels, "vad": stream.vad, "adaptation": stream.adaptation_note,
                             "max_stream_minutes": cfg.max_stream_minutes})
        t0 = time.monotonic()
        max_bytes = int(cfg.max_frame_kb * 1024)
        while True:
            with anyio.move_on_after(cfg.stream_idle_s) as idle:
                msg = await ws.receive()
            if idle.cancelled_caught:
                raise Close(IDLE, f"nothing arrived for {cfg.stream_idle_s:g} s")
            if msg["type"] == "websocket.disconnect":
                return
            data, text = msg.get("bytes"), msg.get("text")
            if data is not None:
                if len(data) > max_bytes:
                    raise Close(1009, f"a message of {len(data)} bytes; at most {max_bytes} per message")
                try:
                    events = await anyio.to_thread.run_sync(stream.feed, data, fmt, limiter=self.limiter)
                except AudioError as err:
                    raise Close(1007, err.problem[:120]) from None
                await self.send_events(ws, events)
                if stream.seconds > cfg.max_stream_minutes * 60:
                    await self.send_events(ws, stream.close())
                    raise Close(1008, f"a stream may send {cfg.max_stream_minutes:g} min of audio; start a new one")
                ahead = stream.seconds - (time.monotonic() - t0)
                if ahead > cfg.max_ahead_s:
                    raise Close(1008, f"audio is arriving {ahead:.0f} s ahead of real time (at most {cfg.max_ahead_s:g} s)")
                continue
            if _is_end(text):
                events = await anyio.to_thread.run_sync(stream.close, limiter=self.limiter)
                await self.send_events(ws, events)
                tl = stream.timeline()
                await self.send(ws, {"type": "end", "seconds": round(stream.seconds, 3), "segments": len(tl.segments),
                                     "speech_seconds": round(tl.speech_seconds, 3), "label": tl.label,
                                     "adaptation": tl.adaptation})
                raise Close(1000, "end of stream")
            raise Close(1003, 'binary PCM messages expected; the only text message is {"type": "end"}')

    async def first_message(self, ws: WebSocket) -> dict[str, Any]:
        with anyio.move_on_after(self.cfg.stream_idle_s) as idle:
            msg = await ws.receive()
        if idle.cancelled_caught:
            raise Close(IDLE, f"no settings arrived for {self.cfg.stream_idle_s:g} s")
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        try:
            settings = json.loads(msg.get("text") or "")
        except ValueError:
            settings = None
        if not isinstance(settings, dict):
            raise Close(1003, 'first send the settings as JSON text, e.g. {"sample_rate": 48000, "format": "f32le"}, '
                              "or connect with ?rate=")
        return settings

    async def send_events(self, ws: WebSocket, events: list[StreamEvent]) -> None:
        for ev in events:
            await self.send(ws, ev.to_dict(self.cfg.uncertain_below))

    async def send(self, ws: WebSocket, obj: dict[str, Any]) -> None:
        with anyio.move_on_after(self.cfg.send_timeout_s) as late:
            await ws.send_text(json.dumps(obj))
        if late.cancelled_caught:
            raise Close(1008, f"events went unread for {self.cfg.send_timeout_s:g} s")


def _settings(settings: dict[str, Any]) -> tuple[int, str, int, str]:
    try:
        rate = int(float(settings.get("rate", settings.get("sample_rate"))))
        channels = int(settings.get("channels", 1))
    except (TypeError, ValueError):
        raise Close(1008, "sample_rate (rate) and channels must be numbers") from None
    fmt = str(settings.get("format", "s16le")).lower()
    adapt = str(settings.get("adapt", "auto")).lower()
    if fmt not in PCM_FORMATS:
        raise Close(1008, f"format must be one of {', '.join(PCM_FORMATS)}, not {fmt[:20]!r}")
    if not 1 <= channels <= 8:
        raise Close(1008, f"channels must be 1 to 8, not {channels}")
    if adapt not in ("auto", "on", "off"):
        raise Close(1008, f"adapt must be auto, on or off, not {adapt[:20]!r}")
    return rate, fmt, channels, adapt


def _is_end(text: str | None) -> bool:
    try:
        msg = json.loads(text or "")
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("type") == "end"


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
        with anyio.move_on_after(2):
            try:
                await ws.close(code=code, reason=reason[:120])
            except (RuntimeError, WebSocketDisconnect, OSError):
                pass
