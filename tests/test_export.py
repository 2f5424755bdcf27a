"""ONNX export and the ONNX Runtime engine: agreement with PyTorch, int8, engine choice, CLI, errors."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from emovox import EmotionRecognizer  # noqa: E402
from emovox.cli import main  # noqa: E402
from emovox.inference.engine import INT8_FILE, ONNX_FILE, OnnxEngine, TorchEngine, select_engine  # noqa: E402
from emovox.errors import ModelError  # noqa: E402
from emovox.model import edit_config  # noqa: E402
from emovox.inference.export import compare, export_onnx  # noqa: E402
from emovox.features import signal_features, to_image  # noqa: E402
from emovox.model import EmotionClassifier, load_model, save_model  # noqa: E402
from emovox.inference.recognizer import DEFAULT_MODEL  # noqa: E402

from conftest import TONES, tone  # noqa: E402
from helpers_models import random_model  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random model folder with model.onnx and model.int8.onnx (seeded: the int8 check is then reproducible)."""
    torch.manual_seed(0)
    folder = random_model(tmp_path_factory.mktemp("export"))
    export_onnx(folder, quantize=True)
    return folder


def copy_model(src, dst, onnx: bool = True):
    """A copy of a model folder, with or without its ONNX files."""
    shutil.copytree(src, dst, ignore=None if onnx else shutil.ignore_patterns("*.onnx"))
    return dst


def spectrogram_images(n: int, size: int, model, seed: int = 0) -> np.ndarray:
    """Images as the recognizer makes them, from random spectrogram-like arrays."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 101)
    specs = [-80 + 80 * np.clip(rng.uniform(0, 1, (128, 1)) * np.abs(np.sin(rng.uniform(1, 8) * 6.3 * t))
                                + 0.2 * rng.standard_normal((128, 101)), 0, 1) for _ in range(n)]
    return to_image(np.stack(specs).astype(np.float32), size, model.encoders[0].input_spec.mean, model.encoders[0].input_spec.std).numpy()


def tone_specs(features, n: int = 4):
    names = list(TONES)
    return [signal_features(tone(*TONES[names[i % len(names)]], seed=i), 16000, features) for i in range(n)]


def test_export_agrees_with_torch_at_several_batch_and_image_sizes(exported):
    model, features, _ = load_model(exported)
    diffs = compare(model, exported / ONNX_FILE, features.image_size, batches=(2, 7))  # the export itself checked 1 and 5
    assert {s for _, s in diffs} == {64, 160}
    assert max(d for d, _ in diffs.values()) < 1e-4
    engine = OnnxEngine(exported / ONNX_FILE)
    assert engine.session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert json.loads(engine.metadata["emovox.labels"]) == model.labels
    x = spectrogram_images(3, 96, model)  # a size the export never saw
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine.logits(x), ref, atol=1e-4)


def test_int8_runs_and_mostly_agrees_on_the_argmax(exported):
    model, features, _ = load_model(exported)
    engine = OnnxEngine(exported / INT8_FILE)
    assert engine.name == "onnx-int8"
    assert (exported / INT8_FILE).stat().st_size < 0.4 * (exported / ONNX_FILE).stat().st_size
    for size in (features.image_size, 160):
        x = spectrogram_images(24, size, model, seed=size)
        got = engine.logits(x)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.75


def test_bundled_default_model_runs_on_onnx_and_agrees(tmp_path, monkeypatch):
    """The bundled speech model: its encoder is exported on first use (cached), and agrees with PyTorch."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no bundled default model in this installation")
    monkeypatch.setenv("EMOVOX_CACHE", str(tmp_path / "cache"))
    clips = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac"))
    fast = EmotionRecognizer.load()
    assert fast.engine.name == "onnx-encoder" and list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    p_onnx = fast.predict_proba(clips)
    p_torch = EmotionRecognizer.load(engine="torch").predict_proba(clips)
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-3)
    with pytest.raises(ModelError, match="needs no 'emovox export'"):
        export_onnx(DEFAULT_MODEL, tmp_path / "x.onnx")


def test_recognizer_engines_agree_and_keep_the_temperature(exported, tmp_path):
    folder = copy_model(exported, tmp_path / "hot")
    edit_config(folder, lambda cfg: cfg["heads"]["file"].update(temperature=0.5))
    _, features, _ = load_model(folder)
    specs = tone_specs(features, 5)
    recs = {e: EmotionRecognizer.load(folder, engine=e) for e in ("torch", "onnx", "onnx-int8")}
    assert {e: r.engine.name for e, r in recs.items()} == {"torch": "torch", "onnx": "onnx", "onnx-int8": "onnx-int8"}
    p = {e: r.probabilities(specs, batch_size=2) for e, r in recs.items()}
    np.testing.assert_allclose(p["onnx"], p["torch"], atol=1e-4)
    assert p["onnx-int8"].shape == p["torch"].shape
    np.testing.assert_allclose(p["onnx-int8"].sum(1), 1.0, atol=1e-5)
    enc = recs["onnx"].model.encoders[0]
    logits = torch.from_numpy(recs["onnx"].engine.logits(enc.images(specs).numpy()))
    np.testing.assert_allclose(p["onnx"], torch.softmax(logits / 0.5, 1).numpy(), atol=1e-6)
    assert recs["onnx"].probabilities([]).shape == (0, 4)


def test_auto_engine_selection(exported, tmp_path, monkeypatch):
    assert EmotionRecognizer.load(exported).engine.name == "onnx"
    plain = copy_model(exported, tmp_path / "plain", onnx=False)
    assert isinstance(EmotionRecognizer.load(plain).engine, TorchEngine)
    monkeypatch.setattr("emovox.runtime.onnx.available", lambda: False)
    assert EmotionRecognizer.load(exported).engine.name == "torch"
    monkeypatch.undo()
    model, _, _ = load_model(exported)
    assert select_engine(model, exported, "torch").name == "torch"
    assert OnnxEngine(exported / ONNX_FILE, threads=1).session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ModelError, match="engine must be one of"):
        select_engine(model, exported, "tensorrt")


def test_stale_onnx_is_not_used(exported, tmp_path):
    folder = copy_model(exported, tmp_path / "retrained")
    model, features, _ = load_model(folder)
    retrained = EmotionClassifier(model.backbone, model.labels, weights=None)
    save_model(retrained, folder, features, overwrite=True)  # new weights, old model.onnx
    with pytest.warns(UserWarning, match="out of date"):
        assert EmotionRecognizer.load(folder).engine.name == "torch"
    with pytest.raises(ModelError, match=r"model\.onnx: out of date.*--overwrite"):
        EmotionRecognizer.load(folder, engine="onnx")


def test_refuses_to_overwrite(exported, tmp_path):
    with pytest.raises(ModelError, match=r"model\.onnx: already exists"):
        export_onnx(exported)
    folder = copy_model(exported, tmp_path / "m")
    (folder / ONNX_FILE).unlink()
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: already exists"):
        export_onnx(folder, quantize=True)
    assert not (folder / ONNX_FILE).exists()  # nothing written when refusing
    out = export_onnx(folder, tmp_path / "elsewhere" / "clf.onnx", quantize=True)
    assert out.is_file() and (tmp_path / "elsewhere" / "clf.int8.onnx").is_file()
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["clf.int8.onnx", "clf.onnx"]  # no temp files left
    with pytest.raises(ModelError, match="must end in .onnx"):
        export_onnx(folder, tmp_path / "clf.bin")


def test_check_catches_an_export_fixed_to_one_image_size(exported, tmp_path, monkeypatch):
    """The verification runs at a second image size: an export that only works at one size is refused."""
    import emovox.inference.export as ex

    def fixed_size(model, path, size, opset, dynamo):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), input_names=["images"], output_names=["logits"],
                              opset_version=opset, dynamo=False, dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})

    monkeypatch.setattr(ex, "_export", fixed_size)
    folder = copy_model(exported, tmp_path / "fixed", onnx=False)
    with pytest.raises(ModelError, match="160"):
        export_onnx(folder)
    assert not (folder / ONNX_FILE).exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_missing_or_corrupt_onnx_gives_clear_errors(exported, tmp_path):
    with pytest.raises(ModelError, match=r"nope\.onnx: ONNX model not found.*emovox export"):
        OnnxEngine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match=r"bad\.onnx: not a usable ONNX model"):
        OnnxEngine(bad)
    folder = copy_model(exported, tmp_path / "corrupt")
    (folder / ONNX_FILE).write_bytes((folder / ONNX_FILE).read_bytes()[:5000])  # truncated
    with pytest.raises(ModelError, match=r"model\.onnx: not a usable ONNX model"):
        EmotionRecognizer.load(folder, engine="onnx")
    with pytest.warns(UserWarning, match="not a usable ONNX model"):
        assert EmotionRecognizer.load(folder).engine.name == "torch"
    (folder / INT8_FILE).unlink()
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: ONNX model not found"):
        EmotionRecognizer.load(folder, engine="onnx-int8")
    with pytest.raises(ModelError, match="expected images of shape"):
        OnnxEngine(exported / ONNX_FILE).logits(np.zeros((2, 1, 64, 64), np.float32))


def test_cli_export_and_predict_with_onnx_engine(exported, tmp_path, capsys):
    folder = copy_model(exported, tmp_path / "cli")
    old = (folder / ONNX_FILE).stat().st_mtime_ns
    assert main(["export", str(folder), "--int8"]) == 2
    assert "model.onnx: already exists" in capsys.readouterr().err
    assert (folder / ONNX_FILE).stat().st_mtime_ns == old
    assert main(["export", str(folder), "--int8", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "max probability difference" in out and "model.int8.onnx" in out
    assert (folder / ONNX_FILE).stat().st_mtime_ns != old
    clips = []
    for i, emo in enumerate(["angry", "neutral", "sad", "angry", "sad"]):
        clips.append(tmp_path / f"clip{i}.wav")
        sf.write(clips[-1], tone(*TONES[emo], seconds=1.0, seed=10 + i), 16000)
    results = {}
    for engine in ("torch", "onnx"):
        assert main(["predict", "--model", str(folder), "--engine", engine, "--format", "json", *map(str, clips)]) == 0
        results[engine] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in results["onnx"]] == [r["label"] for r in results["torch"]]
    for a, b in zip(results["onnx"], results["torch"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    assert main(["predict", "--model", str(folder), "--engine", "onnx-int8", str(clips[0])]) == 0


def test_training_embeddings_through_onnx_runtime_match_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from emovox.features import FeatureConfig
    from emovox.model import EmotionClassifier
    from emovox.training.data import PreparedCorpus, embed

    torch.manual_seed(0)
    feats = FeatureConfig(image_size=64)
    model = EmotionClassifier("efficientnet_lite0", ["a", "b"], weights=None, features=feats).eval()
    enc = model.encoders[0]
    rng = np.random.default_rng(0)
    specs = [rng.uniform(-80, 0, (128, 101)).astype(np.float32) for _ in range(70)]  # >= 2 batches: the ONNX path
    data = PreparedCorpus([None] * 70, specs, [None] * 70, [], enc.preparer(), None)
    with torch.inference_mode():
        ref = torch.cat([enc(enc.images(specs[i : i + 32])) for i in range(0, 70, 32)])
    got = embed(model, data, progress=False)
    assert enc.session is not None  # the frozen pass ran on ONNX Runtime
    assert got.shape == (70, enc.dim)
    assert torch.allclose(got, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))
    assert enc.export_onnx(tmp_path / "body.onnx").is_file()


def test_vgg16_exports_for_its_fixed_image_size(tmp_path):
    pytest.importorskip("onnxruntime")
    from emovox.inference.export import export_onnx
    from emovox.features import FeatureConfig
    from emovox.model import EmotionClassifier, save_model

    torch.manual_seed(0)
    # 224: VGG16's 7x7 adaptive pooling is exportable only where it is a plain reshape
    d = save_model(EmotionClassifier("vgg16", ["a", "b", "c"], weights=None), tmp_path / "vgg", FeatureConfig(image_size=224))
    notes = []
    export_onnx(d, log=notes.append)
    assert any("224x224 images only" in n for n in notes)
    rec_onnx, rec_torch = EmotionRecognizer.load(d, engine="onnx"), EmotionRecognizer.load(d, engine="torch")
    specs = [np.random.default_rng(i).uniform(-80, 0, (128, 101)).astype(np.float32) for i in range(3)]
    assert np.allclose(rec_onnx.probabilities(specs), rec_torch.probabilities(specs), atol=1e-4)
