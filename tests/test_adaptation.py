"""Adapting to the speaker of a recording: the timeline's speaker normalisation, and several files of one speaker over HTTP."""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox.errors import EmovoxError
from emovox.inference.recognizer import EmotionRecognizer
from emovox.inference import segment_signal

from conftest import TONES, tone
from helpers_models import quiet, tone_model

pytest.importorskip("transformers")
from test_speech import tiny_encoder  # noqa: E402

SR = 16000
#: Every synthetic voice scales all pitches by its own factor; "s9" is far from the training voices.
VOICES = {"s1": 0.85, "s2": 1.0, "s3": 1.18, "s4": 0.92, "s9": 1.3}


def voice_clip(emotion: str, speaker: str, i: int, seconds: float = 1.2) -> np.ndarray:
    f0, vib = TONES[emotion]
    return tone(f0 * VOICES[speaker], vib, seconds=seconds, seed=zlib.crc32(f"{speaker}-{emotion}-{i}".encode()))


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory) -> Path:
    """Speech-encoder model (tiny random Whisper) with a speaker-normalised head, trained on voices s1-s4."""
    from emovox.corpora import load_folder
    from emovox.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("voices")
    for spk in ("s1", "s2", "s3", "s4"):
        for emo in TONES:
            for i in range(6):
                p = root / emo / spk / f"{emo}_{i}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(p, voice_clip(emo, spk, i), SR)
    cfg = TrainConfig(backbone=f"hf:{tiny_encoder('whisper', tmp_path_factory.mktemp('enc'))}", solver="logreg", logreg_c=1.0,
                      normalize="speaker", split="speaker", val_speakers=("s4",),
                      familiarity=False)  # the "unheard voice" is a pitch-shifted tone: a gate would refuse it
    out = tmp_path_factory.mktemp("run")
    train(load_folder(root), out, cfg, workers=1, cache_dir=out / "cache", progress=False, log=lambda m: None)
    return out / "model"


@pytest.fixture(scope="module")
def srec(speaker_model) -> EmotionRecognizer:
    return EmotionRecognizer.load(speaker_model, engine="torch")


def long_recording(speaker: str, n: int) -> tuple[np.ndarray, list[str]]:
    """``n`` clips of one voice, emotions in turn, 1 s of background between them."""
    emotions = [list(TONES)[k % len(TONES)] for k in range(n)]
    parts = []
    for k, emo in enumerate(emotions):
        parts += [quiet(1.0, seed=k), voice_clip(emo, speaker, 100 + k, seconds=1.5)]
    return np.concatenate(parts + [quiet(1.0, seed=99)]), emotions


def test_timeline_adapts_to_an_unheard_voice(srec):
    y, truth = long_recording("s9", 12)
    off = segment_signal(srec, y, SR, vad="energy", adapt="off")
    on = segment_signal(srec, y, SR, vad="energy", adapt="auto")
    assert len(on) == len(off) == 12  # one segment per clip
    assert off.adaptation == "none" and off.adaptation_note == "turned off"
    assert on.adaptation == "speaker" and "12 segments" in on.adaptation_note
    acc_off = np.mean([s.label == t for s, t in zip(off, truth)])
    acc_on = np.mean([s.label == t for s, t in zip(on, truth)])
    assert acc_on >= 0.7 and acc_on >= acc_off + 0.25  # the voice's own statistics fix much of what its pitch shift broke
    d = on.to_dict()
    assert d["adaptation"] == "speaker" and d["adaptation_note"] == on.adaptation_note


def test_adaptation_needs_enough_segments(srec, tmp_path):
    y, _ = long_recording("s9", 3)
    short = segment_signal(srec, y, SR, vad="energy")
    assert short.adaptation == "none" and "fewer than the 10 needed" in short.adaptation_note
    forced = segment_signal(srec, y, SR, vad="energy", adapt="on")
    assert forced.adaptation == "speaker"
    assert segment_signal(srec, y, SR, vad="energy", adapt_min_segments=3).adaptation == "speaker"
    with pytest.raises(EmovoxError, match="adapt must be one of"):
        segment_signal(srec, y, SR, vad="energy", adapt="sometimes")
    plain = EmotionRecognizer.load(tone_model(tmp_path))
    assert segment_signal(plain, y, SR, vad="energy").adaptation_note == "the model has no speaker-normalised head"
    with pytest.raises(EmovoxError, match="speaker-normalised head"):
        segment_signal(plain, y, SR, vad="energy", adapt="on")


def test_cli_timeline_says_whether_it_adapted(speaker_model, tmp_path, capsys):
    from emovox.cli import main

    y, _ = long_recording("s9", 10)
    path = tmp_path / "diary.wav"
    sf.write(path, y, SR)
    assert main(["timeline", "--model", str(speaker_model), "--vad", "energy", str(path), "--plot", str(tmp_path / "t.png")]) == 0
    assert "speaker adaptation: yes (normalised with this recording's own statistics over 10 segments" in capsys.readouterr().out
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["timeline", "--model", str(speaker_model), "--vad", "energy", "--adapt", "off", str(path)]) == 0
    assert "speaker adaptation: no (turned off)" in capsys.readouterr().out


def wav(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV")
    return buf.getvalue()


def test_http_several_files_and_same_speaker(srec, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from emovox.serve import create_app

    emotions = [e for e in TONES for _ in range(3)]
    parts = [("file", (f"{e}_{k}.wav", wav(voice_clip(e, "s9", 200 + k)), "audio/wav")) for k, e in enumerate(emotions)]
    with TestClient(create_app(srec, tmp_dir=tmp_path, segment_options={"vad": "energy"})) as c:
        r = c.post("/v1/predict", files=parts)
        assert r.status_code == 200, r.text
        plain = r.json()
        assert plain["same_speaker"] is False and [f["filename"] for f in plain["files"]] == [p[1][0] for p in parts]
        r = c.post("/v1/predict", files=parts, data={"same_speaker": "true"})
        assert r.status_code == 200, r.text
        same = r.json()
        assert same["same_speaker"] is True
        expected = srec.predict([_write(tmp_path, p[1][0], p[1][1]) for p in parts], same_speaker=True)
        for got, want in zip(same["files"], expected):
            assert got["label"] == want.label and got["confidence"] == pytest.approx(want.confidence, abs=1e-5)
        acc_same = np.mean([f["label"] == e for f, e in zip(same["files"], emotions)])
        acc_plain = np.mean([f["label"] == e for f, e in zip(plain["files"], emotions)])
        assert acc_same > acc_plain  # the speaker head, fed the voice's own statistics, does better
        r = c.post("/v1/predict", files=parts[:1], data={"same_speaker": "true"})
        assert r.status_code == 422 and "several files" in r.json()["detail"]
        r = c.post("/v1/predict", files=[("audio", parts[0][1])])
        assert r.status_code == 422 and "named 'file'" in r.json()["detail"]
        r = c.post("/v1/predict", files=parts[:1], data={"segments": "true", "adapt": "never"})
        assert r.status_code == 422 and "adapt must be" in r.json()["detail"]
        bad = parts[:2] + [("file", ("broken.wav", b"RIFF0000WAVEjunk", "audio/wav"))]
        r = c.post("/v1/predict", files=bad)
        assert r.status_code == 415 and r.json()["detail"].startswith("broken.wav:")
    assert list(tmp_path.glob("emovox-upload-*")) == []


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / f"ref-{name}"
    path.write_bytes(data)
    return path
