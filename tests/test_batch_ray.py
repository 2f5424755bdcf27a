"""emovox batch on Ray Data: the same rows as the local engine, one dataset for both, resumable."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")

from emovox.batch import read_dataset, run_batch  # noqa: E402
from emovox.inference.recognizer import EmotionRecognizer  # noqa: E402
from emovox.storage import text_name  # noqa: E402

from helpers_models import quiet, tone_model, tone_signal  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs for this module's tests, shut down after them."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.load(tone_model(tmp_path_factory.mktemp("ray-model")))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """13 tone clips (known labels; one named in bytes that are not UTF-8), a corrupt file, a noise file and a long recording with two emotions."""
    root = tmp_path_factory.mktemp("archive")
    truth: dict[str, str] = {}
    for k in range(12):
        emo = ("angry", "neutral", "sad")[k % 3]
        p = root / f"{k:02d}_{emo}.wav"
        sf.write(p, tone_signal(emo, 1.0 + 0.1 * k, seed=k), SR)
        truth[str(p)] = emo
    odd = root / os.fsdecode(b"12_sad_caf\xe9.wav")  # a name that is not valid UTF-8
    sf.write(os.fsencode(odd), tone_signal("sad", 1.3, seed=12), SR)
    truth[text_name(odd)] = "sad"
    (root / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    sf.write(root / "hiss.wav", 0.2 * np.random.default_rng(0).standard_normal(SR), SR)
    return root, truth


def _rows(out: Path) -> dict[str, dict]:
    rows = read_dataset(out).to_pylist()
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "an input appears twice"
    return by_path


def _assert_same_row(ra: dict, rb: dict) -> None:
    """Equal rows: floats (probabilities, confidence, times) within 1e-5, everything else exactly."""
    assert ra.keys() == rb.keys()
    for key, va in ra.items():
        if isinstance(va, float):
            assert rb[key] == pytest.approx(va, abs=1e-5), (ra["path"], key)
        else:
            assert rb[key] == va, (ra["path"], key)


def _assert_same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for path in a:
        _assert_same_row(a[path], b[path])


def test_ray_engine_gives_the_local_engines_rows(local_ray, rec, archive, tmp_path):
    root, truth = archive
    local = run_batch(rec, [root], tmp_path / "local", progress=False)
    on_ray = run_batch(rec, [root], tmp_path / "ray", engine="ray", batch_size=4, chunk=5, progress=False)
    assert (on_ray.inputs, on_ray.annotated, on_ray.failed, on_ray.rows) == (local.inputs, local.annotated, 1, 15)
    a, b = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    _assert_same(a, b)
    assert all(b[p]["label"] == emo for p, emo in truth.items())
    assert b[str(root / "hiss.wav")]["no_speech"] is True and "not a readable audio file" in b[str(root / "broken.wav")]["error"]
    parts = sorted((tmp_path / "ray").glob("part-*.parquet"))
    assert len(parts) >= 2 and not list((tmp_path / "ray").glob(".*"))  # written in chunks, nothing temporary left


def test_ray_resumes_a_dataset_and_segments_match(local_ray, rec, archive, tmp_path, capsys):
    root, truth = archive
    first = sorted(truth)[:5]
    with open(tmp_path / "first.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path"], *[[p] for p in first]])
    out = tmp_path / "o"
    run_batch(rec, [tmp_path / "first.csv"], out, progress=False)  # a run that stopped after 5 inputs
    from emovox.cli import main

    assert main(["batch", "--engine", "ray", "--model", rec.origin["path"], "--quiet", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "15 input(s): 5 already in" in printed and "10 annotated (1 failed" in printed
    assert len(_rows(out)) == 15
    assert run_batch(rec, [root], out, engine="ray", progress=False).annotated == 0

    talk = tmp_path / "talk.wav"
    sf.write(talk, np.concatenate([tone_signal("angry", 3.0), quiet(2.0), tone_signal("sad", 3.0)]), SR)
    kw = dict(segments=True, vad="energy", progress=False)
    run_batch(rec, [talk, root / "broken.wav"], tmp_path / "seg-local", **kw)
    run_batch(rec, [talk, root / "broken.wav"], tmp_path / "seg-ray", engine="ray", **kw)
    a, b = (sorted(read_dataset(tmp_path / d).to_pylist(), key=lambda r: (r["path"], r["start"] or 0)) for d in ("seg-local", "seg-ray"))
    assert [r["label"] for r in b] == [None, "angry", "sad"]
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        _assert_same_row(ra, rb)


def test_ray_engine_needs_a_model_loaded_from_a_folder(local_ray, rec, archive, tmp_path):
    from emovox.errors import EmovoxError

    bare = EmotionRecognizer(rec.model)
    with pytest.raises(EmovoxError, match="load it from a folder"):
        run_batch(bare, [archive[0]], tmp_path / "o", engine="ray", progress=False)
