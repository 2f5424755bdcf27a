"""emovox batch: Parquet output, bad files as rows, manifests, resuming after an interruption."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pyarrow")

from emovox.batch import local as batch_mod  # noqa: E402
from emovox.batch import done_keys, read_dataset, run_batch  # noqa: E402
from emovox.inference.recognizer import EmotionRecognizer  # noqa: E402

from helpers_models import quiet, tone_model, tone_signal  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> EmotionRecognizer:
    return EmotionRecognizer.load(tone_model(tmp_path_factory.mktemp("batch-model")))


@pytest.fixture()
def archive(tmp_path) -> tuple[Path, dict[str, str]]:
    """12 tone clips (known labels), a corrupt file, a noise file; returns the folder and path -> expected label."""
    root = tmp_path / "archive"
    truth: dict[str, str] = {}
    for k in range(12):
        emo = ("angry", "neutral", "sad")[k % 3]
        p = root / f"day{k % 2}" / f"{k:02d}_{emo}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, tone_signal(emo, 1.2, seed=k), SR)
        truth[str(p)] = emo
    (root / "day0" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    sf.write(root / "day1" / "hiss.wav", 0.2 * np.random.default_rng(0).standard_normal(SR), SR)
    return root, truth


def test_one_row_per_file_with_labels_probabilities_and_errors(rec, archive, tmp_path):
    root, truth = archive
    s = run_batch(rec, [root], tmp_path / "out.parquet", progress=False)
    assert (s.inputs, s.skipped, s.annotated, s.failed, s.rows) == (14, 0, 14, 1, 14)
    t = read_dataset(tmp_path / "out.parquet").to_pylist()
    by_path = {r["path"]: r for r in t}
    assert len(by_path) == 14
    for path, emo in truth.items():
        r = by_path[path]
        assert r["label"] == emo and r["error"] is None and r["duration"] == pytest.approx(1.2, abs=0.01)
        assert sum(r[f"prob_{lab}"] for lab in rec.labels) == pytest.approx(1.0, abs=1e-5)
        assert r["size"] > 0 and r["mtime_ns"] > 0 and r["model"].startswith("efficientnet_lite0:")
    broken = next(r for p, r in by_path.items() if p.endswith("broken.wav"))
    assert broken["label"] is None and "not a readable audio file" in broken["error"] and broken["no_speech"] is False
    hiss = next(r for p, r in by_path.items() if p.endswith("hiss.wav"))
    assert hiss["label"] is None and hiss["no_speech"] is True and "no speech" in hiss["error"]
    assert not list((tmp_path / "out.parquet").glob(".*.tmp"))


def test_matches_emovox_predict(rec, archive, tmp_path):
    root, truth = archive
    run_batch(rec, [root], tmp_path / "o", progress=False)
    rows = {r["path"]: r for r in read_dataset(tmp_path / "o").to_pylist()}
    for path in truth:
        p = rec.predict(path)
        assert rows[path]["label"] == p.label
        for lab in rec.labels:
            assert rows[path][f"prob_{lab}"] == pytest.approx(p.probabilities[lab], abs=1e-6)


def test_manifests_csv_parquet_and_text(rec, archive, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, truth = archive
    paths = sorted(truth)[:5]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "note"])
        w.writerows([[p, "x"] for p in paths[:3]])
    pq.write_table(pa.table({"path": paths[3:]}), tmp_path / "m.parquet")
    (tmp_path / "m.txt").write_text(f"# a list\n{paths[0]}\n")  # a duplicate: annotated once
    s = run_batch(rec, [tmp_path / "m.csv", tmp_path / "m.parquet", tmp_path / "m.txt"], tmp_path / "o", progress=False)
    assert s.annotated == 5
    assert sorted(read_dataset(tmp_path / "o").column("path").to_pylist()) == paths
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    with pytest.raises(Exception, match="needs a 'path' column"):
        run_batch(rec, [tmp_path / "bad.csv"], tmp_path / "o2", progress=False)


def test_resume_after_an_interruption_gives_every_input_once(rec, archive, tmp_path, monkeypatch):
    root, truth = archive
    out = tmp_path / "o"
    real = batch_mod._file_rows

    def crash_after_seven(*a, **kw):
        for k, rows in enumerate(real(*a, **kw)):
            if k == 7:
                raise KeyboardInterrupt  # the user pressed Ctrl-C, or the machine went away
            yield rows

    monkeypatch.setattr(batch_mod, "_file_rows", crash_after_seven)
    with pytest.raises(KeyboardInterrupt):
        run_batch(rec, [root], out, chunk=3, progress=False)
    monkeypatch.setattr(batch_mod, "_file_rows", real)
    assert len(done_keys(out)) == 6  # two chunks of 3 made it; the chunk in flight is lost, nothing half-written
    s = run_batch(rec, [root], out, chunk=3, progress=False)
    assert (s.skipped, s.annotated) == (6, 8)
    paths = read_dataset(out).column("path").to_pylist()
    assert len(paths) == 14 and len(set(paths)) == 14
    again = run_batch(rec, [root], out, progress=False)
    assert (again.skipped, again.annotated, again.rows) == (14, 0, 0)
    changed = sorted(truth)[0]
    sf.write(changed, tone_signal("sad", 1.5), SR)  # a changed file (size and mtime) is annotated again
    assert run_batch(rec, [root], out, progress=False).annotated == 1


def test_segments_rows_and_cli(rec, tmp_path, capsys):
    from emovox.cli import main

    y = np.concatenate([tone_signal("angry", 3.0), quiet(2.0), tone_signal("sad", 3.0)])
    sf.write(tmp_path / "talk.wav", y, SR)
    model = tone_model(tmp_path)
    assert main(["batch", "--model", str(model), "--segments", "--vad", "energy", "--quiet", str(tmp_path / "talk.wav"), "--out", str(tmp_path / "seg")]) == 0
    assert "1 annotated" in capsys.readouterr().out
    rows = read_dataset(tmp_path / "seg").to_pylist()
    assert [r["label"] for r in rows] == ["angry", "sad"] and rows[0]["start"] < rows[1]["start"]
    assert main(["batch", "--model", str(model), "--quiet", str(tmp_path / "talk.wav"), "--out", str(tmp_path / "seg")]) == 2
    assert "other columns" in capsys.readouterr().err


def test_urls_in_and_out_through_fsspec(rec, archive, tmp_path):
    """Inputs and the dataset behind fsspec URLs (an in-memory store standing in for s3:// or gs://)."""
    import io

    fsspec = pytest.importorskip("fsspec")
    from emovox.audio import load_audio
    from emovox.errors import AudioError

    root, truth = archive
    mem = fsspec.filesystem("memory")
    picked = sorted(truth)[:4]
    for p in picked:
        mem.pipe(f"/calls/{Path(p).name}", Path(p).read_bytes())
    mem.pipe("/calls/broken.wav", b"RIFF0000WAVEjunk")
    mem.pipe("/calls/.hidden/x.wav", Path(picked[0]).read_bytes())
    buf = io.BytesIO()
    sf.write(buf, tone_signal("angry", 1.0), SR, format="FLAC")
    mem.pipe("/calls/sub/late.flac", buf.getvalue())
    try:
        s = run_batch(rec, ["memory://calls/"], "memory://out.parquet", progress=False)
        assert (s.inputs, s.failed) == (6, 1)
        rows = {r["path"]: r for r in read_dataset("memory://out.parquet").to_pylist()}
        assert set(rows) == {f"memory://calls/{Path(p).name}" for p in picked} | {"memory://calls/broken.wav", "memory://calls/sub/late.flac"}
        for p in picked:
            r = rows[f"memory://calls/{Path(p).name}"]
            assert r["label"] == truth[p] and r["size"] == Path(p).stat().st_size
            assert r["prob_" + truth[p]] == pytest.approx(rec.predict(p).probabilities[truth[p]], abs=1e-6)
        assert rows["memory://calls/sub/late.flac"]["label"] == "angry"
        assert "not a readable audio file" in rows["memory://calls/broken.wav"]["error"]
        assert run_batch(rec, ["memory://calls/"], "memory://out.parquet", progress=False).skipped == 6
        with pytest.raises(AudioError, match="memory://calls/nope.wav: file not found"):
            load_audio("memory://calls/nope.wav")
        # file:// URLs are local paths
        assert run_batch(rec, [f"file://{picked[0]}"], tmp_path / "f", progress=False).annotated == 1
        assert read_dataset(tmp_path / "f").column("path").to_pylist() == [picked[0]]
    finally:
        mem.rm("/", recursive=True)
