"""End to end on a synthetic corpus: train, evaluate, predict (API and CLI)."""
import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import torch
import pytest
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.cli import main
from emovox.corpora import load_folder
from emovox.errors import AudioError, EmovoxError
from emovox.features import FeatureConfig
from emovox.training.train import TrainConfig, train

from conftest import TONES, tone

FAST = FeatureConfig(duration=1.0, image_size=96)


@pytest.fixture(scope="module")
def run_dir(tone_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache_dir = tmp_path_factory.mktemp("fresh-cache")
    utts = load_folder(tone_corpus)
    summary = train(utts, out, TrainConfig(epochs=8, lr=3e-3, split="speaker", test_speakers=("s4",)), FAST,
                    workers=2, cache_dir=cache_dir, progress=False, overwrite=True, log=lambda m: None)
    return out, summary


def test_training_writes_a_complete_run_folder(run_dir):
    out, summary = run_dir
    for name in ("model/model.safetensors", "model/config.json", "history.json", "curves.png", "metrics.json", "confusion.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 9  # speaker s4 holds every 4th file of each class
    assert m["accuracy"] >= 0.8  # chance is 1/3
    assert set(summary["timings"]) == {"features_s", "backbone_pass_s", "epochs_s", "familiarity_s"}
    # the familiarity gate, its threshold from the training speakers' cross-validation
    gate = json.loads((out / "model" / "config.json").read_text())["familiarity"]
    assert (out / "model" / gate["file"]).is_file() and gate["plain_threshold"] >= gate["speaker_cv_quantile"] * 0.9999 > 0
    # a stricter threshold, the speech detector asked up to the ceiling
    assert 0 < gate["threshold"] <= gate["plain_threshold"] and gate["speech_ceiling"] >= 1.0


def test_refuses_to_overwrite_a_run(run_dir, tone_corpus):
    out, _ = run_dir
    with pytest.raises(EmovoxError, match="--overwrite"):
        train(load_folder(tone_corpus), out, TrainConfig(epochs=1), FAST, progress=False)


def test_recognizer_predicts_paths_arrays_lists_and_folders(run_dir, tone_corpus):
    rec = EmotionRecognizer.load(run_dir[0] / "model")
    assert rec.labels == ["angry", "neutral", "sad"]
    one = rec.predict(tone_corpus / "sad" / "s4" / "sad_03.wav")
    assert one.label == "sad" and sum(one.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    f0, vib = TONES["angry"]
    arr = rec.predict(tone(f0, vib, sr=22050, seed=99), sample_rate=22050)
    assert arr.label == "angry"
    many = rec.predict([tone_corpus / "neutral" / "s4" / "neutral_03.wav", tone_corpus / "angry" / "s4" / "angry_07.wav"])
    assert [p.label for p in many] == ["neutral", "angry"]
    folder = rec.predict(tone_corpus / "sad")
    assert len(folder) == 12 and np.mean([p.label == "sad" for p in folder]) >= 0.8
    assert rec.predict_proba(tone_corpus / "sad" / "s4" / "sad_03.wav").shape == (3,)
    with pytest.raises(EmovoxError, match="sample rate"):
        rec.predict(tone(100.0, 0.0))
    with pytest.raises(AudioError, match="missing.wav"):
        rec.predict(tone_corpus / "missing.wav")


def test_predict_files_skips_bad_files_in_order(run_dir, tone_corpus, tmp_path):
    rec = EmotionRecognizer.load(run_dir[0] / "model")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    paths = [tone_corpus / "sad" / "s1" / "sad_00.wav", bad, tone_corpus / "angry" / "s1" / "angry_00.wav"]
    results = list(rec.predict_files(paths, batch_size=2))
    assert isinstance(results[1], AudioError) and "bad.wav" in str(results[1])
    assert [r.source for r in (results[0], results[2])] == [str(paths[0]), str(paths[2])]


def test_cli_evaluate_writes_json_and_png(run_dir, tone_corpus, cache_dir, tmp_path, capsys):
    rc = main(["evaluate", str(run_dir[0] / "model"), "--corpus", "folder", "--data", str(tone_corpus),
               "--json", str(tmp_path / "eval.json"), "--cache-dir", str(cache_dir), "--quiet"])
    assert rc == 0
    m = json.loads((tmp_path / "eval.json").read_text())
    assert m["n"] == 36 and m["accuracy"] > 0.8 and set(m) >= {"uar", "macro_f1", "per_class", "confusion"}
    assert (tmp_path / "eval.png").is_file()
    assert "UAR=" in capsys.readouterr().out


def test_cli_evaluate_leaves_out_unknown_labels(run_dir, tmp_path, capsys):
    for emo, f0 in (("sad", 120.0), ("happy", 500.0)):
        (tmp_path / "d" / emo).mkdir(parents=True)
        sf.write(tmp_path / "d" / emo / "x.wav", tone(f0, 3.0), 16000)
    rc = main(["evaluate", str(run_dir[0] / "model"), "--corpus", "folder", "--data", str(tmp_path / "d"), "--no-cache", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "n=1 " in out and "happy (1)" in out


def test_cli_predict_table_json_csv_and_bad_file(run_dir, tone_corpus, tmp_path, capsys):
    model = str(run_dir[0] / "model")
    folder = tmp_path / "in"
    shutil.copytree(tone_corpus / "angry" / "s2", folder)
    (folder / "broken.wav").write_bytes(b"\x00" * 100)
    rc = main(["predict", "--model", model, str(folder), "--top-k", "2"])
    cap = capsys.readouterr()
    assert rc == 1  # one file failed, the others are still predicted
    assert "broken.wav" in cap.err and "1 of 4 file(s)" in cap.err
    rows = [line for line in cap.out.splitlines()[1:] if line.strip()]
    assert len(rows) == 3 and all(" angry " in r for r in rows)

    assert main(["predict", "--model", model, "--format", "json", str(folder / "angry_01.wav")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["label"] == "angry" and set(d["probabilities"]) == {"angry", "neutral", "sad"}

    assert main(["predict", "--model", model, "--format", "csv", str(folder / "angry_01.wav")]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "label", "confidence", "uncertain", "prob_angry", "prob_neutral", "prob_sad", "ood_score"]
    assert rows[1][1] == "angry" and 0 <= float(rows[1][-1]) <= 1  # the model's familiarity gate: its score
    # one table shape: the CLI's, a timeline's and a batch dataset's answer columns have the same names
    from emovox.batch.rows import output_schema
    from emovox.inference.results import table_columns

    assert rows[0][1:] == table_columns(["angry", "neutral", "sad"], ood=True)
    assert set(rows[0][1:-1]) <= set(output_schema(["angry", "neutral", "sad"], segments=False).names)


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "x.wav"]) == 2
    assert "not an emovox model folder" in capsys.readouterr().err
    assert main(["train", "--corpus", "tess", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "TESS folder not found" in capsys.readouterr().err


def test_every_command_documents_its_options():
    for cmd in ([], ["train"], ["evaluate"], ["predict"], ["backbones"]):
        out = subprocess.run([sys.executable, "-m", "emovox.cli", *cmd, "--help"], capture_output=True, text=True, check=True).stdout
        assert "usage: emovox" in out
    out = subprocess.run([sys.executable, "-m", "emovox.cli", "train", "--help"], capture_output=True, text=True).stdout
    for opt in ("--corpus", "--data", "--backbone", "--weights", "--finetune", "--split", "--epochs", "--batch-size", "--lr", "--seed", "--out"):
        assert opt in out


@pytest.mark.parametrize("finetune", ["last", "all"])
def test_finetuning_trains_the_body_and_predicts(tone_corpus, tmp_path, finetune):
    from emovox.model import load_model

    utts = load_folder(tone_corpus)
    feats = FeatureConfig(duration=1.0, image_size=64)
    s = train(utts, tmp_path / "run", TrainConfig(epochs=4, lr=1e-3, finetune=finetune, split="speaker", test_speakers=("s4",)),
              feats, workers=1, use_cache=False, progress=False, log=lambda m: None)
    assert s["metrics"]["n"] == 9 and s["metrics"]["accuracy"] > 0.5
    trained, _, cfg = load_model(tmp_path / "run" / "model")
    assert cfg["finetune"] == finetune
    # the last block of the body moved away from ImageNet
    from emovox.encoders.image import imagenet_classifier

    ref, _ = imagenet_classifier("efficientnet_lite0")
    assert not torch.allclose(trained.encoders[0].body.conv_head.weight, ref.conv_head.weight)
    same_stem = torch.allclose(trained.encoders[0].body.conv_stem.weight, ref.conv_stem.weight)
    assert same_stem == (finetune == "last")
    # evaluation through the recognizer (spectrogram inputs) agrees with the run's own test metrics
    from emovox.training.evaluate import evaluate

    m = evaluate(EmotionRecognizer.load(tmp_path / "run" / "model"), [u for u in utts if u.speaker == "s4"], use_cache=False,
                 progress=False)
    assert m["accuracy"] == pytest.approx(s["metrics"]["accuracy"])
