"""The model bundled with the package and the example clips."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from emovox import EmotionRecognizer
from emovox.cli import main
from emovox.corpora import ravdess
from emovox.inference.recognizer import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.flac"))


def test_examples_are_present_and_held_out():
    assert len(EXAMPLES) == 3
    cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())
    held_out = set(cfg["training"]["held_out"])
    for clip in EXAMPLES:
        u = ravdess.parse_name(clip)
        assert f"ravdess:{u.speaker}" in held_out  # the bundled model never heard these voices


def test_bundled_model_loads_without_arguments_and_predicts_the_examples():
    rec = EmotionRecognizer.load()
    assert rec.labels == ["angry", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert rec.model.temperature != 1.0  # calibrated on held-out speakers
    preds = rec.predict([str(p) for p in EXAMPLES])
    assert [p.label for p in preds] == [ravdess.parse_name(p).emotion for p in EXAMPLES]
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in preds)


def test_cli_predict_uses_the_bundled_model_and_says_its_license(capsys):
    assert main(["predict", str(ROOT / "examples")]) == 0
    cap = capsys.readouterr()
    assert "non-commercial" in cap.err.lower()
    rows = cap.out.splitlines()[1:]
    assert len(rows) == 3 and [r.split()[1] for r in rows] == ["sad", "angry", "fear"]
    assert main(["predict", "--uncertain-below", "0.99", "--format", "json", str(EXAMPLES[0])]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["uncertain"] is True and d["label"] == "sad"
    assert main(["predict", "--uncertain-below", "0.99", str(EXAMPLES[0])]) == 0
    assert "uncertain" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "emovox.cli", "predict", "--help"], capture_output=True, text=True).stdout
    assert "NON-COMMERCIAL" in out


def test_wheel_carries_the_model_and_stays_small(tmp_path):
    pytest.importorskip("setuptools")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip()[-300:]}")
    wheel = next(tmp_path.glob("emovox-*.whl"))
    assert wheel.stat().st_size < 80 * 2**20  # the bundled model carries Whisper base (41 MB in fp16)
    names = zipfile.ZipFile(wheel).namelist()
    assert "emovox/models/default/model.safetensors" in names and "emovox/serve/static/index.html" in names
