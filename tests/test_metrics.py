import json

import pytest

from emovox.training.metrics import classification_metrics, format_metrics, plot_confusion


def test_scores_match_hand_computation(tmp_path):
    y_true = ["a", "a", "a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "a", "a", "b", "b", "a", "c", "c"]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    f1_a, f1_b = 2 * 0.75 * 0.75 / 1.5, 2 * 0.5 * 0.5 / 1.0
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + 1.0) / 3)
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert m["per_class"]["b"]["support"] == 2
    json.dumps(m)  # serialisable
    assert "UAR=0.7500" in format_metrics(m)
    png = plot_confusion(m, tmp_path / "cm.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_labels_are_reported_not_scored():
    m = classification_metrics(["a", "calm", "b", "calm"], ["a", "a", "b", "b"], ["a", "b"])
    assert m["n"] == 2 and m["accuracy"] == 1.0
    assert m["unknown_labels"] == {"calm": 2}
    assert "calm (2)" in format_metrics(m)


def test_uar_ignores_classes_absent_from_truth():
    m = classification_metrics(["a", "a"], ["a", "b"], ["a", "b", "c"])
    assert m["uar"] == pytest.approx(0.5)
