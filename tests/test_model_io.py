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
    assert cfg["format"] == "emovox-model/2" and cfg["labels"] == ["angry", "happy", "sad"] and enc["name"] == "efficientnet_lite0"
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
