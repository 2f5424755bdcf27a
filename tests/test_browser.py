"""The web page in a real browser (Debian's chromium driven by playwright) against a real server."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package (pip install playwright)")
pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'emovox[serve]'")

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from emovox.inference.recognizer import EmotionRecognizer  # noqa: E402
from emovox.serve import create_app  # noqa: E402

from helpers_models import quiet, tone_model, tone_signal  # noqa: E402
from helpers_server import running_server  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    rec = EmotionRecognizer.load(tone_model(root))
    uploads = root / "uploads"
    uploads.mkdir()
    with running_server(create_app(rec, tmp_dir=uploads, segment_options={"vad": "energy"})) as url:
        yield url
    assert list(uploads.iterdir()) == []


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    yield b
    b.close()


@pytest.fixture()
def page(browser, base_url):
    context = browser.new_context()
    context.grant_permissions(["microphone"], origin=base_url)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    problems: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    # an HTTP error answer is logged by the browser too; those are checked through the page instead
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.goto(base_url + "/")
    yield pg
    context.close()
    outside = [u for u in requests if not (u.startswith(base_url) or u.startswith(("data:", "blob:")))]
    assert outside == [], f"the page fetched from elsewhere: {outside}"
    assert problems == [], f"errors in the page: {problems}"


def test_api_docs_render_offline(browser, base_url):
    """/docs with every request that leaves this machine refused: Swagger UI still shows the operations, and one
    can be tried out, under the page's CSP (a violation would be a console error)."""
    context = browser.new_context()
    outside: list[str] = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    try:
        pg.goto(base_url + "/docs")
        predict = pg.locator("#operations-default-predict_v1_predict_post")
        expect(predict).to_be_visible()
        expect(predict.locator(".opblock-summary-path")).to_have_text("/v1/predict")
        expect(pg.locator(".opblock")).to_have_count(3)  # predict, labels, health
        predict.locator(".opblock-summary").click()  # its request body and answers render too
        expect(predict.locator(".opblock-body")).to_contain_text("multipart/form-data")
        expect(predict.locator(".responses-table")).to_contain_text("413")
        health = pg.locator("#operations-default-healthz_healthz_get")
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        expect(health.locator(".live-responses-table tr.response .response-col_status")).to_have_text("200")
        expect(health.locator(".live-responses-table")).to_contain_text('"status": "ok"')
    finally:
        context.close()
    assert outside == [], f"the docs page tried to fetch from elsewhere: {outside}"
    assert problems == [], f"errors in the docs page: {problems}"


def write(path: Path, y: np.ndarray) -> Path:
    sf.write(path, y, 16000)
    return path


def test_upload_shows_the_emotion_and_the_bar_chart(page: Page, tmp_path):
    clip = write(tmp_path / "sad_clip.wav", tone_signal("sad", 1.5))
    page.set_input_files("#file", str(clip))
    page.get_by_role("button", name="Analyse file").click()
    expect(page.locator("#result-label")).to_have_text("sad")
    expect(page.locator("#result-file")).to_have_text("sad_clip.wav")
    bars = page.get_by_role("meter")
    expect(bars).to_have_count(3)
    top = page.get_by_role("meter", name="sad")
    assert int(top.get_attribute("aria-valuenow")) > 50
    expect(page.locator("#status")).to_contain_text("sad_clip.wav sounds sad")
    assert page.locator("#timeline").is_hidden()
    assert page.locator("#error").is_hidden()


def test_long_file_shows_the_timeline(page: Page, tmp_path):
    y = np.concatenate([tone_signal("angry", 3.0), quiet(2.0), tone_signal("sad", 3.0)])
    clip = write(tmp_path / "talk.wav", y)
    page.get_by_label("Show the emotion over time").check()
    page.set_input_files("#file", str(clip))
    page.get_by_role("button", name="Analyse file").click()
    rows = page.locator("#timeline-table tbody tr")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).locator("td.label").inner_text().lower() for i in range(2)] == ["angry", "sad"]
    expect(page.locator("#timeline-summary")).to_contain_text("2 region(s)")
    assert page.locator("#timeline-chart .lane").count() == 5  # top-emotion band, speech, one heatmap row per label
    band = page.locator("#timeline-chart .lane.band .block")
    expect(band).to_have_count(2)  # one block per segment, coloured by its top emotion
    assert "angry" in band.nth(0).get_attribute("title") and "sad" in band.nth(1).get_attribute("title")


def test_bad_file_shows_a_clear_error(page: Page, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not audio")
    page.set_input_files("#file", str(bad))
    page.get_by_role("button", name="Analyse file").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("notes.txt: not a readable audio file")
    assert page.locator("#result").is_hidden()


def test_microphone_recording_is_analysed(page: Page):
    record = page.get_by_role("button", name="Record")
    expect(record).to_be_enabled()
    record.click()
    stop = page.get_by_role("button", name="Stop recording")
    expect(stop).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(1500)
    stop.click()
    expect(page.locator("#result-file")).to_have_text("recording.wav")
    expect(page.get_by_role("meter")).to_have_count(3)
    expect(page.get_by_role("button", name="Record")).to_have_attribute("aria-pressed", "false")


def test_listen_shows_emotions_while_the_microphone_is_still_speaking(playwright, base_url, tmp_path):
    """The fake microphone plays a WAV (angry and sad tones with pauses) at real time; labels must appear on the
    page before it has finished, the chart must grow, and stopping offers the session for download."""
    parts = []
    for emotion in ("angry", "sad", "angry", "sad", "angry", "sad"):
        parts += [quiet(1.0), tone_signal(emotion, 2.0)]
    y = np.concatenate(parts + [quiet(1.0)])
    wav = tmp_path / "mic.wav"
    sf.write(wav, y, 16000, subtype="PCM_16")
    seconds = y.size / 16000
    import time

    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                   args=ARGS + [f"--use-file-for-fake-audio-capture={wav}%noloop"])
    try:
        context = b.new_context(accept_downloads=True)
        context.grant_permissions(["microphone"], origin=base_url)
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.goto(base_url + "/")
        pg.get_by_role("button", name="Listen").click()
        t0 = time.monotonic()
        label = pg.locator("#live-label")
        expect(label).to_have_text(re.compile(r"^(angry|sad|neutral)$"), timeout=int(seconds * 1000))
        first = time.monotonic() - t0
        assert first < seconds - 2.0  # an emotion was on the page while the microphone still had audio to play
        expect(pg.locator("#live-status")).to_contain_text("Listening at")
        expect(pg.locator("#timeline .lane.band .block").nth(2)).to_be_attached(timeout=int(seconds * 1000))
        assert time.monotonic() - t0 < seconds + 5  # the band grew as the audio played
        seen = pg.locator("#timeline-table tbody tr td.label").all_text_contents()
        assert seen[:3] == ["angry", "sad", "angry"]
        pg.get_by_role("button", name="Stop listening").click()
        expect(pg.locator("#live-downloads")).to_be_visible()
        expect(pg.get_by_role("button", name="Listen")).to_be_enabled()
        with pg.expect_download() as dl:
            pg.locator("#live-csv").click()
        rows = Path(dl.value.path()).read_text().splitlines()
        assert rows[0].startswith("start,end,label,confidence,uncertain,prob_") and len(rows) - 1 == len(
            pg.locator("#timeline-table tbody tr").all())
        assert problems == []
    finally:
        b.close()
