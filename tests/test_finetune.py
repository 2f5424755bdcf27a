"""Fine-tuning controls: warm-up and cosine schedule, discriminative learning rates,
early stopping, SpecAugment and the training device."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from emovox.corpora import load_folder
from emovox.errors import EmovoxError
from emovox.features import FeatureConfig
from emovox.model import EmotionClassifier
from emovox.training.train import TrainConfig, lr_factor, param_groups, resolve_device, spec_augment, train

SMALL = FeatureConfig(duration=1.0, image_size=64)


def test_lr_factor_warms_up_linearly_then_decays_by_a_cosine():
    total, warmup = 100, 10
    assert [lr_factor(s, total, warmup, "cosine") for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, total, warmup, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, total, warmup, "cosine") == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(99, total, warmup, "cosine") < 0.001
    assert lr_factor(99, total, warmup, "constant") == 1.0
    assert lr_factor(0, total, 0, "constant") == 1.0


def test_param_groups_give_the_body_a_scaled_learning_rate():
    model = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None, finetune="all")
    groups = param_groups(model, TrainConfig(lr=1e-3, body_lr_scale=0.1, finetune="all"))
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    head_ids = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in groups[0]["params"]} == head_ids
    frozen = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None)
    assert len(param_groups(frozen, TrainConfig())) == 1  # nothing of the body trains


def test_spec_augment_masks_bands_and_frames_reproducibly():
    spec = np.random.default_rng(0).normal(size=(128, 300)).astype(np.float32)
    a = spec_augment(spec, 2, np.random.default_rng(7))
    b = spec_augment(spec, 2, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == spec.shape and not np.shares_memory(a, spec)
    masked = a == np.float32(spec.mean())
    assert 0 < masked.mean() < 0.5  # two time masks of <= 10 % and two band masks of <= 15 %
    full_frames = masked.all(axis=0).sum()
    full_bands = masked.all(axis=1).sum()
    assert full_frames <= 2 * 30 and full_bands <= 2 * 19 and full_frames + full_bands > 0
    np.testing.assert_array_equal(spec_augment(spec, 0, np.random.default_rng(7)), spec)


def test_training_options_are_validated():
    with pytest.raises(EmovoxError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(EmovoxError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)
    with pytest.raises(EmovoxError, match="body_lr_scale"):
        TrainConfig(body_lr_scale=0)
    with pytest.raises(EmovoxError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(EmovoxError, match="device"):
        TrainConfig(device="tpu")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(EmovoxError, match="no GPU"):
            resolve_device("cuda")


def test_full_finetuning_with_schedule_and_spec_augment_learns(tone_corpus, tmp_path):
    utts = load_folder(tone_corpus)
    cfg = TrainConfig(epochs=5, lr=1e-3, finetune="all", split="speaker", test_speakers=("s4",), schedule="cosine",
                      warmup_epochs=1, body_lr_scale=0.3, spec_augment=1, device="auto")
    s = train(utts, tmp_path / "run", cfg, SMALL, workers=1, use_cache=False, progress=False, log=lambda m: None)
    assert s["metrics"]["n"] == 9 and s["metrics"]["accuracy"] > 0.5  # chance: 1/3
    lrs = [h["lr"] for h in s["history"]]
    assert lrs[0] == pytest.approx(1e-3)  # warmed up by the end of epoch 1
    assert lrs[0] > lrs[2] > lrs[-1] and lrs[-1] < 1e-5  # cosine decay to 0


def test_patience_stops_training_that_no_longer_improves(tone_corpus, tmp_path):
    utts = load_folder(tone_corpus)
    # lr 0: the validation score can never improve after the first epoch
    cfg = TrainConfig(epochs=30, lr=0.0, split="speaker", test_speakers=("s4",), patience=2)
    s = train(utts, tmp_path / "run", cfg, SMALL, workers=1, use_cache=False, progress=False, log=lambda m: None)
    assert [h["epoch"] for h in s["history"]] == [1, 2, 3]
    assert s["history"][0].get("best") and s["history"][-1].get("stopped_early")


def test_cli_offers_the_finetuning_options():
    out = subprocess.run([sys.executable, "-m", "emovox.cli", "train", "--help"], capture_output=True, text=True, check=True).stdout
    for opt in ("--schedule", "--warmup-epochs", "--body-lr-scale", "--patience", "--spec-augment", "--device"):
        assert opt in out


def test_benchmark_rows_name_the_finetuning_settings():
    from emovox.training.benchmark import _method

    cfg = TrainConfig(finetune="all", lr=1e-3, body_lr_scale=0.1, warmup_epochs=1, schedule="cosine", spec_augment=2)
    assert _method(cfg) == "efficientnet_lite0/all lr 0.001 (CNN ×0.1) warm-up 1 cosine SpecAugment 2"
    assert _method(TrainConfig()) == "efficientnet_lite0/none"  # a frozen body: the head's Adam settings are not news
    assert _method(TrainConfig(solver="logreg", logreg_c=0.1, augment=1)) == "efficientnet_lite0/none logreg C=0.1 aug×1"


def test_class_weights_follow_the_inverse_class_share():
    from emovox.training.train import class_weights

    w = class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0])  # class 2 has no training example


@pytest.mark.parametrize("solver", ["logreg", "adam"])
def test_balance_recovers_a_rare_class(solver):
    from emovox.training.splits import Split
    from emovox.training.train import fit

    rng = np.random.default_rng(0)
    model = EmotionClassifier("efficientnet_lite0", ["common", "rare"], weights=None)
    dim = model.vector_dim

    def draw(n_common, n_rare):
        x = rng.normal(size=(n_common + n_rare, dim)).astype(np.float32)
        x[n_common:, :32] += 0.8  # the rare class differs, weakly, in a few dimensions
        return x, [0] * n_common + [1] * n_rare

    x_tr, y_tr = draw(2000, 100)
    x_te, y_te = draw(200, 200)
    inputs = torch.from_numpy(np.concatenate([x_tr, x_te]))
    y = torch.tensor(y_tr + y_te)
    n_tr = len(y_tr)
    split = Split(np.arange(n_tr), np.arange(n_tr), np.arange(n_tr, len(y)), "synthetic")
    recall = {}
    for balance in (False, True):
        fit(model, inputs, y, split, TrainConfig(solver=solver, balance=balance, epochs=20), progress=False)
        with torch.inference_mode():
            pred = model.head(inputs[n_tr:]).argmax(1).numpy()
        y_te_ = np.asarray(y_te)
        recall[balance] = float((pred[y_te_ == 1] == 1).mean())
        assert (pred[y_te_ == 0] == 0).mean() > 0.95  # the common class stays recognised
    assert recall[True] > recall[False] + 0.05  # same seed: without the weights both runs would agree
