"""Live streams: the file timeline's windows and labels, block by block, with adaptation that grows as it listens."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.audio import load_audio
from emovox.audio.vad import silero_available, speech_regions
from emovox.errors import AudioError, EmovoxError
from emovox.inference import EmotionStream, pcm_samples

from helpers_models import quiet, tone_model, tone_signal

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.flac"))
needs_silero = pytest.mark.skipif(not silero_available(), reason="silero-vad is not installed")


@pytest.fixture(scope="module")
def bundled() -> EmotionRecognizer:
    return EmotionRecognizer.load()


def conversation(rate: int = 16000) -> np.ndarray:
    """The three example clips with pauses, then their speech glued into one region longer than a window."""
    clips = [load_audio(p, rate) for p in EXAMPLES]
    speech = [c[int(s * rate) : int(e * rate)] for c in clips for s, e in speech_regions(c, rate, vad="silero")]
    gap = quiet(1.2, sr=rate, level=0.0005)
    return np.concatenate([gap, clips[0], gap, clips[1], gap, *speech, gap, clips[2], gap])


def fed(stream: EmotionStream, y: np.ndarray, seed: int = 0, most: int = 9000) -> list:
    rng = np.random.default_rng(seed)
    events, i = [], 0
    while i < y.size:
        n = int(rng.integers(1, most))
        events += [(i + n, ev) for ev in stream.feed(y[i : i + n])]
        i += n
    return events + [(y.size, ev) for ev in stream.close()]


@needs_silero
@pytest.mark.parametrize("rate", [16000, 48000])
def test_streamed_windows_and_labels_equal_the_file_timeline(bundled, tmp_path, rate):
    y = conversation(rate)
    path = tmp_path / "talk.flac"
    sf.write(path, y, rate)
    tl = bundled.timeline(path, adapt="off")
    assert any(e - s > 4.0 for s, e in tl.speech)  # a region long enough to be cut into several windows
    events = fed(bundled.stream(sample_rate=rate, adapt="off"), y, seed=rate)
    segs = [ev.segment for _, ev in events if ev.kind == "segment"]
    assert len(segs) == len(tl.segments) >= 5
    assert [(s.start, s.end) for s in segs] == [(s.start, s.end) for s in tl.segments]
    assert [s.label for s in segs] == [s.label for s in tl.segments]
    tol = 1e-3 if rate == 16000 else 2e-2  # the file is 16-bit; resampled in other blocks, the samples differ slightly
    for a, b in zip(segs, tl.segments):
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) < tol
    assert all(s.head == "file" for s in segs)
    kinds = [ev.kind for _, ev in events]
    assert kinds.count("speech_start") == kinds.count("speech_end") == len(tl.speech)


@needs_silero
def test_a_long_region_is_classified_while_it_is_still_spoken(bundled):
    rate = 16000
    y = conversation(rate)
    stream = bundled.stream(sample_rate=rate, adapt="off")
    events = fed(stream, y, most=1600)  # 0.1 s blocks at most
    long = [r for r in stream.regions if r[1] - r[0] > 4.0]
    assert long
    start, end = long[0]
    early = [(sent, ev) for sent, ev in events if ev.kind == "segment" and start <= ev.segment.start and ev.segment.end < end]
    assert early  # windows inside the region came out before the region ended
    for sent, ev in early:
        assert sent / rate < end  # ... while its audio was still arriving
        assert sent / rate - ev.segment.end < 0.2  # as soon as the window's audio was in (one block late at most)
    for sent, ev in events:
        if ev.kind == "speech_end":  # a region ends once enough silence follows it: a fixed hold, not the file's end
            assert sent / rate - ev.time <= stream.tracker.hold_s + 0.2


@needs_silero
def test_adaptation_grows_as_it_listens(bundled):
    y = conversation()
    stream = bundled.stream(sample_rate=16000, adapt="auto", adapt_min_segments=3)
    segs = [ev.segment for _, ev in fed(stream, y) if ev.kind == "segment"]
    assert [s.head for s in segs[:2]] == ["file", "file"] and all(s.head == "speaker" for s in segs[2:])
    assert stream.book.count("session") == len(segs)
    tl = stream.timeline()
    assert tl.adaptation == "speaker" and len(tl.segments) == len(segs) and tl.speech == stream.regions
    again = bundled.stream(sample_rate=16000, adapt="auto", adapt_min_segments=3)  # a new session starts afresh
    assert again.book.count("session") == 0


@needs_silero
def test_a_session_catches_up_with_revisions_to_the_file_timeline(bundled, tmp_path):
    """Events go out at once; once the speaker head answers, earlier segments are classified again and those whose
    label changed are sent as ``revised``: the session's timeline ends as the file timeline (adapted whole) is."""
    y = conversation()
    path = tmp_path / "talk.flac"
    sf.write(path, y, 16000)
    whole = bundled.timeline(path, adapt="on")
    stream = bundled.stream(sample_rate=16000, adapt="on")
    events = [ev for _, ev in fed(stream, y)]
    first = [ev.segment for ev in events if ev.kind == "segment"]
    revised = [ev for ev in events if ev.kind == "revised"]
    final = stream.timeline().segments
    assert [(s.start, s.end) for s in final] == [(s.start, s.end) for s in whole.segments] == [(s.start, s.end) for s in first]
    assert first[0].head == "file" and all(s.head == "speaker" for s in final)
    assert [s.label for s in final] == [s.label for s in whole.segments]
    for a, b in zip(final, whole.segments):
        assert max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities) < 1e-3
    by_window = {(s.start, s.end): s.label for s in first}
    for ev in revised:  # a revision is sent only for a label that changed, and says what it is now
        assert ev.segment.label != by_window[(ev.segment.start, ev.segment.end)]
        by_window[(ev.segment.start, ev.segment.end)] = ev.segment.label
        assert ev.to_dict()["type"] == "revised" and ev.segment.head == "speaker"
    assert by_window == {(s.start, s.end): s.label for s in final}  # the events, revisions applied, are the timeline
    quiet_stream = bundled.stream(sample_rate=16000, adapt="on", revise=False)
    assert not [ev for _, ev in fed(quiet_stream, y) if ev.kind == "revised"]


def test_energy_stream_finds_tones_and_keeps_memory_bounded(tmp_path):
    rec = EmotionRecognizer.load(tone_model(tmp_path))
    piece = np.concatenate([quiet(1.0), tone_signal("angry", 2.0), quiet(1.0), tone_signal("sad", 2.0)])
    stream = rec.stream(sample_rate=16000, vad="energy", adapt="off")
    labels, most = [], 0
    for _ in range(30):  # 3 minutes
        for i in range(0, piece.size, 4000):
            labels += [ev.segment.label for ev in stream.feed(piece[i : i + 4000]) if ev.kind == "segment"]
            most = max(most, stream._audio.size)
    labels += [ev.segment.label for ev in stream.close() if ev.kind == "segment"]
    assert len(labels) == 60 and labels[:2] == ["angry", "sad"]
    assert np.mean([a == b for a, b in zip(labels, ["angry", "sad"] * 30)]) > 0.9
    assert most < 16000 * 8  # a few seconds of audio held, not the whole stream
    assert len(stream.tracker._mask) < 200


def test_pcm_bytes_and_bad_blocks(tmp_path):
    s16 = (np.array([0, 16384, -32768], "<i2")).tobytes()
    assert np.allclose(pcm_samples(s16), [0, 0.5, -1.0])
    stereo = np.array([[0.5, -0.5], [0.25, 0.25]], "<f4").tobytes()
    assert np.allclose(pcm_samples(stereo, "f32le", channels=2), [0.0, 0.25])
    with pytest.raises(AudioError, match="whole number of s16le frames"):
        pcm_samples(b"\x00\x01\x02")
    with pytest.raises(EmovoxError, match="PCM format"):
        pcm_samples(b"", "mp3")
    rec = EmotionRecognizer.load(tone_model(tmp_path))
    stream = rec.stream(sample_rate=22050, vad="energy")
    assert stream.feed(b"\x00\x00" * 100) == [] and stream.seconds == pytest.approx(100 / 22050, abs=1e-3)
    with pytest.raises(AudioError, match="within"):
        stream.feed(np.full(100, 40.0, np.float32))
    with pytest.raises(AudioError, match="shape"):
        stream.feed(np.zeros((10, 3), np.float32))
    stream.close()
    with pytest.raises(EmovoxError, match="closed"):
        stream.feed(np.zeros(10, np.float32))
    with pytest.raises(AudioError, match="sample rate"):
        rec.stream(sample_rate=10)
    with pytest.raises(EmovoxError, match="one voice"):
        rec.stream(sample_rate=16000, speakers="auto")


@needs_silero
def test_cli_listen_prints_segments_while_the_pipe_is_still_open(bundled, tmp_path):
    import json
    import subprocess
    import sys
    import threading

    y = conversation(16000)
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
    proc = subprocess.Popen([sys.executable, "-m", "emovox.cli", "listen", "--rate", "16000", "--format", "json",
                             "--adapt", "off", "--json", str(tmp_path / "session.json")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    data = pcm.tobytes()
    half = 2 * (pcm.size // 2) + 1  # an odd byte count: a read may end inside a sample
    proc.stdin.write(data[:half])
    proc.stdin.flush()
    import time

    deadline = time.monotonic() + 120
    while not lines and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert lines, proc.stderr.read().decode()  # a segment came out before the input ended
    proc.stdin.write(data[half:])
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    reader.join(timeout=10)
    rows = [json.loads(line) for line in lines]
    expected = bundled.timeline(y, sample_rate=16000, adapt="off").segments
    assert [(r["start"], r["end"], r["label"]) for r in rows] == [(round(s.start, 3), round(s.end, 3), s.label) for s in expected]
    assert all(r["type"] == "segment" and r["head"] == "file" and abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    saved = json.loads((tmp_path / "session.json").read_text())
    assert len(saved["segments"]) == len(rows)
