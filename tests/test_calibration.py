import numpy as np
import pytest
import torch

from emovox.training.calibration import calibration_report, expected_calibration_error, fit_temperature, negative_log_likelihood


def _overconfident(n=4000, k=4, true_t=3.0, seed=0):
    """Labels drawn from softmax(z), logits reported as true_t * z: over-confident by true_t."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * true_t, y


def test_temperature_recovers_the_overconfidence_factor():
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    assert t == pytest.approx(3.0, rel=0.1)
    rep = calibration_report(logits, y, t)
    assert rep["ece_after"] < 0.5 * rep["ece_before"]
    assert rep["nll_after"] < rep["nll_before"]


def test_ece_of_a_calibrated_model_is_small_and_argmax_unchanged():
    logits, y = _overconfident(true_t=1.0)
    probs = torch.softmax(logits, 1).numpy()
    assert expected_calibration_error(probs, y.numpy()) < 0.03
    assert (torch.softmax(logits / 2.5, 1).argmax(1) == logits.argmax(1)).all()


def test_hand_computed_values_and_ignored_unknown_labels():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1])
    # bins: 0.9 (correct) -> |1 - 0.9| ; 0.6 (wrong) -> |0 - 0.6|; each weight 1/2
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    assert negative_log_likelihood(probs, y) == pytest.approx(-(np.log(0.9) + np.log(0.4)) / 2)
    logits, yy = _overconfident(n=500)
    yy[:100] = -1  # labels the model does not know are ignored
    assert 1.0 < fit_temperature(logits, yy) < 10.0


def test_out_of_fold_logits_come_from_heads_that_never_heard_the_speaker(tone_corpus, tmp_path):
    """calibration="oof": every training/validation file is scored by a head fitted without its speaker."""
    from emovox.corpora import load_folder
    from emovox.model import EmotionClassifier
    from emovox.training.data import model_inputs, prepare
    from emovox.training.splits import make_split
    from emovox.training.train import TrainConfig, fit, oof_logits, train

    utts = load_folder(tone_corpus)
    cfg = TrainConfig(backbone="egemaps", encoders=("egemaps",), solver="logreg", logreg_c=1.0, split="speaker",
                      test_speakers=("s4",), val_speakers=("s3",), calibration="oof", calibration_folds=3)
    model = EmotionClassifier(cfg.build_encoders(), ["angry", "neutral", "sad"])
    data = prepare(utts, model.encoders[0].preparer(), cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    inputs = model_inputs(model, data, progress=False)
    y = torch.tensor([model.labels.index(u.emotion) for u in data.utts])
    split = make_split("speaker", data.utts, test_speakers=("s4",), val_speakers=("s3",))
    fit(model, inputs, y, split, cfg, progress=False)
    logits, target = oof_logits(model, inputs, y, split, cfg, data.utts)
    assert len(target) == len(split.train) + len(split.val)  # every file of s1-s3 scored once, s4 never
    assert float((logits.argmax(1) == target).float().mean()) > 0.6  # heads of other speakers still beat chance

    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    assert summary["metrics"]["accuracy"] > 0.6
    t_oof = summary["metrics"]["calibration"]["temperature"]
    val = train(utts, tmp_path / "run-val", TrainConfig(**(cfg.to_dict() | {"calibration": "validation",
                "encoders": ("egemaps",), "test_speakers": ("s4",), "val_speakers": ("s3",)})),
                workers=1, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    assert t_oof > 0 and t_oof != val["metrics"]["calibration"]["temperature"]
    with pytest.raises(Exception, match="frozen encoders"):
        TrainConfig(finetune="all", calibration="oof")
