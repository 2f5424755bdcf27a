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
    assert config["format"] == "emovox-model/3" and [e["kind"] for e in config["encoders"]] == ["speech", "speech"]
    assert set(config["heads"]) == {"file", "speaker"} and len(config["digest"]) == 64
    assert str(tiny_root) not in (folder / "config.json").read_text()  # no path of this machine

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
    with pytest.raises(ModelError, match="config or weights differ"):
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


@pytest.fixture
def band_energies():
    """A new encoder kind, written as a user would: one class and its registry entry, nothing else in emovox."""
    from dataclasses import dataclass

    import torch

    from emovox.encoders.base import Encoder, Preparer, register

    @dataclass(frozen=True)
    class BandPreparer(Preparer):
        bands: int = 16

        def __call__(self, y, sr, source="<array>"):
            spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
            edges = np.linspace(0, len(spectrum) // 4, self.bands + 1).astype(int)  # 0-2 kHz at 16 kHz
            return np.log(np.array([spectrum[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]) + 1e-6).astype(np.float32)

    class BandEnergies(Encoder):
        kind = "band-energies"
        batch_size = 64

        def __init__(self, name="bands16"):
            super().__init__(name)
            self.mix = torch.nn.Linear(16, 8)  # weights that travel in the model folder
            self.requires_grad_(False)

        @classmethod
        def handles(cls, name):
            return name == "bands16"

        @classmethod
        def pretrained(cls, name, weights="pretrained", **settings):
            torch.manual_seed(0)
            return cls(name)

        @classmethod
        def from_spec(cls, spec):
            return cls(spec["name"])

        def spec(self):
            return {"kind": self.kind, "name": self.name, "dim": self.dim, "weights_sha256": self.weights_digest}

        @property
        def dim(self):
            return 16 + 8

        def preparer(self):
            return BandPreparer(16000)

        def encode(self, inputs):
            x = torch.from_numpy(np.stack(inputs)) if len(inputs) else torch.zeros((0, 16))
            return torch.cat([x, self.mix(x)], dim=1)

    register(BandEnergies)
    yield BandEnergies
    REGISTRY.pop("band-energies")


def test_a_new_encoder_kind_needs_nothing_outside_its_class(band_energies, tone_corpus, tmp_path):
    from emovox.training.train import TrainConfig, train

    utts = load_folder(tone_corpus)
    cfg = TrainConfig(encoders=("bands16", "egemaps"), solver="logreg", logreg_c=1.0, split="speaker",
                      test_speakers=("s4",), val_speakers=("s3",))
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    assert summary["metrics"]["accuracy"] > 0.6  # 3 classes: chance is 1/3
    folder = tmp_path / "run" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert [e["kind"] for e in config["encoders"]] == ["band-energies", "functionals"]
    rec = EmotionRecognizer.load(folder)
    assert isinstance(rec.model.encoders[0], band_energies) and rec.model.vector_dim == 24 + 88
    test = [u for u in utts if u.speaker == "s4"]
    preds = rec.predict([u.path for u in test])
    assert np.mean([p.label == u.emotion for p, u in zip(preds, test)]) == pytest.approx(summary["metrics"]["accuracy"])
    # its weights are part of the folder's digest: changing them is refused
    from safetensors.torch import load_file, save_file

    weights = next(folder.glob("*.safetensors"))
    state = load_file(weights)
    key = next(k for k in state if k.endswith("mix.weight"))
    state[key] = state[key] + 1
    save_file(state, weights)
    with pytest.raises(ModelError, match="weights_sha256 is .*, but the encoder it describes, with this folder's weights"):
        EmotionRecognizer.load(folder)


def test_fusion_average_is_the_mean_of_per_encoder_heads(band_energies):
    """fusion="average": one regression per encoder, logits averaged, stored as one linear head."""
    import torch

    from emovox.training.splits import Split
    from emovox.training.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    y = torch.tensor(np.repeat(np.arange(3), 40))
    x = torch.from_numpy(rng.standard_normal((120, 24 + 88)).astype(np.float32))
    x[:, :4] += y.float()[:, None] * 2  # each encoder's block carries some of the signal
    x[:, 24:40] -= y.float()[:, None] * 2
    split = Split(np.arange(0, 120, 2), np.arange(1, 120, 4), np.arange(3, 120, 4))
    labels = ["a", "b", "c"]
    cfg = TrainConfig(solver="logreg", logreg_c=0.5, fusion="average")
    fused = EmotionClassifier([band_energies.pretrained("bands16"), build_encoder("egemaps")], labels)
    fit(fused, x, y, split, cfg, progress=False)
    parts = []
    for enc, cols in ((band_energies.pretrained("bands16"), slice(0, 24)), (build_encoder("egemaps"), slice(24, None))):
        single = EmotionClassifier([enc], labels)
        fit(single, x[:, cols].contiguous(), y, split, TrainConfig(solver="logreg", logreg_c=0.5), progress=False)
        parts.append(single.classify(x[:, cols].contiguous()))
    torch.testing.assert_close(fused.classify(x), (parts[0] + parts[1]) / 2, atol=1e-4, rtol=1e-4)
    acc = float((fused.classify(x[split.test]).argmax(1) == y[split.test]).float().mean())
    assert acc > 0.6  # chance 1/3
    with pytest.raises(Exception, match="solver='logreg'"):
        TrainConfig(fusion="average")
