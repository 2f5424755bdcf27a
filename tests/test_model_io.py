import json

import pytest
import torch

from emovox.errors import ModelError
from emovox.features import FeatureConfig
from emovox.model import EmotionClassifier, load_model, save_model


def test_roundtrip_gives_identical_outputs_and_full_config(tmp_path):
    torch.manual_seed(0)
    model = EmotionClassifier("efficientnet_lite0", ["angry", "happy", "sad"], weights=None).eval()
    feats = FeatureConfig(n_mels=64)
    save_model(model, tmp_path / "m", feats, {"epochs": 3})
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (enc,) = cfg["encoders"]
    assert cfg["format"] == "emovox-model/3" and cfg["labels"] == ["angry", "happy", "sad"] and enc["name"] == "efficientnet_lite0"
    assert enc["features"]["n_mels"] == 64 and cfg["training"] == {"epochs": 3}
    assert {"emovox", "torch", "librosa", "timm"} <= set(cfg["versions"])
    loaded, lfeats, _ = load_model(tmp_path / "m")
    assert lfeats == feats
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))


def test_half_precision_is_close_and_smaller(tmp_path):
    model = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None).eval()
    save_model(model, tmp_path / "f32", FeatureConfig())
    save_model(model, tmp_path / "f16", FeatureConfig(), half=True)
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "f16") < 0.6 * size(tmp_path / "f32")
    loaded, _, _ = load_model(tmp_path / "f16")
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        assert torch.allclose(model(x).softmax(1), loaded(x).softmax(1), atol=1e-2)


def test_no_silent_overwrite_and_clear_errors(tmp_path):
    model = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None)
    save_model(model, tmp_path / "m", FeatureConfig())
    with pytest.raises(ModelError, match="already holds a model"):
        save_model(model, tmp_path / "m", FeatureConfig())
    save_model(model, tmp_path / "m", FeatureConfig(), overwrite=True)
    with pytest.raises(ModelError, match="not an emovox model folder"):
        load_model(tmp_path)
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match="malformed"):
        load_model(tmp_path / "m")


# -- a model folder is all or nothing ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    """A small model folder with a (tiny, random) Whisper encoder, a speaker head and a familiarity gate."""
    import numpy as np

    from emovox.encoders import build_encoder
    from emovox.model.familiar import Familiarity
    from test_speech import tiny_encoder

    root = tmp_path_factory.mktemp("sealed")
    torch.manual_seed(0)
    enc = build_encoder(f"hf:{tiny_encoder('whisper', root)}")
    model = EmotionClassifier([enc], ["angry", "happy", "sad"], normalize="speaker")
    rng = np.random.default_rng(0)
    model.familiarity = Familiarity.fit(rng.normal(size=(60, model.vector_dim)), rng.integers(0, 3, 60), components=4) \
        .with_threshold(2.0, speech_ceiling=1.5)
    return save_model(model, root / "model", training={"epochs": 1})


def _edited(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _put(*path_value):
    *path, value = path_value

    def edit(cfg):
        d = cfg
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


#: edits that would change answers (or hide a wrong file) and the error that names them
SEALED_CASES = {
    "top_db -5": (_put("encoders", 0, "top_db", -5), "'top_db' must be a level in dB"),
    "trim maybe": (_put("encoders", 0, "trim", "maybe"), "'trim' must be true or false"),
    "context": (_put("encoders", 0, "context", "room"), "'context' must be one of"),
    "dim": (_put("encoders", 0, "dim", 12), "dim is 12, but the encoder it describes"),
    "weights_sha256": (_put("encoders", 0, "weights_sha256", "0" * 64), "weights_sha256 is .* but the encoder"),
    "an unknown encoder field": (_put("encoders", 0, "sample_rate", 8000), "unknown field\\(s\\) sample_rate"),
    "a missing encoder field": (lambda c: c["encoders"][0].pop("hub_id"), "missing field\\(s\\) hub_id"),
    "head normalization": (_put("heads", "file", "normalization", "yes"), "normalization must be 'training'"),
    "head input_dim": (_put("heads", "speaker", "input_dim", 7), "input_dim is 7"),
    "head field": (_put("heads", "file", "bias", 1.0), "head file: unknown field"),
    "gate threshold -1": (_put("familiarity", "threshold", -1), "familiarity threshold must be a number"),
    "gate threshold changed": (_put("familiarity", "threshold", 3.0), "familiarity threshold 3.0 is not the one"),
    "gate speech_ceiling": (_put("familiarity", "speech_ceiling", -1), "speech_ceiling"),
    "gate components": (_put("familiarity", "components", 9), "components 9 is not the 4"),
    "top-level typo": (_put("temprature", 1.0), "unknown field\\(s\\) 'temprature'"),
    "no format": (lambda c: c.pop("format"), "has no 'format'"),
    "unknown format": (_put("format", "emovox-model/9"), "is not one this emovox reads"),
    "encoder name": (_put("encoders", 0, "name", "whisper_base"), "digest mismatch"),
    "training record": (_put("training", "epochs", 99), "digest mismatch"),
    "versions": (_put("versions", "torch", "0.1"), "digest mismatch"),
    "temperature": (_put("heads", "file", "temperature", 0.5), "digest mismatch"),
    "no digest": (_put("digest", None), "has no digest"),
}


@pytest.mark.parametrize("case", sorted(SEALED_CASES))
def test_a_model_folder_is_all_or_nothing(speech_folder, tmp_path, case):
    edit, message = SEALED_CASES[case]
    load_model(speech_folder)  # intact, it loads
    with pytest.raises(ModelError, match=message):
        load_model(_edited(speech_folder, tmp_path / "m", edit))


def test_edit_config_changes_a_folder_on_purpose_or_not_at_all(speech_folder, tmp_path):
    import shutil

    from emovox.model import edit_config

    folder = shutil.copytree(speech_folder, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["format"] == "emovox-model/3" and len(cfg["digest"]) == 64
    new = edit_config(folder, _put("heads", "file", "temperature", 0.5))
    model, _, loaded = load_model(folder)
    assert model.temperature == 0.5 and loaded["digest"] == new["digest"] != cfg["digest"]
    before = (folder / "config.json").read_bytes()
    with pytest.raises(ModelError, match="'trim' must be true or false"):
        edit_config(folder, _put("encoders", 0, "trim", "maybe"))
    assert (folder / "config.json").read_bytes() == before  # a refused edit leaves the folder as it was
    tampered = _edited(speech_folder, tmp_path / "t", _put("training", "epochs", 5))
    with pytest.raises(ModelError, match="digest mismatch"):
        edit_config(tampered, _put("training", "epochs", 6))  # a folder changed by hand is not sealed again


def test_older_folders_still_load(speech_folder, tmp_path):
    """An ``emovox-model/2`` folder (its digest over the weights and the labels only) loads as before."""
    from safetensors.torch import load_file

    from emovox.model.io import model_digest

    state = {k: v.float() for k, v in load_file(str(speech_folder / "model.safetensors")).items()}

    def as_v2(cfg):
        cfg["format"] = "emovox-model/2"
        cfg["digest"] = model_digest(state, cfg["labels"])
    folder = _edited(speech_folder, tmp_path / "v2", as_v2)
    model, _, cfg = load_model(folder)
    assert cfg["format"] == "emovox-model/2" and model.familiarity is not None
    with pytest.raises(ModelError, match="digest mismatch"):
        load_model(_edited(folder, tmp_path / "v2b", _put("labels", ["sad", "happy", "angry"])))
