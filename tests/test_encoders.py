"""A model of two encoders, end to end through the public API and the CLI: train, save, reload, predict, ONNX.

Nothing outside ``emovox.encoders`` knows which kinds the encoders are: the model is a list of them.
"""
import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from test_speech import tiny_encoder  # noqa: E402

from emovox.cli import main  # noqa: E402
from emovox.corpora import load_folder  # noqa: E402
from emovox.encoders import REGISTRY, build_encoder, from_spec  # noqa: E402
from emovox.errors import ModelError  # noqa: E402
from emovox.inference import EmotionRecognizer  # noqa: E402
from emovox.model import EmotionClassifier, load_model, save_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("two-encoders")


def test_registry_knows_every_kind_and_rebuilds_from_specs(tiny_root):
    assert {"image", "speech", "functionals"} <= set(REGISTRY)
    enc = build_encoder(f"hf:{tiny_encoder('wavlm', tiny_root)}")
    spec = json.loads(json.dumps(enc.spec()))
    assert spec["kind"] == "speech" and "/" not in spec["name"]  # no path of this machine in the config
    again = from_spec(spec)
    assert again.dim == enc.dim and again.identity() != enc.identity()  # random weights until a folder's are loaded
    again.load_state_dict(enc.state_dict())
    assert again.identity() == enc.identity()
    with pytest.raises(ModelError, match="unknown encoder kind"):
        from_spec({"kind": "telepathy"})


def test_two_encoders_train_save_reload_predict_and_run_on_onnx(tiny_root, tone_corpus, tmp_path, monkeypatch):
    from emovox.training.train import TrainConfig, train

    names = (f"hf:{tiny_encoder('whisper', tiny_root)}", f"hf:{tiny_encoder('wavlm', tiny_root)}")
    utts = load_folder(tone_corpus)
    cfg = TrainConfig(encoders=names, solver="logreg", logreg_c=1.0, normalize="speaker", split="speaker",
                      test_speakers=("s4",), val_speakers=("s3",))
    cache = tmp_path / "cache"
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=cache, progress=False, log=lambda m: None)
    assert summary["metrics"]["accuracy"] > 0.6  # 3 classes: chance is 1/3
    folder = tmp_path / "run" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "emovox-model/2" and [e["kind"] for e in config["encoders"]] == ["speech", "speech"]
    assert set(config["heads"]) == {"file", "speaker"} and len(config["digest"]) == 64

    model, _, _ = load_model(folder)
    assert model.vector_dim == sum(e.dim for e in model.encoders) == config["heads"]["file"]["input_dim"]
    monkeypatch.setenv("EMOVOX_CACHE", str(cache))
    rec = EmotionRecognizer.load(folder)  # both encoders exported to ONNX on first use, checked, cached
    assert rec.engine.name == "onnx-encoder" and len(list((cache / "onnx").glob("*.onnx"))) == 2
    test = [u for u in utts if u.speaker == "s4"]
    preds = rec.predict([u.path for u in test])
    acc = np.mean([p.label == u.emotion for p, u in zip(preds, test)])
    assert acc == pytest.approx(summary["metrics"]["accuracy"])
    p_torch = EmotionRecognizer.load(folder, engine="torch").predict_proba([u.path for u in test])
    np.testing.assert_allclose(rec.predict_proba([u.path for u in test]), p_torch, atol=1e-3)

    # save again and reload: the same probabilities; reordered labels are refused
    resaved = save_model(model, tmp_path / "again")
    np.testing.assert_allclose(EmotionRecognizer.load(resaved, engine="torch").predict_proba([u.path for u in test]), p_torch,
                               atol=1e-6)
    cfg2 = json.loads((resaved / "config.json").read_text())
    cfg2["labels"] = cfg2["labels"][::-1]
    (resaved / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(ModelError, match="labels or weights differ"):
        EmotionRecognizer.load(resaved)


def test_two_encoders_from_the_command_line(tiny_root, tone_corpus, tmp_path, capsys):
    names = f"hf:{tiny_encoder('whisper', tiny_root)},hf:{tiny_encoder('hubert', tiny_root)}"
    out = tmp_path / "run"
    assert main(["train", "--corpus", "folder", "--data", str(tone_corpus), "--encoders", names, "--solver", "logreg",
                 "--split", "speaker", "--test-speakers", "s4", "--val-speakers", "s3", "--out", str(out), "--quiet",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    capsys.readouterr()
    clip = next(u.path for u in load_folder(tone_corpus) if u.speaker == "s4")
    assert main(["predict", "--model", str(out / "model"), str(clip), "--format", "json", "--engine", "torch"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["label"] in row["probabilities"] and abs(sum(row["probabilities"].values()) - 1) < 1e-5


def test_a_model_is_a_list_of_encoders_of_any_kinds(tiny_root):
    speech = build_encoder(f"hf:{tiny_encoder('whisper', tiny_root)}")
    both = EmotionClassifier([speech, build_encoder("egemaps")], ["a", "b"])
    assert both.vector_dim == speech.dim + 88 and both.backbone.endswith("+egemaps")
    with pytest.raises(ModelError, match="one encoder"):
        EmotionClassifier([speech, build_encoder("egemaps")], ["a", "b"], finetune="all")
