"""Hostile input: absurd headers and sample values, audio that is not speech, damaged model folders."""
from __future__ import annotations

import json
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox.audio import MAX_DECODE_SECONDS, decode, load_audio
from emovox.errors import AudioError, ModelError, NoSpeechError
from emovox.inference.recognizer import EmotionRecognizer

from helpers_models import random_model, tone_model, tone_signal

SR = 16000


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.load(tone_model(tmp_path_factory.mktemp("hardening-model")))


def wav_with_rate(path: Path, rate: int, samples: np.ndarray) -> Path:
    """A 16-bit PCM WAV whose header claims ``rate`` Hz (written by hand: libraries refuse odd rates)."""
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)
    return path


def test_absurd_sample_rates_are_refused_before_resampling(tmp_path):
    y = tone_signal("sad", 0.5)
    tracemalloc.start()
    with pytest.raises(AudioError, match="sample rate 1 Hz is outside"):
        load_audio(wav_with_rate(tmp_path / "one_hz.wav", 1, y), SR)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50e6  # refused from the header, nothing resampled
    with pytest.raises(AudioError, match="outside"):
        load_audio(wav_with_rate(tmp_path / "fast.wav", 1_000_000, y), SR)
    assert load_audio(wav_with_rate(tmp_path / "ok.wav", 8000, y), SR).size == pytest.approx(2 * y.size, rel=0.01)


def test_long_files_are_refused_by_length_not_decoded(tmp_path):
    path = tmp_path / "hour.flac"
    minutes = MAX_DECODE_SECONDS / 60 + 1
    with sf.SoundFile(path, "w", 8000, 1, format="FLAC") as f:  # a constant level compresses to almost nothing
        block = np.full(8000 * 60, 0.1, np.float32)
        for _ in range(int(minutes)):
            f.write(block)
    assert path.stat().st_size < 2e6
    tracemalloc.start()
    with pytest.raises(AudioError, match=r"min long; one prediction decodes at most .* Use the timeline"):
        decode(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20e6
    y, sr = decode(path, max_seconds=minutes * 60 + 1)
    assert sr == 8000 and y.size == int(minutes) * 8000 * 60


def test_values_that_are_not_audio_are_errors_in_prediction_and_training(rec, tmp_path):
    huge = tmp_path / "huge.wav"
    sf.write(huge, np.full(SR, 1e30, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="sample values reach 1e\\+30"):
        rec.predict(huge)
    nan = np.full(SR, np.nan, np.float32)
    with pytest.raises(AudioError, match="NaN or infinite"):
        rec.predict(nan, sample_rate=SR)
    from emovox.corpora.base import Utterance
    from emovox.features import FeatureConfig
    from emovox.training.data import prepare

    good = tmp_path / "good.wav"
    sf.write(good, tone_signal("sad", 1.0), SR)
    data = prepare([Utterance(good, "sad", "s1", "x"), Utterance(huge, "sad", "s1", "x")], FeatureConfig(duration=1.0, image_size=64),
                   workers=1, use_cache=False, progress=False, log=lambda m: None)
    assert len(data.utts) == 1 and "sample values reach" in str(data.skipped)


@pytest.mark.parametrize("kind", ["white noise", "DC", "near-silence", "10 ms"])
def test_what_is_not_speech_gets_no_emotion(rec, kind):
    rng = np.random.default_rng(0)
    y = {"white noise": 0.2 * rng.standard_normal(3 * SR), "DC": np.full(3 * SR, 0.3),
         "near-silence": 3e-4 * rng.standard_normal(3 * SR), "10 ms": tone_signal("sad", 0.01)}[kind]
    with pytest.raises(NoSpeechError, match="no speech found"):
        rec.predict(y.astype(np.float32), sample_rate=SR)
    assert rec.predict(tone_signal("sad", 1.2), sample_rate=SR).label == "sad"  # voiced sound still passes
    off = EmotionRecognizer(rec.model, speech_gate="off")
    assert off.predict(y.astype(np.float32), sample_rate=SR).label  # the gate can be turned off


def test_cli_reports_no_speech_as_a_row(rec, tmp_path, capsys):
    from emovox.cli import main

    model = tone_model(tmp_path)
    noise = tmp_path / "noise.wav"
    sf.write(noise, 0.2 * np.random.default_rng(1).standard_normal(2 * SR), SR)
    sad = tmp_path / "sad.wav"
    sf.write(sad, tone_signal("sad", 1.2), SR)
    assert main(["predict", "--model", str(model), str(noise), str(sad)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "no speech" in out[1] and "noise.wav" in out[1] and out[2].split()[1] == "sad"
    assert main(["predict", "--model", str(model), "--format", "json", str(noise)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["label"] is None and d["no_speech"] is True and "no speech found" in d["message"]


def test_http_no_speech_is_422(rec, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import io

    from fastapi.testclient import TestClient

    from emovox.serve import create_app

    buf = io.BytesIO()
    sf.write(buf, np.full(2 * SR, 0.2, np.float32), SR, format="WAV")
    with TestClient(create_app(rec, tmp_dir=tmp_path)) as c:
        r = c.post("/v1/predict", files={"file": ("dc.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 422 and r.json()["detail"].startswith("dc.wav: no speech found")


def damaged(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    cfg_path = dst / "config.json"
    cfg = json.loads(cfg_path.read_text())
    new = edit(cfg)
    cfg_path.write_text(json.dumps(cfg if new is None else new))
    return dst


def _set(path: tuple, value):
    def edit(cfg):
        d = cfg
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


CASES = {
    "list": (lambda c: [], "expected a JSON object"),
    "null": (None, "expected a JSON object"),
    "features null": (_set(("encoders", 0, "features",), None), "feature settings must be a JSON object"),
    "features list": (_set(("encoders", 0, "features",), [1, 2]), "feature settings must be a JSON object"),
    "sample_rate string": (_set(("encoders", 0, "features", "sample_rate"), "16000"), "sample_rate must be a whole number"),
    "duration string": (_set(("encoders", 0, "features", "duration"), "3"), "duration must be a non-negative number"),
    "negative n_fft": (_set(("encoders", 0, "features", "n_fft"), -512), "n_fft must be a whole number"),
    "negative win_length": (_set(("encoders", 0, "features", "win_length"), -1), "win_length must be a whole number"),
    "n_mels huge": (_set(("encoders", 0, "features", "n_mels"), 100000), "n_mels must be a whole number"),
    "image_size 1": (_set(("encoders", 0, "features", "image_size"), 1), "image_size must be a whole number"),
    "temperature hot": (_set(("heads", "file", "temperature"), "hot"), "temperature must be a positive number"),
    "temperature 0": (_set(("heads", "file", "temperature"), 0), "temperature must be a positive number"),
    "temperature -1": (_set(("heads", "file", "temperature"), -1.0), "temperature must be a positive number"),
    "duplicate labels": (_set(("labels",), ["angry", "angry", "neutral", "sad"]), "repeats angry"),
    "labels not a list": (_set(("labels",), "angry"), "must be a list"),
    "label count": (_set(("labels",), ["angry", "sad"]), "lists 2 labels but the weights .* classify 4"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_model_folders_give_clear_errors(case, tmp_path):
    edit, message = CASES[case]
    src = random_model(tmp_path / "src")
    if case == "null":
        dst = shutil.copytree(src, tmp_path / "m")
        (dst / "config.json").write_text("null")
    else:
        dst = damaged(src, tmp_path / "m", edit)
    with pytest.raises(ModelError, match=message):
        EmotionRecognizer.load(dst)


def test_calibration_null_means_uncalibrated(tmp_path):
    from emovox.model import edit_config

    dst = shutil.copytree(random_model(tmp_path / "src"), tmp_path / "m")
    edit_config(dst, _set(("heads", "file", "temperature"), None))
    assert EmotionRecognizer.load(dst).model.temperature == 1.0


def test_onnx_labels_must_match_the_config(rec, tmp_path):
    pytest.importorskip("onnxruntime")
    from emovox.inference.export import export_onnx

    src = shutil.copytree(tone_model(tmp_path), tmp_path / "m")
    export_onnx(src, log=lambda m: None)
    from emovox.model import edit_config

    edit_config(src, lambda cfg: cfg.update(labels=cfg["labels"][::-1]))  # the folder sealed again: the export is not
    with pytest.raises(ModelError, match="labels .* differ from the config"):
        EmotionRecognizer.load(src)
