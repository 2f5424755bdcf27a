"""Models on the Hugging Face hub: ``emovox push`` and ``hf:USER/REPO[@REVISION]`` loads, against a local stand-in
for the hub's HTTP API (tests/helpers_hub.py) driven by the real ``huggingface_hub`` client, which also lays out
the cache that offline loads read."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

pytest.importorskip("huggingface_hub")

from huggingface_hub import HfApi  # noqa: E402
from huggingface_hub import constants as hf_constants  # noqa: E402

from emovox.cli import build_parser, main  # noqa: E402
from emovox.errors import ModelError  # noqa: E402
from emovox.inference.recognizer import EmotionRecognizer  # noqa: E402
from emovox.model import hub  # noqa: E402

from helpers_hub import running_hub  # noqa: E402
from helpers_models import random_model, tone_signal  # noqa: E402

SR = 16000
A_LABELS = ("angry", "happy", "neutral", "sad")
B_LABELS = ("angry", "calm", "sad")


def folder_state(path: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``path``: its sha256 and modification time (to show a folder was not touched)."""
    return {str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


def front_matter(card: str) -> dict:
    m = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert m, card[:200]
    return yaml.safe_load(m.group(1))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two small models with different labels; A sits in a run folder with its test scores, as `emovox train` writes."""
    root = tmp_path_factory.mktemp("hub-models")
    run = root / "run"
    shutil.copytree(random_model(root / "a", A_LABELS), run / "model")
    (run / "metrics.json").write_text(json.dumps({"n": 40, "accuracy": 0.875, "uar": 0.8625, "macro_f1": 0.85}))
    return {"a": run / "model", "b": random_model(root / "b", B_LABELS)}


@pytest.fixture(scope="module")
def fake_hub():
    """The stand-in hub, reachable whatever the environment says; uploads go through the LFS batch API (the
    stand-in does not speak Xet)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        mp.delenv(name, raising=False)
    with running_hub() as fake:
        yield fake
    mp.undo()


@pytest.fixture(scope="module")
def published(models, fake_hub, tmp_path_factory):
    """user/emo: A on main, then B on main, then A on branch 'first'; all three downloaded into a cache."""
    states = {k: folder_state(p) for k, p in models.items()}
    kw = {"token": fake_hub.token, "hub_endpoint": fake_hub.url}
    a = hub.push(models["a"], "user/emo", license="mit", **kw)
    b = hub.push(models["b"], "user/emo", **kw)
    first = hub.push(models["a"], "user/emo", revision="first", message="A again", **kw)
    cache = tmp_path_factory.mktemp("hf-cache")
    for spec in (f"hf:user/emo@{a.commit}", "hf:user/emo", "hf:user/emo@first"):
        hub.download(spec, cache=cache, hub_endpoint=fake_hub.url)
    return {"a": a, "b": b, "first": first, "cache": cache, "states": states}


@pytest.fixture()
def offline(published, monkeypatch):
    """The environment of an offline machine whose Hugging Face cache holds user/emo."""
    monkeypatch.setenv("HF_HUB_CACHE", str(published["cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    return published["cache"]


def probabilities(rec: EmotionRecognizer) -> np.ndarray:
    p = rec.predict(tone_signal("angry", 1.2), sample_rate=SR)
    return np.array([p.probabilities[lab] for lab in rec.labels])


# --------------------------------------------------------------------------- push


def test_push_uploads_the_model_files_and_a_card_and_leaves_the_folder_alone(models, fake_hub, published):
    a = published["a"]
    assert a.files == ("config.json", "model.safetensors", "README.md") and a.card == "generated"
    files = fake_hub.files("user/emo", a.commit)
    assert set(files) == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    assert files["config.json"] == (models["a"] / "config.json").read_bytes()
    assert files["model.safetensors"] == (models["a"] / "model.safetensors").read_bytes()
    record = next(c for c in fake_hub.commits if c["commit"] == a.commit)
    assert ("lfsFile", "model.safetensors") in record["lines"] and ("file", "config.json") in record["lines"]
    assert record["header"]["summary"] == "emovox model: angry, happy, neutral, sad"

    card = files["README.md"].decode()
    meta = front_matter(card)
    assert meta["library_name"] == "emovox" and meta["license"] == "mit"
    assert {"audio-classification", "speech-emotion-recognition"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "audio-classification"
    assert meta["emovox"]["labels"] == list(A_LABELS) and meta["emovox"]["format"] == "emovox-model/3"
    assert [e["name"] for e in meta["emovox"]["encoders"]] == ["efficientnet_lite0"]
    assert meta["emovox"]["evaluation"]["file head"] == {"n": 40, "accuracy": 0.875, "uar": 0.8625, "macro_f1": 0.85}
    assert 'EmotionRecognizer.load("hf:user/emo")' in card and "emovox predict --model hf:user/emo" in card
    assert card in fake_hub.validated  # the client had the hub check the card's metadata

    b_meta = front_matter(fake_hub.files("user/emo", published["b"].commit)["README.md"].decode())
    assert "license" not in b_meta and "evaluation" not in b_meta["emovox"] and b_meta["emovox"]["labels"] == list(B_LABELS)
    # branch 'first' started from main (B) and now holds A
    assert published["first"].revision == "first" and published["first"].spec == "hf:user/emo@first"
    assert fake_hub.files("user/emo", "first")["config.json"] == (models["a"] / "config.json").read_bytes()
    assert fake_hub.head("user/emo", "main") == published["b"].commit
    for k, p in models.items():
        assert folder_state(p) == published["states"][k]  # nothing written into the user's folders


def test_push_takes_the_folders_own_card_and_drops_onnx_files_the_folder_no_longer_has(models, fake_hub, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(models["b"], folder)
    own = "---\nlibrary_name: emovox\nlicense: apache-2.0\n---\n\n# My card\n"
    (folder / "MODEL_CARD.md").write_text(own)
    (folder / "model.onnx").write_bytes(b"not really onnx")
    (folder / "notes.pkl").write_bytes(b"\x80\x04junk")  # never uploaded: not a model file
    before = folder_state(folder)
    kw = {"token": fake_hub.token, "hub_endpoint": fake_hub.url}
    r = hub.push(folder, "user/own-card", **kw)
    assert r.card == "MODEL_CARD.md" and r.files == ("config.json", "model.safetensors", "model.onnx", "README.md")
    files = fake_hub.files("user/own-card")
    assert files["README.md"].decode() == own and "model.onnx" in files and "notes.pkl" not in files
    (folder / "model.onnx").unlink()
    hub.push(folder, "user/own-card", **kw)
    assert "model.onnx" not in fake_hub.files("user/own-card")
    before.pop("model.onnx")
    assert folder_state(folder) == before and not (folder / "README.md").exists()


def test_push_refuses_a_folder_that_does_not_load_and_reports_a_missing_token(models, fake_hub, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(models["b"], broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["labels"] = cfg["labels"][::-1]
    (broken / "config.json").write_text(json.dumps(cfg))
    n = len(fake_hub.requests)
    with pytest.raises(ModelError, match="digest mismatch"):
        hub.push(broken, "user/broken", token=fake_hub.token, hub_endpoint=fake_hub.url)
    assert len(fake_hub.requests) == n  # refused before any request
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ModelError, match=r"push to user/x: .*(HF_TOKEN|--token)"):
        hub.push(models["b"], "user/x", hub_endpoint=fake_hub.url)
    with pytest.raises(ModelError, match="not a hub repository id"):
        hub.push(models["b"], "user/x/y", token=fake_hub.token, hub_endpoint=fake_hub.url)


# --------------------------------------------------------------------------- load


def test_offline_load_from_the_cache_matches_the_folder(models, published, offline, fake_hub):
    n = len(fake_hub.requests)
    rec = EmotionRecognizer.load("hf:user/emo")
    assert len(fake_hub.requests) == n  # offline: the cache only
    local = EmotionRecognizer.load(models["b"])
    assert rec.labels == list(B_LABELS)
    np.testing.assert_allclose(probabilities(rec), probabilities(local), rtol=1e-5, atol=1e-6)
    commit = published["b"].commit
    assert rec.origin == {"path": f"hf:user/emo@{commit}", "engine": "auto", "ood_gate": True}  # workers load exactly this commit
    path = Path(offline) / "models--user--emo" / "snapshots" / commit
    assert sorted(os.listdir(path)) == ["README.md", "config.json", "model.safetensors"]


def test_revision_pins_the_snapshot(models, published, offline):
    a = EmotionRecognizer.load(f"hf:user/emo@{published['a'].commit}")
    assert a.labels == list(A_LABELS)
    np.testing.assert_allclose(probabilities(a), probabilities(EmotionRecognizer.load(models["a"])), rtol=1e-5, atol=1e-6)
    assert EmotionRecognizer.load("hf:user/emo@first").labels == list(A_LABELS)
    assert EmotionRecognizer.load("hf:user/emo@main").labels == list(B_LABELS)
    with pytest.raises(ModelError, match=r"hf:user/emo@v9: revision v9 is not in the Hugging Face cache .*first.*main.*HF_HUB_OFFLINE"):
        EmotionRecognizer.load("hf:user/emo@v9")


def test_a_repository_absent_from_the_cache_offline_is_a_clear_error(offline):
    with pytest.raises(ModelError, match=r"hf:nobody/nothing: not in the Hugging Face cache \(.*\) and offline mode is on \(HF_HUB_OFFLINE=1\)"):
        EmotionRecognizer.load("hf:nobody/nothing")


def test_a_changed_cached_file_names_the_repository_and_the_file(published, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(published["cache"], cache, symlinks=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = published["b"].commit
    snap = cache / "models--user--emo" / "snapshots" / commit
    cfg = json.loads((snap / "config.json").read_text())
    cfg["labels"] = cfg["labels"][::-1]  # the labels reordered: the weights would answer for the wrong emotions
    (snap / "config.json").resolve().write_text(json.dumps(cfg))  # through the link, as an editor would
    with pytest.raises(ModelError, match=rf"hf:user/emo \(commit {commit[:12]}\): the cached config.json is not the file the repository holds \(its git-sha1"):
        hub.load_hub_model("hf:user/emo", cache=cache)
    # a cache without links (copies) has no checksum in the name: the config's weights digest catches it
    (snap / "config.json").unlink()
    (snap / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"hf:user/emo \(commit .*\): its config or weights differ .*digest mismatch.*config.json.*model.safetensors"):
        hub.load_hub_model("hf:user/emo", cache=cache)
    a_weights = (cache / "models--user--emo" / "snapshots" / published["a"].commit / "model.safetensors").resolve()
    data = bytearray(a_weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte
    a_weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"hf:user/emo@[0-9a-f]{40}: the cached model.safetensors is not the file the repository holds \(its sha256"):
        hub.load_hub_model(f"hf:user/emo@{published['a'].commit}", cache=cache)
    (snap / "model.safetensors").unlink()  # a file missing from the cached copy
    with pytest.raises(ModelError, match=r"hf:user/emo.*model\.safetensors"):
        hub.load_hub_model("hf:user/emo", cache=cache)


def test_inconsistent_missing_or_foreign_files_in_the_repository(models, fake_hub, tmp_path):
    api = HfApi(endpoint=fake_hub.url, token=fake_hub.token)
    cfg = json.loads((models["a"] / "config.json").read_text())
    for repo in ("user/swapped", "user/config-only", "user/transformers", "user/extras"):
        api.create_repo(repo)
    swapped = dict(cfg, labels=cfg["labels"][::-1])
    api.upload_file(path_or_fileobj=json.dumps(swapped).encode(), path_in_repo="config.json", repo_id="user/swapped")
    api.upload_file(path_or_fileobj=str(models["a"] / "model.safetensors"), path_in_repo="model.safetensors", repo_id="user/swapped")
    api.upload_file(path_or_fileobj=json.dumps(cfg).encode(), path_in_repo="config.json", repo_id="user/config-only")
    api.upload_file(path_or_fileobj=b'{"architectures": ["WhisperModel"], "model_type": "whisper"}', path_in_repo="config.json",
                    repo_id="user/transformers")
    api.upload_file(path_or_fileobj=str(models["a"] / "model.safetensors"), path_in_repo="model.safetensors", repo_id="user/transformers")
    kw = {"cache": tmp_path / "cache", "hub_endpoint": fake_hub.url}
    with pytest.raises(ModelError, match=r"hf:user/swapped \(commit .*\): its config or weights differ .*digest mismatch"):
        hub.load_hub_model("hf:user/swapped", **kw)
    with pytest.raises(ModelError, match=r"hf:user/config-only \(commit .*\): the repository has no model.safetensors"):
        hub.load_hub_model("hf:user/config-only", **kw)
    with pytest.raises(ModelError, match=r"hf:user/transformers .*config.json is not an emovox model config.*--encoders hf:user/transformers"):
        hub.load_hub_model("hf:user/transformers", **kw)
    with pytest.raises(ModelError, match=r"hf:nobody/nothing: no such model repository"):
        hub.load_hub_model("hf:nobody/nothing", **kw)
    with pytest.raises(ModelError, match=r"hf:user/emo@nope: the repository has no revision 'nope'"):
        hub.load_hub_model("hf:user/emo@nope", **kw)

    # pickles and other files in a repository are never downloaded
    hub.push(models["b"], "user/extras", token=fake_hub.token, hub_endpoint=fake_hub.url)
    for name in ("pytorch_model.bin", "training_args.pkl", "notes.txt"):
        api.upload_file(path_or_fileobj=b"\x80\x04K\x01.", path_in_repo=name, repo_id="user/extras")
    n = len(fake_hub.requests)
    model = hub.download("hf:user/extras", **kw)
    assert sorted(os.listdir(model.path)) == ["README.md", "config.json", "model.safetensors"]
    fetched = [p for _, p in fake_hub.requests[n:] if "/resolve/" in p]
    assert fetched and not any(p.endswith((".bin", ".pkl", ".txt", ".gitattributes")) for p in fetched)


# --------------------------------------------------------------------------- command line


def test_cli_push_then_predict_offline_from_the_cache(models, fake_hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main(["push", str(models["b"]), "user/cli"]) == 2
    assert "emovox: error: push to user/cli" in capsys.readouterr().err
    assert main(["push", str(models["b"]), "user/cli", "--token", fake_hub.token, "--message", "first model", "--private"]) == 0
    out = capsys.readouterr().out
    assert "pushed config.json, model.safetensors and a generated model card to user/cli" in out
    assert "emovox predict --model hf:user/cli FILE" in out
    assert fake_hub.repos["user/cli"].private and fake_hub.commits[-1]["header"]["summary"] == "first model"
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)  # the token from the environment
    assert main(["push", str(models["a"]), "user/cli", "--branch", "dev"]) == 0
    assert "--model hf:user/cli@dev FILE" in capsys.readouterr().out

    clip = tmp_path / "clip.wav"
    sf.write(clip, tone_signal("sad", 1.2), SR)
    assert main(["predict", "--model", "hf:user/cli", "--format", "json", str(clip)]) == 0  # online: downloads
    online = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    n = len(fake_hub.requests)
    assert main(["predict", "--model", "hf:user/cli", "--format", "json", str(clip)]) == 0
    offline_out = json.loads(capsys.readouterr().out)
    assert len(fake_hub.requests) == n
    assert main(["predict", "--model", str(models["b"]), "--format", "json", str(clip)]) == 0
    local = json.loads(capsys.readouterr().out)
    assert online == offline_out and offline_out["probabilities"] == pytest.approx(local["probabilities"], abs=1e-4)
    assert main(["predict", "--model", "hf:user/cli@dev", "--format", "json", str(clip)]) == 2  # never downloaded
    assert "hf:user/cli@dev: revision dev is not in the Hugging Face cache" in capsys.readouterr().err
    assert main(["predict", "--model", "hf:someone/else", str(clip)]) == 2
    assert "hf:someone/else: not in the Hugging Face cache" in capsys.readouterr().err

    # serve and batch take the same model argument and load it the same way
    args = build_parser().parse_args(["serve", "--model", "hf:user/cli@abc"])
    assert args.model_option == "hf:user/cli@abc"
    if __import__("importlib").util.find_spec("pyarrow") is not None:
        assert main(["batch", "--model", "hf:user/cli", "--quiet", str(clip), "--out", str(tmp_path / "out.parquet")]) == 0
        assert "1 annotated" in capsys.readouterr().out
