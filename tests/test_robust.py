"""The robust recipe: acoustic functionals, speaker normalisation, logistic-regression heads.

Its accuracy on real speech of unseen actors is a benchmark, not a test (minutes of CPU):
``emovox benchmark --config bench/robust.toml`` (the benchmarks page of the docs, "Unseen speakers")."""
import json

import numpy as np
import pytest
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.encoders.functionals import acoustic_dim, compress, file_functionals, signal_functionals
from emovox.model import speaker_normalize
from emovox.cli import main
from emovox.corpora import load_folder
from emovox.errors import AudioError, EmovoxError, ModelError
from emovox.features import FeatureConfig
from emovox.training.train import RECIPES, TrainConfig, recipe_config, train

from conftest import TONES, tone

TONE_LABELS = set(TONES)

FAST = FeatureConfig(duration=1.0, image_size=96)


def test_speaker_normalize_zscores_each_speaker():
    rng = np.random.default_rng(0)
    a = rng.normal(5.0, 2.0, (40, 3))
    b = rng.normal(-3.0, 0.5, (30, 3))
    out = speaker_normalize(np.vstack([a, b]), ["a"] * 40 + ["b"] * 30)
    for part in (out[:40], out[40:]):
        np.testing.assert_allclose(part.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(part.std(0), 1, atol=1e-4)
    # One group for all rows when no speakers are given.
    np.testing.assert_allclose(speaker_normalize(a).mean(0), 0, atol=1e-5)


def test_speaker_normalize_edge_cases():
    x = np.array([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0], [9.0, 7.0]])
    out = speaker_normalize(x, ["s", "s", "s", "lone"])
    assert np.isfinite(out).all()
    assert (out[3] == 0).all()  # a speaker with one recording carries no statistics
    assert (out[:, 1] == 0).all()  # a constant dimension stays finite (zero)
    with pytest.raises(EmovoxError, match="3 speaker labels for 4"):
        speaker_normalize(x, ["s", "s", "s"])


def test_speaker_normalisation_removes_a_speaker_offset():
    """Two voices shifted far apart: a classifier trained on one speaker fails on the other unless each is normalised."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 50)
    emotion = np.where(y[:, None] == 1, 1.0, -1.0) + rng.normal(0, 0.4, (100, 2))
    train_x, test_x = emotion, emotion + np.array([4.0, 4.0])  # the second voice: a large offset
    clf = LogisticRegression().fit(train_x, y)
    raw = (clf.predict(test_x) == y).mean()
    norm = LogisticRegression().fit(speaker_normalize(train_x), y)
    normalized = (norm.predict(speaker_normalize(test_x)) == y).mean()
    assert raw <= 0.6 and normalized >= 0.95


def test_compress_keeps_sign_and_order_within_range():
    x = np.array([-1e12, -5.0, 0.0, 0.5, 1e11])
    c = compress(x)
    assert np.all(np.diff(c) > 0) and c[2] == 0 and np.abs(c).max() < 30


def test_functionals_of_files_and_signals(tmp_path):
    y = tone(200.0, 5.0)
    p = tmp_path / "a.wav"
    sf.write(p, y, 16000)
    f = file_functionals(p, "egemaps")
    assert f.shape == (acoustic_dim("egemaps"),) == (88,) and np.isfinite(f).all()
    # Same audio given as a 48 kHz stereo array: resampled and mixed down to (almost) the same numbers.
    import librosa

    y48 = librosa.resample(y, orig_sr=16000, target_sr=48000)
    g = signal_functionals(np.stack([y48, y48]), 48000, "egemaps")
    assert np.corrcoef(f, g)[0, 1] > 0.99
    assert file_functionals(p, "compare").shape == (6373,)


def test_functionals_errors_name_the_problem(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="silent.wav.*silent"):
        file_functionals(silent)
    with pytest.raises(EmovoxError, match="unknown acoustic feature set 'mfcc'"):
        file_functionals(silent, "mfcc")


def test_recipes_and_config_checks():
    cfg = recipe_config("robust", seed=3)
    assert (cfg.backbone, cfg.acoustic, cfg.normalize, cfg.solver, cfg.augment, cfg.seed) == ("efficientnet_lite0_stages", "compare", "speaker", "logreg", 2, 3)
    assert recipe_config("plain") == TrainConfig()
    assert set(RECIPES) == {"plain", "robust", "speech"}
    speech = recipe_config("speech")
    assert (speech.backbone, speech.acoustic, speech.normalize, speech.solver, speech.augment, speech.timeline_cuts) == (
        "whisper_tiny_en", None, "speaker", "logreg", 0, True)
    assert TrainConfig(acoustic="none").acoustic is None
    with pytest.raises(EmovoxError, match="unknown recipe 'best'"):
        recipe_config("best")
    with pytest.raises(EmovoxError, match="solver must be"):
        TrainConfig(solver="sgd")


@pytest.fixture(scope="module")
def robust_run(tone_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust")
    utts = load_folder(tone_corpus)
    cfg = recipe_config("robust", acoustic="egemaps", split="speaker", test_speakers=("s4",), val_speakers=("s3",))
    summary = train(utts, out, cfg, FAST, workers=2, cache_dir=tmp_path_factory.mktemp("cache"), progress=False, log=lambda m: None)
    return out, summary


def test_robust_training_writes_both_heads_and_learns(robust_run):
    out, summary = robust_run
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert [e["name"] for e in cfg["encoders"]][1:] == ["egemaps"] and set(cfg["heads"]) == {"file", "speaker"}
    assert cfg["heads"]["file"]["temperature"] > 0 and cfg["heads"]["speaker"]["temperature"] > 0
    # Three tone "emotions" on a held-out speaker: chance is 1/3.
    for name in ("metrics.json", "metrics_speaker.json"):
        m = json.loads((out / name).read_text())
        assert m["n"] == 9 and m["accuracy"] >= 0.8, name
    assert (out / "confusion_speaker.png").stat().st_size > 0


def test_robust_model_predicts_single_files_and_one_speakers_set(robust_run, tone_corpus):
    out, _ = robust_run
    rec = EmotionRecognizer.load(out / "model")
    files = sorted((tone_corpus / "sad" / "s4").glob("*.wav")) + sorted((tone_corpus / "angry" / "s4").glob("*.wav"))
    single = rec.predict(files[0])
    assert single.label in rec.labels and abs(sum(single.probabilities.values()) - 1) < 1e-5
    together = rec.predict(files, same_speaker=True)
    assert [p.label for p in together] == ["sad"] * 3 + ["angry"] * 3
    # The same signal as an array gives the same answer as the file.
    y, sr = sf.read(files[0], dtype="float32")
    np.testing.assert_allclose(rec.predict_proba(y, sample_rate=sr), rec.predict_proba(files[0]), atol=1e-5)


def test_robust_model_on_the_command_line(robust_run, tone_corpus, capsys):
    out, _ = robust_run
    # One speaker's recordings in all three emotions, normalised together.
    folders = [str(tone_corpus / emo / "s4") for emo in ("angry", "neutral", "sad")]
    assert main(["predict", "--model", str(out / "model"), "--same-speaker", "--format", "csv", *folders]) == 0
    rows = [r.split(",") for r in capsys.readouterr().out.strip().splitlines()[1:]]
    assert len(rows) == 9 and sum(r[0].split("/")[-3] == r[1] for r in rows) >= 8
    assert main(["evaluate", str(out / "model"), "--corpus", "folder", "--data", str(tone_corpus), "--speaker-norm", "--quiet"]) == 0
    assert "accuracy=" in capsys.readouterr().out
    with pytest.raises(ModelError, match="acoustic functionals; ONNX export covers"):
        from emovox.inference.export import export_onnx

        export_onnx(out / "model", out / "x.onnx")


def test_same_speaker_needs_a_speaker_normalised_model(tmp_path, tone_corpus, capsys):
    from helpers_models import random_model

    model = random_model(tmp_path)
    assert main(["predict", "--model", str(model), "--same-speaker", str(tone_corpus / "sad" / "s1")]) == 2
    assert "--recipe robust" in capsys.readouterr().err
    rec = EmotionRecognizer.load(model)
    with pytest.raises(ModelError, match="without speaker normalisation"):
        rec.predict(tone_corpus / "sad" / "s1", same_speaker=True)


def test_cli_recipe_with_overrides(tone_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--recipe", "robust", "--acoustic", "egemaps", "--augment", "0", "--corpus", "folder", "--data", str(tone_corpus),
               "--split", "speaker", "--test-speakers", "s4", "--val-speakers", "s3", "--duration", "1", "--image-size", "96",
               "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "speaker-normalised: n=9" in printed
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert ([e["name"] for e in cfg["encoders"]], sorted(cfg["heads"]), cfg["training"]["solver"], cfg["training"]["augment"]) == (
        ["efficientnet_lite0_stages", "egemaps"], ["file", "speaker"], "logreg", 0)


def test_augmented_copies_are_seeded_distinct_and_cached(tone_corpus, tmp_path):
    from emovox.training.augment import augmented_copies, augmented_signal

    path = sorted((tone_corpus / "sad" / "s1").glob("*.wav"))[0]
    a1, again, a2 = augmented_signal(path, 1), augmented_signal(path, 1), augmented_signal(path, 2)
    np.testing.assert_array_equal(a1, again)  # same file, same copy: the same audio on every run
    assert not (len(a1) == len(a2) and np.allclose(a1, a2))
    original, _ = sf.read(path, dtype="float32")
    assert 0.8 * len(original) < len(a1) < 1.25 * len(original) and np.abs(a1).max() <= 1.0

    utts = load_folder(tone_corpus)[:4]
    cache = tmp_path / "cache"
    copies = augmented_copies(utts, 2, FAST, "egemaps", cache_dir=cache, progress=False)
    assert [c[0].speaker for c in copies] == [f"{u.speaker}~aug{k}" for k in (1, 2) for u in utts]
    assert [c[0].emotion for c in copies] == [u.emotion for u in utts] * 2
    assert all(c[1].shape[0] == FAST.n_mels and c[2].shape == (88,) and c[3] for c in copies)
    assert len(list((cache / "augmented-v1").rglob("*.npy"))) == 2 * 2 * 4  # spectrograms and functionals, 2 copies
    again = augmented_copies(utts, 2, FAST, "egemaps", cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again[5][1], copies[5][1])


def test_augmented_copies_join_the_training_part_only(tone_corpus, tmp_path):
    import torch

    from emovox.model import EmotionClassifier
    from emovox.training.splits import make_split
    from emovox.training.data import model_inputs, prepare
    from emovox.training.train import augment_inputs, with_augmented

    data = prepare(load_folder(tone_corpus), FAST, cache_dir=tmp_path, progress=False, log=lambda m: None)
    split = make_split("speaker", data.utts, test_speakers=("s4",), val_speakers=("s3",))
    model = EmotionClassifier("efficientnet_lite0", sorted(TONE_LABELS), acoustic="egemaps")
    inputs = model_inputs(model, data, progress=False)
    y = torch.tensor([sorted(TONE_LABELS).index(u.emotion) for u in data.utts])
    aug = augment_inputs(model, data, split.train, 1, progress=False)
    big, big_y, utts, aug_split = with_augmented(inputs, y, data.utts, split, aug)
    n, t = len(data.utts), len(split.train)
    assert big.shape == (n + t, model.vector_dim) and len(utts) == n + t
    assert list(aug_split.train) == list(split.train) + list(range(n, n + t))
    assert list(aug_split.val) == list(split.val) and list(aug_split.test) == list(split.test)
    assert torch.equal(big_y[n:], y[split.train]) and all(u.speaker.endswith("~aug1") for u in utts[n:])


def test_augmentation_without_audiomentations_says_what_to_install(monkeypatch, tone_corpus):
    import sys

    from emovox.training.augment import augmented_copies

    monkeypatch.setitem(sys.modules, "audiomentations", None)
    with pytest.raises(EmovoxError, match=r"pip install 'emovox\[augment\]'"):
        augmented_copies(load_folder(tone_corpus)[:1], 1, FAST)
