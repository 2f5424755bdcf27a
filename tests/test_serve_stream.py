"""The WebSocket /v1/stream on a real server: live audio in, the timeline's events out; bad clients get a clear close."""
from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from emovox import EmotionRecognizer  # noqa: E402
from emovox.serve import create_app  # noqa: E402

from helpers_server import running_server  # noqa: E402
from test_live import conversation, needs_silero  # noqa: E402


@pytest.fixture(scope="module")
def bundled() -> EmotionRecognizer:
    return EmotionRecognizer.load()


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/v1/stream" + (f"?{query}" if query else "")


def events_of(ws, until: str = "end", timeout: float = 60.0) -> list[dict]:
    out = []
    while True:
        msg = json.loads(ws.recv(timeout=timeout))
        out.append(msg)
        if msg["type"] == until:
            return out


def closed(ws, timeout: float = 20.0) -> tuple[int, str]:
    """The code and reason the server closed ``ws`` with (reading whatever came before)."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as c:
        return c.rcvd.code, c.rcvd.reason


@needs_silero
def test_streaming_in_real_time_and_faster_gives_the_file_timeline(bundled):
    rate = 16000
    y = conversation(rate)
    expected = bundled.timeline(y, sample_rate=rate, adapt="off").segments
    app = create_app(bundled)
    with running_server(app) as base:
        # Real time, 20 ms frames of 16-bit PCM; events read as they come, on another thread.
        with connect(ws_url(base, "rate=16000&format=s16le&adapt=off")) as ws:
            ready = json.loads(ws.recv(timeout=30))
            assert ready["type"] == "ready" and ready["labels"] == bundled.labels and ready["vad"] == "silero"
            got: list[tuple[float, dict]] = []

            def read() -> None:
                while not got or got[-1][1]["type"] != "end":
                    got.append((time.monotonic(), json.loads(ws.recv(timeout=60))))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
            frame, t0, sent_at = rate // 50, time.monotonic(), []
            for i in range(0, pcm.size, frame):
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                ws.send(pcm[i : i + frame].tobytes())
                sent_at.append((i + frame) / rate)
            finished = time.monotonic()
            ws.send(json.dumps({"type": "end"}))
            reader.join(60)
        segs = [e for _, e in got if e["type"] == "segment"]
        assert [(s["start"], s["end"], s["label"]) for s in segs] == [(round(s.start, 3), round(s.end, 3), s.label) for s in expected]
        assert got[-1][1]["type"] == "end" and got[-1][1]["segments"] == len(segs)
        during = [(at, e) for at, e in got if e["type"] == "segment" and at < finished]
        assert len(during) >= len(segs) - 1  # labels came while the audio was still being sent ...
        for at, e in during:  # ... each soon after its window's audio had gone out
            assert at - (t0 + e["end"]) < 1.5
        # Faster than real time: 48 kHz float32 in 0.5 s messages, as fast as the socket takes them.
        y48 = conversation(48000)
        with connect(ws_url(base)) as ws:
            ws.send(json.dumps({"sample_rate": 48000, "format": "f32le", "adapt": "off"}))
            assert json.loads(ws.recv(timeout=30))["sample_rate"] == 48000
            for i in range(0, y48.size, 24000):
                ws.send(y48[i : i + 24000].astype("<f4").tobytes())
            ws.send(json.dumps({"type": "end"}))
            fast = [e for e in events_of(ws) if e["type"] == "segment"]
            assert closed(ws) == (1000, "end of stream")
        assert [s["label"] for s in fast] == [s.label for s in expected]
        assert httpx.get(base + "/healthz").json()["streams"] == 0


def test_bad_clients_get_a_clear_close_and_the_server_keeps_serving(bundled):
    app = create_app(bundled, stream_idle_s=1.0, max_frame_kb=64, max_ahead_s=3.0, max_streams=3, send_timeout_s=2.0)
    second = np.zeros(16000, "<i2").tobytes()
    with running_server(app) as base:
        url = ws_url(base, "rate=16000")

        def close_of(*messages, query="rate=16000", first=True) -> tuple[int, str]:
            with connect(ws_url(base, query)) as ws:
                if first:
                    assert json.loads(ws.recv(timeout=30))["type"] == "ready"
                for m in messages:
                    ws.send(m)
                return closed(ws)

        assert close_of("hello") == (1003, 'binary PCM messages expected; the only text message is {"type": "end"}')
        code, reason = close_of(b"\x00\x01\x02")
        assert code == 1007 and "whole number of s16le frames" in reason
        code, reason = close_of(b"\x00" * 70000)
        assert code == 1009 and "at most 65536" in reason
        code, reason = close_of("not json", query="", first=False)
        assert code == 1003 and "settings as JSON" in reason
        code, reason = close_of(query="rate=7", first=False)
        assert code == 1008 and "sample rate" in reason
        code, reason = close_of(query="rate=16000&format=mp3", first=False)
        assert code == 1008 and "format must be" in reason
        code, reason = close_of()  # sends nothing after the settings
        assert code == 4408 and "nothing arrived for 1 s" in reason
        code, reason = close_of(*[second] * 6)  # 6 s of audio at once: a flood ahead of real time
        assert code == 1008 and "ahead of real time" in reason
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"Origin": "https://evil.example"})
        assert refused.value.response.status_code == 403
        # A client that never reads, and two others holding the remaining slots: the next is told to come back.
        stack = contextlib.ExitStack()
        silent = stack.enter_context(connect(url))
        for _ in range(2):
            silent.send(second)
        with contextlib.ExitStack() as holding:
            for _ in range(2):
                json.loads(holding.enter_context(connect(url)).recv(timeout=30))
            with connect(url) as extra:
                code, reason = closed(extra)
            assert code == 1013 and "try again later" in reason
            assert httpx.get(base + "/healthz").json()["streams"] == 3
        # ... and a well-behaved stream is still answered in full.
        with connect(ws_url(base, "rate=16000&adapt=off")) as ws:
            json.loads(ws.recv(timeout=30))
            ws.send(second)
            ws.send(json.dumps({"type": "end"}))
            assert events_of(ws)[-1]["type"] == "end"
        stack.close()
        deadline = time.monotonic() + 10
        while httpx.get(base + "/healthz").json()["streams"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(base + "/healthz").json()["streams"] == 0
