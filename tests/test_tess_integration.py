"""Integration on the real TESS recordings (skipped when ../shared/data is absent)."""
import json

import pytest

from emovox.cli import main

pytestmark = pytest.mark.slow


def test_train_on_tess_held_out_words_and_predict(tess_dir, cache_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--corpus", "tess", "--data", str(tess_dir), "--backbone", "efficientnet_lite0",
               "--split", "words", "--epochs", "10", "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    # 7 classes: chance is 14 %. Held-out words, both speakers known.
    assert m["n"] > 300
    assert m["accuracy"] > 0.95 and m["uar"] > 0.95
    capsys.readouterr()

    clip = tess_dir / "YAF_angry" / "YAF_back_angry.flac"
    assert main(["predict", "--model", str(out / "model"), "--format", "json", str(clip)]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert set(pred["probabilities"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
