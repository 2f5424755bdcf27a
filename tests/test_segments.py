"""Long recordings: voice activity, windows, timelines and their outputs."""
from __future__ import annotations

import csv
import io
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from emovox.audio import vad as segments
from emovox.errors import AudioError, EmovoxError
from emovox.inference.recognizer import EmotionRecognizer
from emovox.audio.vad import resolve_vad, speech_regions
from emovox.inference import Timeline, plot_timeline, segment_file, segment_signal, windows

from conftest import SHARED_DATA
from helpers_models import quiet, tone_model, tone_signal

SR = 16000


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.load(tone_model(tmp_path_factory.mktemp("segments-model")))


def angry_quiet_sad() -> np.ndarray:
    """3 s angry tone, 2 s of background noise, 3 s sad tone."""
    return np.concatenate([tone_signal("angry", 3.0), quiet(2.0), tone_signal("sad", 3.0)])


def near(a: float, b: float, tol: float = 0.25) -> bool:
    return abs(a - b) <= tol


def test_windows_cap_length_and_overlap():
    assert windows([(1.0, 3.5)], 4.0, 2.0) == [(1.0, 3.5)]
    w = windows([(0.0, 10.0)], 4.0, 2.0)
    assert w[0][0] == 0.0 and w[-1][1] == 10.0
    assert all(e - s == pytest.approx(4.0) for s, e in w)
    steps = np.diff([s for s, _ in w])
    assert np.all(steps > 0) and np.all(steps <= 2.0 + 1e-6)  # consecutive windows overlap
    uneven = windows([(0.0, 10.1)], 4.0, 2.0)
    assert uneven[-1][1] == pytest.approx(10.1) and np.all(np.diff([s for s, _ in uneven]) <= 2.0 + 1e-6)
    with pytest.raises(EmovoxError, match="hop_s"):
        windows([(0, 10)], 4.0, 5.0)
    with pytest.raises(EmovoxError, match="max_segment_s"):
        windows([(0, 10)], 0.0, 1.0)


def test_energy_vad_finds_the_two_tones():
    regions = speech_regions(angry_quiet_sad(), SR, vad="energy")
    assert len(regions) == 2
    (s1, e1), (s2, e2) = regions
    assert near(s1, 0.0) and near(e1, 3.0) and near(s2, 5.0) and near(e2, 8.0)


def test_tone_silence_tone_gets_two_different_labels(rec):
    tl = segment_signal(rec, angry_quiet_sad(), SR, vad="energy")
    assert isinstance(tl, Timeline) and tl.vad == "energy" and tl.message is None
    assert tl.duration == pytest.approx(8.0, abs=0.01)
    assert len(tl.speech) == 2
    assert [s.label for s in tl] == ["angry", "sad"]
    assert all(s.confidence > 0.5 and sum(s.probabilities.values()) == pytest.approx(1.0, abs=1e-5) for s in tl)
    assert tl.segments[0].end <= tl.segments[1].start  # the silence separates them
    assert set(tl.overall()) == {"angry", "neutral", "sad"} and tl.label in ("angry", "sad")


def test_long_speech_is_cut_into_overlapping_windows(rec):
    y = np.concatenate([quiet(0.5), tone_signal("neutral", 9.0), quiet(0.5)])
    tl = segment_signal(rec, y, SR, vad="energy", max_segment_s=3.0, hop_s=1.5)
    assert len(tl.speech) == 1 and len(tl) >= 5
    assert all(s.end - s.start <= 3.0 + 1e-6 for s in tl)
    assert all(b.start < a.end for a, b in zip(tl.segments, tl.segments[1:]))
    assert tl.segments[-1].end == pytest.approx(tl.speech[0][1])
    assert all(s.label == "neutral" for s in tl)


def test_file_streamed_in_blocks_matches_in_memory(rec, tmp_path):
    y = angry_quiet_sad()
    mem = segment_signal(rec, y, SR, vad="energy")
    import librosa

    path = tmp_path / "long.flac"
    sf.write(path, librosa.resample(y, orig_sr=SR, target_sr=22050), 22050)  # resampled while streaming
    for block_s in (0.7, 30.0):
        tl = segment_file(rec, path, vad="energy", block_s=block_s)
        assert tl.source == str(path)
        assert [s.label for s in tl] == [s.label for s in mem]
        for (a, b), (c, d) in zip(tl.speech, mem.speech):
            assert near(a, c, 0.07) and near(b, d, 0.07)


def test_file_shorter_than_one_window(rec, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone_signal("sad", 1.0), SR)
    tl = segment_file(rec, path, vad="energy", max_segment_s=4.0)
    assert len(tl) == 1
    seg = tl.segments[0]
    assert seg.label == "sad" and seg.start == pytest.approx(0.0, abs=0.05) and seg.end == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("content", ["zeros", "noise", "blip"])
def test_no_speech_gives_an_empty_timeline_with_a_message(rec, tmp_path, content):
    y = {"zeros": np.zeros(3 * SR, np.float32), "noise": quiet(3.0, level=0.02),
         "blip": np.concatenate([quiet(1.0), tone_signal("sad", 0.1), quiet(1.0)])}[content]
    path = tmp_path / f"{content}.wav"
    sf.write(path, y, SR)
    tl = segment_file(rec, path, vad="energy")
    assert len(tl) == 0 and tl.speech == [] and tl.overall() is None and tl.label is None
    assert "no speech" in tl.message and str(path) in tl.message
    assert tl.to_csv().strip() == "start,end,label,confidence,uncertain,prob_angry,prob_neutral,prob_sad"
    assert json.loads(tl.to_json())["segments"] == []
    png = plot_timeline(tl, tmp_path / "empty.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outputs_rows_csv_json_and_plot(rec, tmp_path):
    tl = segment_signal(rec, angry_quiet_sad(), SR, vad="energy", source="talk")
    rows = tl.rows()
    assert [r["label"] for r in rows] == ["angry", "sad"] and set(rows[0]) == {"start", "end", "label", "confidence", "uncertain", "probabilities"}
    text = tl.to_csv(tmp_path / "t.csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert (tmp_path / "t.csv").read_text() == text
    assert [r["label"] for r in table] == ["angry", "sad"] and float(table[1]["prob_sad"]) > 0.5 and table[1]["uncertain"] == "false"
    d = json.loads(tl.to_json(tmp_path / "t.json"))
    assert d["source"] == "talk" and d["vad"] == "energy" and len(d["speech"]) == 2 and len(d["segments"]) == 2
    assert d["overall"]["label"] in ("angry", "sad") and json.loads((tmp_path / "t.json").read_text()) == d
    png = plot_timeline(tl, tmp_path / "t.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_long_file_is_read_in_bounded_memory(rec, tmp_path):
    """A 10-minute file (38 MB as float32) is segmented with a small fraction of that in memory."""
    path = tmp_path / "ten_minutes.wav"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(19):
            f.write(quiet(30.0, level=0.002))
        f.write(np.concatenate([quiet(27.0, level=0.002), tone_signal("angry", 2.0), quiet(1.0, level=0.002)]))
    decoded_bytes = 600 * SR * 4
    tracemalloc.start()
    try:
        tl = segment_file(rec, path, vad="energy", block_s=10.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tl.duration == pytest.approx(600.0, abs=0.01)
    assert len(tl.speech) == 1 and near(tl.speech[0][0], 597.0) and [s.label for s in tl] == ["angry"]
    assert peak < decoded_bytes / 3, f"peak {peak / 1e6:.1f} MB"


def test_vad_choice_and_energy_fallback(monkeypatch):
    with pytest.raises(EmovoxError, match="vad must be one of"):
        resolve_vad("webrtc")
    monkeypatch.setattr(segments, "silero_available", lambda: False)
    assert resolve_vad("auto") == "energy"
    with pytest.raises(EmovoxError, match="pip install silero-vad"):
        resolve_vad("silero")
    regions = speech_regions(angry_quiet_sad(), SR, vad="auto")  # falls back to the energy detector
    assert len(regions) == 2


def test_bad_inputs_name_the_file(rec, tmp_path):
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        segment_file(rec, tmp_path / "missing.wav")
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        segment_file(rec, bad)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        segment_file(rec, tmp_path / "empty.wav")
    with pytest.raises(EmovoxError, match="sample rate"):
        speech_regions(np.zeros(10, np.float32))


def _real_speech_file():
    files = sorted((SHARED_DATA / "tess").glob("*/*.flac"))[:1]
    if not files:
        pytest.skip(f"no real speech recording under {SHARED_DATA / 'tess'}")
    return files[0]


def test_silero_finds_real_speech_between_silences():
    if not segments.silero_available():
        pytest.skip("silero-vad is not installed (pip install silero-vad)")
    speech, sr = sf.read(_real_speech_file(), dtype="float32")
    assert sr == SR
    y = np.concatenate([quiet(1.5), speech, quiet(1.5)])
    assert resolve_vad("auto") == "silero"
    regions = speech_regions(y, SR, vad="silero")
    assert regions, "silero found no speech in a real recording"
    end = 1.5 + speech.size / SR
    assert all(s >= 1.2 and e <= end + 0.4 for s, e in regions)
    assert sum(e - s for s, e in regions) >= 0.3
    assert speech_regions(quiet(3.0), SR, vad="silero") == []


def test_cli_timeline_and_predict_segments(rec, tmp_path, capsys):
    from emovox.cli import main

    model = tone_model(tmp_path)  # the session's trained tone model (same as ``rec``)
    wav = tmp_path / "talk.wav"
    sf.write(wav, angry_quiet_sad(), SR)
    assert main(["timeline", str(wav), "--model", str(model), "--vad", "energy", "--csv", str(tmp_path / "t.csv"), "--plot", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "angry" in out and "sad" in out and "2 segment(s)" in out
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(csv.DictReader(open(tmp_path / "t.csv")))) == 2
    assert main(["predict", "--model", str(model), "--segments", "--vad", "energy", str(wav)]) == 0
    out = capsys.readouterr().out
    assert f"== {wav}" in out and "angry" in out and "sad" in out


def test_recognizer_segments_is_the_timeline(rec):
    tl = rec.segments(angry_quiet_sad(), sample_rate=SR, vad="energy")
    assert [s.label for s in tl] == ["angry", "sad"]
