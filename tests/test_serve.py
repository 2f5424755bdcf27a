"""The HTTP service: predictions, limits, errors, clean-up and concurrency."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'emovox[serve]'")
pytest.importorskip("httpx", reason="the service tests need httpx")

from fastapi.testclient import TestClient  # noqa: E402

from emovox.inference.recognizer import EmotionRecognizer  # noqa: E402
from emovox.serve import create_app  # noqa: E402

from helpers_models import quiet, random_model, tone_model, tone_signal  # noqa: E402
from helpers_server import running_server  # noqa: E402

SR = 16000


def wav_bytes(y: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.load(tone_model(tmp_path_factory.mktemp("serve-model")))


@pytest.fixture()
def upload_dir(tmp_path) -> Path:
    d = tmp_path / "uploads"
    d.mkdir()
    return d


@pytest.fixture()
def client(rec, upload_dir):
    app = create_app(rec, tmp_dir=upload_dir, segment_options={"vad": "energy"})
    with TestClient(app) as c:
        yield c
    assert list(upload_dir.iterdir()) == [], "an upload was left in the temporary folder"


def post(c: TestClient, audio: bytes, name: str = "clip.wav", ctype: str = "audio/wav", **kw):
    return c.post("/v1/predict", files={"file": (name, audio, ctype)}, **kw)


def test_predict_returns_label_probabilities_and_confidence(client):
    r = post(client, wav_bytes(tone_signal("sad", 1.2)))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["label"] == "sad" and d["filename"] == "clip.wav"
    assert list(d["probabilities"]) == ["angry", "neutral", "sad"]
    assert sum(d["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert d["confidence"] == d["probabilities"]["sad"] and d["uncertain"] is False and d["threshold"] == 0.4
    assert "timeline" not in d


@pytest.mark.parametrize("how", ["form", "query"])
def test_segments_adds_the_timeline(client, how):
    y = np.concatenate([tone_signal("angry", 3.0), quiet(2.0), tone_signal("sad", 3.0)])
    kw = {"data": {"segments": "true"}} if how == "form" else {"params": {"segments": "true"}}
    r = post(client, wav_bytes(y, fmt="FLAC"), name="talk.flac", ctype="audio/flac", **kw)
    assert r.status_code == 200, r.text
    tl = r.json()["timeline"]
    assert tl["source"] == "talk.flac" and tl["vad"] == "energy" and tl["duration"] == pytest.approx(8.0, abs=0.01)
    assert len(tl["speech"]) == 2 and [s["label"] for s in tl["segments"]] == ["angry", "sad"]


def test_raw_body_upload_is_accepted(client):
    r = client.post("/v1/predict", content=wav_bytes(tone_signal("angry", 1.2)), headers={"content-type": "audio/wav"},
                    params={"filename": "raw.wav"})
    assert r.status_code == 200 and r.json()["label"] == "angry" and r.json()["filename"] == "raw.wav"


def test_uncertain_when_top_probability_is_below_the_threshold(upload_dir, tmp_path):
    rec = EmotionRecognizer.load(random_model(tmp_path))  # untrained: moderate probabilities
    clip = tone_signal("neutral", 1.2)
    conf = rec.predict(clip, sample_rate=16000).confidence
    assert 0 < conf < 1
    for threshold, uncertain in ((conf * 0.99, False), (min(1.0, conf * 1.01 + 1e-6), True)):
        with TestClient(create_app(rec, tmp_dir=upload_dir, uncertain_below=threshold)) as c:
            d = post(c, wav_bytes(clip)).json()
        assert d["uncertain"] is uncertain and d["threshold"] == pytest.approx(threshold)


def test_labels_health_page_and_docs(client):
    assert client.get("/v1/labels").json() == {"labels": ["angry", "neutral", "sad"]}
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["labels"] == 3 and h["pending"] == 0 and h["max_upload_mb"] == 25
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/labels", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 404  # no page that would load from a CDN


def external_urls(text: str) -> list[str]:
    """The http(s) URLs in ``text`` that point off this server (TestClient's host is ``testserver``)."""
    import re

    return [u for u in re.findall(r"https?://[^\s\"'<>)]+", text) if urlsplit(u).hostname not in ("testserver", None)]


def test_docs_are_served_from_this_service_under_a_strict_csp(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert external_urls(page.text) == []  # no CDN: the script, style sheet and icon are this service's
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["/docs/assets/favicon-32x32.png", "/docs/assets/swagger-ui-bundle.js",
                              "/docs/assets/swagger-ui.css"]
    for asset in assets:
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 500 and r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/docs/assets/index.html").status_code == 404  # only the files the page loads
    assert client.get("/docs/assets/..%2F..%2F__init__.py").status_code == 404
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'" and csp["style-src"] == "'self'"
    # the one inline script that starts Swagger UI is allowed by its hash, nothing else inline
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1 and "unsafe-inline" not in csp["script-src"]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert csp["script-src"] == f"'self' 'sha256-{digest}'"
    assert client.get("/").headers["content-security-policy"].startswith("default-src 'self'")  # the page's own CSP
    # the bundled Swagger UI reads OpenAPI 3.0: the page gets the schema as 3.0, /openapi.json stays 3.1
    assert "/docs/openapi-3.0.json" in inline[0]
    spec, spec30 = client.get("/openapi.json").json(), client.get("/docs/openapi-3.0.json").json()
    assert spec["openapi"].startswith("3.1") and spec30["openapi"] == "3.0.3"
    assert spec30["paths"].keys() == spec["paths"].keys() and '"null"' not in json.dumps(spec30)
    segments = next(p for p in spec30["paths"]["/v1/predict"]["post"]["parameters"] if p["name"] == "segments")
    assert segments["schema"]["type"] == "string" and segments["schema"]["nullable"] is True


def test_schema_30_rewrites_what_openapi_30_lacks():
    from emovox.serve.docs import schema_30

    assert schema_30({"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "N"}) == {"type": "integer", "nullable": True, "title": "N"}
    assert schema_30({"anyOf": [{"$ref": "#/c/A"}, {"type": "null"}]}) == {"allOf": [{"$ref": "#/c/A"}], "nullable": True}
    assert schema_30({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}) == {
        "oneOf": [{"type": "string"}, {"type": "integer"}], "nullable": True}
    assert schema_30({"type": ["string", "null"], "const": "x", "examples": ["x", "y"]}) == {
        "type": "string", "nullable": True, "enum": ["x"], "example": "x"}
    nested = {"type": "object", "properties": {"const": {"type": "array", "items": {"type": ["number", "null"]}}}}
    assert schema_30(nested) == {"type": "object", "properties": {"const": {
        "type": "array", "items": {"type": "number", "nullable": True}}}}  # a property may be called "const"


def test_docs_without_swagger_ui_say_what_to_install(rec, upload_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)  # as if not installed: importing it fails
    with TestClient(create_app(rec, tmp_dir=upload_dir)) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "swagger-ui-bundle" in page.text and "pip install 'emovox[serve]'" in page.text
        assert 'href="/openapi.json"' in page.text and "<script" not in page.text and external_urls(page.text) == []
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert c.get("/docs/assets/swagger-ui-bundle.js").status_code == 404
        assert c.get("/openapi.json").status_code == 200
    with TestClient(create_app(rec, tmp_dir=upload_dir, docs=False)) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404


def test_error_codes_and_messages(rec, client, upload_dir):
    r = post(client, b"just some text, not audio", name="notes.txt", ctype="text/plain")
    assert r.status_code == 415 and r.json()["detail"].startswith("notes.txt: not a readable audio file")
    assert str(upload_dir) not in r.json()["detail"]  # the temporary path is never shown
    r = post(client, b"\x89PNG\r\n\x1a\n" + bytes(200), name="photo.png", ctype="image/png")
    assert r.status_code == 415 and "photo.png" in r.json()["detail"]
    r = post(client, b"RIFF\x00\x00\x00\x00WAVEfmt junk", name="cut.wav")
    assert r.status_code == 415 and "cut.wav" in r.json()["detail"]
    r = post(client, b"", name="empty.wav")
    assert r.status_code == 422 and r.json()["detail"] == "empty.wav: file is empty (0 bytes)"
    r = post(client, wav_bytes(np.zeros(SR, np.float32)), name="silent.wav")
    assert r.status_code == 422 and "silent.wav: is silent" in r.json()["detail"]
    r = client.post("/v1/predict", files={"other": (None, "x")})
    assert r.status_code == 422 and "no audio file" in r.json()["detail"]
    r = post(client, wav_bytes(tone_signal("sad", 1.2)), data={"segments": "perhaps"})
    assert r.status_code == 422 and "segments must be true or false" in r.json()["detail"]
    r = client.post("/v1/predict", data={"file": "abc"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/predict").status_code == 405
    with TestClient(create_app(rec, tmp_dir=upload_dir, max_upload_mb=0.05)) as small:
        r = post(small, wav_bytes(tone_signal("sad", 2.0)))  # 64 kB > 0.05 MiB
        assert r.status_code == 413 and "0.05 MiB" in r.json()["detail"]
        r = small.post("/v1/predict", content=bytes(60_000), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 413
        assert post(small, wav_bytes(tone_signal("sad", 1.0))).status_code == 200  # 32 kB is fine
    assert list(upload_dir.iterdir()) == []


def test_upload_exists_only_during_the_request(rec, upload_dir):
    seen: list[list[str]] = []
    original = rec.predict

    def spy(x, *a, **kw):
        seen.append([p.name for p in upload_dir.iterdir()])
        return original(x, *a, **kw)

    rec.predict = spy
    try:
        with TestClient(create_app(rec, tmp_dir=upload_dir)) as c:
            assert post(c, wav_bytes(tone_signal("sad", 1.2))).status_code == 200
            assert post(c, b"garbage" * 10, name="bad.wav").status_code == 415
    finally:
        del rec.predict
    assert len(seen) == 2 and all(len(names) == 1 and names[0].startswith("emovox-upload-") for names in seen)
    assert list(upload_dir.iterdir()) == []


def test_twenty_parallel_requests_are_all_answered_correctly(client):
    emotions = ["angry", "neutral", "sad"] * 7
    clips = {e: wav_bytes(tone_signal(e, 1.2, seed=7)) for e in set(emotions)}

    def one(i: int) -> tuple[str, int, str]:
        r = post(client, clips[emotions[i]], name=f"{i}.wav")
        return emotions[i], r.status_code, r.json().get("label", r.text)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert all(code == 200 for _, code, _ in results), results
    assert [label for _, _, label in results] == [e for e, _, _ in results]


@contextmanager
def slowed(rec, seconds: float):
    """``rec.predict`` takes ``seconds`` longer while inside; yields an event set when a prediction starts."""
    started = threading.Event()
    original = rec.predict

    def slow(x, *a, **kw):
        started.set()
        time.sleep(seconds)
        return original(x, *a, **kw)

    rec.predict = slow
    try:
        yield started
    finally:
        del rec.predict


def test_health_stays_responsive_during_inference(rec, upload_dir):
    with slowed(rec, 1.5) as started:
        with TestClient(create_app(rec, tmp_dir=upload_dir, max_pending=1, queue_timeout_s=0.2)) as c, ThreadPoolExecutor(1) as pool:
            fut = pool.submit(post, c, wav_bytes(tone_signal("sad", 1.2)))
            assert started.wait(10)
            t0 = time.perf_counter()
            h = c.get("/healthz")
            assert h.status_code == 200 and h.json()["pending"] == 1
            assert time.perf_counter() - t0 < 1.0
            busy = post(c, wav_bytes(tone_signal("sad", 1.2)))
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert fut.result(timeout=30).status_code == 200


def test_real_server_rejects_an_oversized_stream_with_413(rec, upload_dir):
    httpx = pytest.importorskip("httpx")
    app = create_app(rec, tmp_dir=upload_dir, max_upload_mb=1)
    with running_server(app) as base:
        def chunks():  # no Content-Length: the limit must be enforced while reading
            for _ in range(48):
                yield bytes(64 * 1024)

        r = httpx.post(f"{base}/v1/predict", content=chunks(), headers={"content-type": "audio/wav"}, timeout=30)
        assert r.status_code == 413 and "1 MiB" in r.json()["detail"]
        r = httpx.post(f"{base}/v1/predict", files={"file": ("big.wav", bytes(3 * 1024 * 1024), "audio/wav")}, timeout=30)
        assert r.status_code == 413
        ok = httpx.post(f"{base}/v1/predict", files={"file": ("a.wav", wav_bytes(tone_signal("angry", 1.2)), "audio/wav")}, timeout=30)
        assert ok.status_code == 200 and ok.json()["label"] == "angry"
        assert httpx.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
    assert list(upload_dir.iterdir()) == []


def test_a_full_service_queues_briefly_instead_of_refusing(rec, upload_dir):
    with slowed(rec, 1.0) as started:
        with TestClient(create_app(rec, tmp_dir=upload_dir, max_pending=1, queue_timeout_s=10)) as c, ThreadPoolExecutor(1) as pool:
            fut = pool.submit(post, c, wav_bytes(tone_signal("sad", 1.2)))
            assert started.wait(10)
            second = post(c, wav_bytes(tone_signal("angry", 1.2)))  # waits for the slot, then runs
            assert second.status_code == 200 and second.json()["label"] == "angry"
            assert fut.result(timeout=30).status_code == 200


def test_cross_origin_posts_and_foreign_hosts_are_refused(rec, upload_dir):
    audio = wav_bytes(tone_signal("sad", 1.2))
    with TestClient(create_app(rec, tmp_dir=upload_dir, allowed_origins=["https://app.example.org"])) as c:
        r = post(c, audio, headers={"origin": "https://evil.example"})
        assert r.status_code == 403 and "cross-origin request from https://evil.example" in r.json()["detail"]
        assert post(c, audio, headers={"origin": "https://app.example.org"}).status_code == 200
        assert post(c, audio, headers={"origin": "http://testserver"}).status_code == 200  # the service's own page
        assert post(c, audio).status_code == 200  # not a browser: no Origin header
    with TestClient(create_app(rec, tmp_dir=upload_dir, allowed_hosts=["127.0.0.1", "localhost"])) as c:
        r = c.get("/healthz")  # TestClient sends Host: testserver, as a DNS-rebinding page would send its own name
        assert r.status_code == 403 and "unexpected Host header" in r.json()["detail"]
        assert c.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200


def test_a_stalled_upload_is_cut_off(rec, upload_dir):
    import socket

    app = create_app(rec, tmp_dir=upload_dir, upload_timeout_s=1.0)
    with running_server(app) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: audio/wav\r\n"
                         b"Content-Length: 100000\r\n\r\n" + bytes(10))  # then nothing more
            t0 = time.perf_counter()
            answer = b""
            while b"}" not in answer:  # headers and JSON body may come in separate packets
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode("latin-1")
            assert time.perf_counter() - t0 < 5
        assert answer.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in answer
    assert list(upload_dir.iterdir()) == []


def test_an_empty_filename_is_still_a_file(client):
    r = client.post("/v1/predict", files={"file": ("", wav_bytes(tone_signal("sad", 1.2)), "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "sad" and r.json()["filename"] == "upload"
