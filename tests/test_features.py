import numpy as np
import pytest
import torch

from emovox.errors import EmovoxError
from emovox.features import FeatureConfig, file_features, signal_features, spectrogram, to_image

from conftest import tone


def test_config_roundtrip_and_digest():
    cfg = FeatureConfig(n_mels=64, duration=None)
    again = FeatureConfig.from_dict(cfg.to_dict() | {"future_field": 1})
    assert again == cfg
    assert cfg.digest() == again.digest()
    assert cfg.digest() != FeatureConfig().digest()
    with pytest.raises(Exception):
        cfg.n_mels = 10  # frozen


@pytest.mark.parametrize(
    "changes,msg",
    [({"kind": "cqt"}, "kind"), ({"win_length": 2048}, "win_length"), ({"fmax": 9000.0}, "Nyquist"), ({"duration": -1.0}, "duration")],
)
def test_invalid_config_is_named(changes, msg):
    with pytest.raises(EmovoxError, match=msg):
        FeatureConfig(**changes)


def test_logmel_shape_range_and_pitch_sensitivity():
    cfg = FeatureConfig(trim=False, duration=1.0)
    low = signal_features(tone(150.0, 0.0), 16000, cfg)
    high = signal_features(tone(600.0, 0.0), 16000, cfg)
    assert low.shape == (128, 101)
    assert low.max() == pytest.approx(0.0) and low.min() >= -80.0
    # energy sits in higher mel bands for the higher tone
    centroid = lambda s: (np.arange(s.shape[0])[:, None] * 10 ** (s / 10)).sum() / (10 ** (s / 10)).sum()  # noqa: E731
    assert centroid(high) > centroid(low) + 5


def test_mfcc_shape(wav):
    spec = file_features(wav, FeatureConfig(kind="mfcc", n_mfcc=20, duration=2.0))
    assert spec.shape == (20, 201)


def test_variable_duration_keeps_length(wav):
    spec = file_features(wav, FeatureConfig(duration=None, trim=False))
    assert spec.shape[1] == 1 + int(1.2 * 16000) // 160


def test_to_image_shapes_and_normalisation():
    spec = np.full((128, 300), -80.0, dtype=np.float32)
    spec[:10] = 0.0  # loud low bands
    img = to_image(spec, size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert img.shape == (3, 224, 224)
    assert torch.allclose(img[0], img[2])
    assert img.min() == pytest.approx(-1.0) and img.max() == pytest.approx(1.0)
    # low frequencies end up at the bottom of the image
    assert img[0, -1].mean() > img[0, 0].mean()
    batch = to_image(np.stack([spec, spec]), size=96)
    assert batch.shape == (2, 3, 96, 96)


def test_to_image_rejects_bad_shape():
    with pytest.raises(EmovoxError, match="shape"):
        to_image(np.zeros(10))


def test_spectrogram_is_deterministic():
    y = tone(200.0, 5.0)
    cfg = FeatureConfig()
    assert np.array_equal(spectrogram(y, cfg), spectrogram(y, cfg))
