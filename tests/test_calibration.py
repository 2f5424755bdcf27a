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
