"""Speech encoders (transformers) as backbones: tiny random encoders saved here, plus the real Whisper tiny.en weights."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, tone

pytest.importorskip("transformers")

from emovox.encoders.speech import WEIGHTS_ENV, SpeechEncoder, is_speech_encoder, resolve_source  # noqa: E402
from emovox.errors import EmovoxError  # noqa: E402
from emovox.identity import digest  # noqa: E402
from emovox.runtime.accelerate import accelerate  # noqa: E402
from emovox.errors import ModelError  # noqa: E402

WHISPER_DIR = SHARED_DATA.parent / "models" / "whisper-tiny.en-encoder"
_tiny: dict[str, Path] = {}


def tiny_encoder(kind: str, root: Path) -> Path:
    """A randomly initialised transformers encoder of family ``kind`` saved as a hub-style folder (built once)."""
    if kind in _tiny:
        return _tiny[kind]
    import transformers as tf

    torch.manual_seed(0)
    folder = root / f"tiny-{kind}"
    if kind == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        cfg = tf.WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, num_mel_bins=80,
                               decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=1500)
        WhisperEncoder(cfg).save_pretrained(folder)
        tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    else:
        common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(16, 16),
                      conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
        cfg = {"wav2vec2": tf.Wav2Vec2Config, "wavlm": tf.WavLMConfig, "hubert": tf.HubertConfig}[kind](**common)
        tf.AutoModel.from_config(cfg).save_pretrained(folder)
        tf.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    _tiny[kind] = folder
    return folder


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("encoders")


def test_names_and_sources(tmp_path, monkeypatch):
    assert is_speech_encoder("whisper_tiny_en") and is_speech_encoder("hf:microsoft/wavlm-base-plus")
    assert not is_speech_encoder("efficientnet_lite0")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert resolve_source("whisper_tiny_en") == "openai/whisper-tiny.en"  # the hub, for users who are online
    assert resolve_source("hf:facebook/hubert-base-ls960") == "facebook/hubert-base-ls960"
    local = tmp_path / "weights" / "whisper-tiny.en-encoder"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "weights"))
    assert resolve_source("whisper_tiny_en") == str(local)  # the tool-wide folder of local copies wins
    assert resolve_source("whisper_tiny_en", tmp_path) == str(tmp_path)  # an explicit folder wins over both
    with pytest.raises(ModelError, match="transformers folder"):
        resolve_source("whisper_tiny_en", tmp_path / "missing")
    with pytest.raises(ModelError, match="unknown speech encoder"):
        resolve_source("whisper_huge")


def test_unreachable_hub_names_the_way_out(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: no network wait here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ModelError, match="--weights DIR"):
        SpeechEncoder.pretrained("hf:emovox-test/no-such-encoder")


@pytest.mark.parametrize("kind", ["whisper", "wav2vec2", "wavlm", "hubert"])
def test_tiny_encoders_pool_every_layer(kind, tiny_root):
    enc = SpeechEncoder.pretrained(f"hf:{tiny_encoder(kind, tiny_root)}")
    n_states = 2 + 2 if kind == "whisper" else 2 + 1  # whisper: convs, 2 layers, final norm; others: input + 2 layers
    assert enc.dim == 2 * 16 * n_states
    short, long = tone(200.0, 5.0, seconds=0.7), tone(200.0, 5.0, seconds=2.3)
    a, b = enc.encode_one(short), enc.encode_one(long)
    assert a.shape == b.shape == (enc.dim,) and np.isfinite(a).all() and np.isfinite(b).all()
    assert not np.allclose(a, b)
    # The standard deviations over time are non-negative; the means are not all zero.
    stds = a.reshape(n_states, 2, 16)[:, 1]
    assert (stds >= 0).all() and np.abs(a.reshape(n_states, 2, 16)[:, 0]).sum() > 0
    # A very short clip is padded to the minimum rather than failing in the convolutions.
    assert np.isfinite(enc.encode_one(tone(200.0, 5.0, seconds=0.03))).all()


def test_whisper_runs_on_the_clip_length_with_its_own_layers(tiny_root):
    """On a full 30-s input, the per-layer loop gives exactly what transformers' WhisperEncoder.forward gives."""
    enc = SpeechEncoder.pretrained(f"hf:{tiny_encoder('whisper', tiny_root)}")
    x = torch.randn(1, 80, 3000)
    with torch.inference_mode():
        ours = enc.hidden_states(x)
        ref = enc.model(x, output_hidden_states=True)
    assert torch.allclose(ours[-1], ref.last_hidden_state, atol=1e-5)
    # transformers lists the input and every layer's output but the last, whose normed form ends the tuple;
    # emovox keeps the last layer's output before the norm too.
    assert len(ours) == len(ref.hidden_states) + 1
    for mine, theirs in zip(ours[:-2] + ours[-1:], ref.hidden_states):
        assert torch.allclose(mine, theirs, atol=1e-5)
    # A 1-s clip runs on 50 frames, not 1,500.
    feats, n = enc.inputs(tone(200.0, 5.0, seconds=1.0))
    assert feats.shape[-1] == 100 and n == 50
    full = SpeechEncoder.pretrained(f"hf:{tiny_encoder('whisper', tiny_root)}", context="full")
    feats, n = full.inputs(tone(200.0, 5.0, seconds=1.0))
    assert feats.shape[-1] == 3000 and n == 50
    with pytest.raises(ModelError, match="Whisper"):
        SpeechEncoder.pretrained(f"hf:{tiny_encoder('wav2vec2', tiny_root)}", context="full")


@pytest.mark.parametrize("kind", ["whisper", "wavlm"])
def test_spec_rebuilds_the_architecture(kind, tiny_root):
    enc = SpeechEncoder.pretrained(f"hf:{tiny_encoder(kind, tiny_root)}")
    spec = json.loads(json.dumps(enc.spec()))  # plain JSON, as stored in a model folder's config
    assert spec["kind"] == "speech" and spec["weights_sha256"] == digest(enc.model.state_dict()) and spec["dim"] == enc.dim
    again = SpeechEncoder.from_spec(spec)
    y = tone(150.0, 3.0, seconds=1.1)
    assert not np.allclose(again.encode_one(y), enc.encode_one(y))  # random init until the weights are loaded
    again.load_state_dict(enc.state_dict())
    np.testing.assert_allclose(again.encode_one(y), enc.encode_one(y), atol=1e-6)
    assert again.identity() == enc.identity()


@pytest.mark.parametrize("kind", ["whisper", "wavlm"])
def test_onnx_encoder_matches_pytorch(kind, tiny_root, tmp_path):
    pytest.importorskip("onnxruntime")
    enc = SpeechEncoder.pretrained(f"hf:{tiny_encoder(kind, tiny_root)}")
    signals = [tone(200.0, 5.0, seconds=s) for s in (0.4, 1.3, 3.7)]
    ref = [enc.encode_one(y) for y in signals]
    path = tmp_path / "onnx" / f"{enc.identity()}.onnx"
    assert accelerate(enc, "onnx", cache_dir=tmp_path) == "onnx"
    assert path.is_file() and enc.session is not None
    for y, r in zip(signals, ref):
        np.testing.assert_allclose(enc.encode_one(y), r, rtol=1e-3, atol=1e-4)
    stamp = path.stat().st_mtime_ns
    accelerate(SpeechEncoder.pretrained(f"hf:{tiny_encoder(kind, tiny_root)}"), "onnx", cache_dir=tmp_path)
    assert path.stat().st_mtime_ns == stamp  # an existing export is reused, not redone


def test_int8_encoder_is_smaller_and_close_to_fp32(tiny_root, tmp_path, monkeypatch):
    """engine onnx-int8 for a speech encoder: its export with int8 weights, made once beside the fp32 one."""
    pytest.importorskip("onnxruntime")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    enc = SpeechEncoder.pretrained(f"hf:{tiny_encoder('whisper', tiny_root)}")
    signals = [tone(f0, 5.0, seconds=s) for f0, s in ((180.0, 0.6), (240.0, 1.5), (300.0, 2.4))]
    ref = np.stack([enc.encode_one(y) for y in signals])
    assert accelerate(enc, "onnx-int8", cache_dir=tmp_path) == "onnx-int8"
    fp32 = tmp_path / "onnx" / f"{enc.identity()}.onnx"
    int8 = fp32.with_name(fp32.name.replace(".onnx", ".int8.onnx"))
    assert int8.is_file() and int8.stat().st_size < fp32.stat().st_size
    got = np.stack([enc.encode_one(y) for y in signals])
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert not np.allclose(got, ref, rtol=1e-6, atol=1e-7) and (cos > 0.95).all(), cos  # quantised, still the same vectors
    assert accelerate(enc, "torch") == "torch" and enc.session is None
    assert not list(cwd.iterdir())  # the quantiser's scratch files stay out of the working directory


def test_speech_model_trains_saves_and_predicts(tiny_root, tone_corpus, tmp_path, monkeypatch):
    """A (random, tiny) speech encoder + logistic regression separates the synthetic emotions of held-out speakers,
    and the saved folder predicts exactly what the trained model did."""
    from emovox import EmotionRecognizer
    from emovox.corpora import load_folder
    from emovox.training.train import TrainConfig, train

    utts = load_folder(tone_corpus)
    cfg = TrainConfig(backbone=f"hf:{tiny_encoder('whisper', tiny_root)}", solver="logreg", logreg_c=1.0, normalize="speaker",
                      split="speaker", test_speakers=("s4",), val_speakers=("s3",))
    cache = tmp_path / "cache"
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=cache, progress=False, log=lambda m: None)
    assert summary["metrics"]["accuracy"] > 0.6  # 3 classes: chance is 1/3
    assert list((cache / "vectors").glob("*/*"))  # pooled vectors cached by encoder identity
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    (speech,) = config["encoders"]
    assert speech["kind"] == "speech" and len(speech["weights_sha256"]) == 64 and config["versions"]["transformers"]

    monkeypatch.setenv("EMOVOX_CACHE", str(cache))
    rec = EmotionRecognizer.load(tmp_path / "run" / "model")  # the encoder runs on ONNX Runtime, exported on first use
    assert rec.engine.name == "onnx-encoder" and list((cache / "onnx").glob("*.onnx"))
    assert EmotionRecognizer.load(tmp_path / "run" / "model", engine="torch").engine.name == "torch"
    files = [u.path for u in utts if u.speaker == "s4"]
    preds = rec.predict(files)
    acc = np.mean([p.label == u.emotion for p, u in zip(preds, [u for u in utts if u.speaker == "s4"])])
    assert acc == pytest.approx(summary["metrics"]["accuracy"])
    same = rec.predict(files, same_speaker=True)
    assert len(same) == len(files)
    signal = tone(320.0, 9.0, seconds=1.2, seed=5)
    p = rec.predict(signal, sample_rate=16000)
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    from emovox.training.evaluate import evaluate

    m = evaluate(rec, utts, workers=1, use_cache=False, progress=False)
    assert m["n"] == len(utts) and m["accuracy"] > 0.6


def test_speech_encoder_is_frozen_only(tiny_root):
    from emovox.model import EmotionClassifier

    with pytest.raises(ModelError, match="frozen"):
        EmotionClassifier(f"hf:{tiny_encoder('whisper', tiny_root)}", ["a", "b"], finetune="all")


@pytest.mark.skipif(not WHISPER_DIR.is_dir(), reason="shared Whisper tiny.en weights not present")
def test_real_whisper_separates_emotions_of_unseen_actors(ravdess_dir, tmp_path, monkeypatch):
    """The real pretrained encoder, found through $EMOVOX_WEIGHTS: trained on 6 RAVDESS actors, tested on 2 others."""
    from emovox.corpora import load_corpus
    from emovox.training.train import TrainConfig, train

    monkeypatch.setenv(WEIGHTS_ENV, str(WHISPER_DIR.parent))
    enc = SpeechEncoder.pretrained("whisper_tiny_en")
    assert enc.hub_id == "openai/whisper-tiny.en" and enc.dim == 4608
    actors = {"01", "02", "03", "04", "05", "06", "07", "08"}
    utts = [u for u in load_corpus("ravdess", ravdess_dir) if u.speaker in actors]
    cfg = TrainConfig(backbone="whisper_tiny_en", solver="logreg", split="speaker", test_speakers=("07", "08"),
                      val_speakers=("06",))
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    # 8 emotions: chance is 12.5 %; the frozen encoder with 5 training actors gets well past it.
    assert summary["metrics"]["accuracy"] > 0.45, summary["metrics"]["accuracy"]


def _whisper_base_dir() -> Path | None:
    """A local Whisper base encoder folder (built by ../shared/tools/whisper-base/fetch.sh), if there is one."""
    for base in (os.environ.get("EMOVOX_TEST_WHISPER_BASE"), os.environ.get(WEIGHTS_ENV)):
        if base:
            for d in (Path(base), Path(base) / "whisper-base-encoder"):
                if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
                    return d
    return None


@pytest.mark.skipif(_whisper_base_dir() is None, reason="no local Whisper base folder ($EMOVOX_WEIGHTS/whisper-base-encoder)")
def test_real_whisper_base_with_tiny_en_separates_emotions_of_unseen_actors(ravdess_dir, tmp_path, monkeypatch):
    """Whisper base (multilingual), named and found through $EMOVOX_WEIGHTS, fused with tiny.en; ONNX agrees."""
    from emovox import EmotionRecognizer
    from emovox.corpora import load_corpus
    from emovox.training.train import TrainConfig, train

    if not WHISPER_DIR.is_dir():
        pytest.skip("shared Whisper tiny.en weights not present")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "whisper-base-encoder").symlink_to(_whisper_base_dir())
    (weights / "whisper-tiny.en-encoder").symlink_to(WHISPER_DIR)
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    monkeypatch.setenv("EMOVOX_CACHE", str(tmp_path / "cache"))
    enc = SpeechEncoder.pretrained("whisper_base")
    assert enc.hub_id == "openai/whisper-base" and enc.dim == 8192
    actors = {"01", "02", "03", "04", "05", "06", "07", "08"}
    utts = [u for u in load_corpus("ravdess", ravdess_dir) if u.speaker in actors]
    cfg = TrainConfig(encoders=("whisper_tiny_en", "whisper_base"), solver="logreg", split="speaker",
                      test_speakers=("07", "08"), val_speakers=("06",))
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    assert summary["metrics"]["accuracy"] > 0.45, summary["metrics"]["accuracy"]  # 8 emotions: chance 12.5 %
    clips = [u.path for u in utts if u.speaker == "08"][:6]
    fast = EmotionRecognizer.load(tmp_path / "run" / "model")
    assert fast.engine.name == "onnx-encoder"
    np.testing.assert_allclose(fast.predict_proba(clips),
                               EmotionRecognizer.load(tmp_path / "run" / "model", engine="torch").predict_proba(clips), atol=2e-3)


def test_training_on_timeline_cuts(tiny_root, tone_corpus, tmp_path):
    """Every training file also joins as the timeline cuts it (its speech only), as a voice of its own for speaker
    normalisation; the model still learns, and the cut of a real clip drops its room tone but keeps its speech."""
    from emovox.audio import load_audio
    from emovox.audio.vad import speech_regions
    from emovox.corpora import load_folder
    from emovox.training.augment import CUT_SUFFIX, cut_signal
    from emovox.training.train import TrainConfig, train

    clip = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac"))[0]
    whole, cut = load_audio(clip, 16000), cut_signal(clip, 16000)
    regions = speech_regions(whole, 16000, vad="auto")
    assert 0.3 * whole.size < cut.size < whole.size - 0.5 * 16000  # about a second of room tone gone
    assert cut.size == pytest.approx((regions[-1][1] - regions[0][0]) * 16000, abs=2)

    utts = load_folder(tone_corpus)
    lines: list[str] = []
    cfg = TrainConfig(backbone=f"hf:{tiny_encoder('whisper', tiny_root)}", solver="logreg", logreg_c=1.0, normalize="speaker",
                      split="speaker", test_speakers=("s4",), val_speakers=("s3",), timeline_cuts=True)
    summary = train(utts, tmp_path / "run", cfg, workers=1, cache_dir=tmp_path / "cache", progress=False, log=lines.append)
    n_train = sum(u.speaker in ("s1", "s2") for u in utts)
    assert any(f"the timeline's cut of each training file: {{'train': {2 * n_train}" in line for line in lines), lines
    assert summary["metrics"]["accuracy"] > 0.6
    assert CUT_SUFFIX == "~aug-cut"  # cuts train with their speaker in out-of-fold calibration and are never scored
    with pytest.raises(EmovoxError, match="frozen backbone"):
        TrainConfig(timeline_cuts=True, finetune="last")
