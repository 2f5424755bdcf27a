"""Known speakers: running statistics, the speaker head once enough of a speaker's recordings are in."""
import json

import numpy as np
import pytest

from emovox.cli import main
from emovox.corpora import load_folder
from emovox.errors import EmovoxError
from emovox.inference import EmotionRecognizer
from emovox.inference.speakers import RunningStats, SpeakerBook
from emovox.model import speaker_normalize


def test_running_statistics_equal_normalising_everything_at_once():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 5)) * [1, 10, 0.1, 3, 2] + [0, 5, -2, 1, 100]
    stats = RunningStats.empty(5)
    for part in np.array_split(x, [3, 4, 20]):  # uneven batches, one of a single row
        stats.add(part)
    assert stats.n == 37
    np.testing.assert_allclose(stats.normalize(x), speaker_normalize(x), atol=1e-5)


def test_a_book_is_saved_and_loaded_without_pickles(tmp_path):
    book = SpeakerBook(min_files=3)
    book.add("agent-7", np.ones((2, 4)))
    assert not book.ready("agent-7") and book.add("agent-7", np.zeros((1, 4))) == 3 and book.ready("agent-7")
    again = SpeakerBook.load(book.save(tmp_path / "s.npz"))
    assert again.min_files == 3 and again.count("agent-7") == 3
    np.testing.assert_allclose(again.normalize("agent-7", np.ones((1, 4))), book.normalize("agent-7", np.ones((1, 4))))
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(EmovoxError, match="not an emovox speaker-statistics file"):
        SpeakerBook.load(tmp_path / "bad.npz")
    with pytest.raises(EmovoxError, match="at least 2"):
        SpeakerBook(min_files=1)


@pytest.fixture(scope="module")
def speaker_model(tone_corpus, tmp_path_factory):
    """A model with a speaker-normalised head, trained on speakers s1-s3 of the tone corpus."""
    from emovox.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("speaker-model")
    cfg = TrainConfig(encoders=("egemaps",), solver="logreg", logreg_c=1.0, normalize="speaker", split="speaker",
                      test_speakers=("s4",), val_speakers=("s3",), familiarity=False)  # tones stand for voices here
    train(load_folder(tone_corpus), out / "run", cfg, workers=1, cache_dir=out / "cache", progress=False, log=lambda m: None)
    return out / "run" / "model"


def test_a_known_speaker_is_classified_by_the_speaker_head_once_enough_is_in(speaker_model, tone_corpus):
    rec = EmotionRecognizer.load(speaker_model)
    rec.speakers = SpeakerBook(min_files=4)
    files = sorted(u.path for u in load_folder(tone_corpus) if u.speaker == "s4")
    assert len(files) == 9
    heads = [rec.predict(f, speaker="s4").head for f in files]  # one at a time, as an archive grows
    assert heads == ["file"] * 3 + ["speaker"] * 6
    # once the whole archive is in, its statistics are the speaker's: the same answers as normalising it in one go
    again = rec.predict(files, speaker="s4")
    assert {p.head for p in again} == {"speaker"} and {p.speaker for p in again} == {"s4"}
    np.testing.assert_allclose([list(p.probabilities.values()) for p in again], rec.predict_proba(files, same_speaker=True),
                               atol=1e-4)
    truth = [u.emotion for u in load_folder(tone_corpus) if u.speaker == "s4"]
    truth = [e for _, e in sorted(zip([u.path for u in load_folder(tone_corpus) if u.speaker == "s4"], truth))]
    assert np.mean([p.label == t for p, t in zip(again, truth)]) > 0.6  # 3 classes: chance 1/3
    unknown = rec.predict(files[:2], speaker=[None, "s4"])
    assert unknown[0].head == "file" and unknown[0].speaker is None and unknown[1].head == "speaker"


def test_speaker_keys_from_paths_on_the_command_line(speaker_model, tone_corpus, tmp_path, capsys):
    stats = tmp_path / "speakers.npz"
    args = ["predict", "--model", str(speaker_model), "--format", "csv", "--speaker-from-path", r"/(s\d)/",
            "--speakers", str(stats), str(tone_corpus)]
    assert main(args) == 0
    rows = [r.split(",") for r in capsys.readouterr().out.strip().splitlines()]
    assert rows[0][:2] == ["file", "speaker"] and rows[0][-1] == "head" and len(rows) == 1 + 36
    assert {r[1] for r in rows[1:]} == {"s1", "s2", "s3", "s4"} and {r[-1] for r in rows[1:]} == {"file"}  # 9 each: < 10
    assert SpeakerBook.load(stats).count("s1") == 9
    assert main(args) == 0  # the archive grows: a second run starts from the saved statistics
    rows = [r.split(",") for r in capsys.readouterr().out.strip().splitlines()[1:]]
    assert {r[-1] for r in rows} == {"speaker"} and SpeakerBook.load(stats).count("s1") == 18
    assert main(["predict", "--model", str(speaker_model), "--format", "json", "--speaker", "me", str(tone_corpus / "sad" / "s1")]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["speaker"] == "me" and row["head"] == "file"
    assert main(["predict", "--model", str(speaker_model), "--speaker-from-path", "(", str(tone_corpus)]) == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_http_speaker_key_adapts_across_requests(speaker_model, tone_corpus, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from emovox.serve import create_app

    rec = EmotionRecognizer.load(speaker_model)
    rec.speakers = SpeakerBook(min_files=4)
    files = sorted(u.path for u in load_folder(tone_corpus) if u.speaker == "s4")
    with TestClient(create_app(rec, tmp_dir=tmp_path)) as c:
        heads = []
        for f in files[:5]:  # one upload per request, as a diary app would send them
            r = c.post("/v1/predict", files=[("file", (f.name, f.read_bytes(), "audio/wav"))], data={"speaker": "user-1"})
            assert r.status_code == 200, r.text
            assert r.json()["speaker"] == "user-1"
            heads.append(r.json()["head"])
        assert heads == ["file"] * 3 + ["speaker"] * 2
        r = c.post("/v1/predict?speaker=user-2", files=[("file", (files[0].name, files[0].read_bytes(), "audio/wav"))])
        assert r.json()["head"] == "file" and rec.speakers.count("user-2") == 1
        plain = c.post("/v1/predict", files=[("file", (files[0].name, files[0].read_bytes(), "audio/wav"))]).json()
        assert "head" not in plain and "speaker" not in plain
        r = c.post("/v1/predict", files=[("file", (files[0].name, files[0].read_bytes(), "audio/wav"))] * 2,
                   data={"speaker": "x", "same_speaker": "true"})
        assert r.status_code == 422 and "not both" in r.json()["detail"]
        r = c.post("/v1/predict", files=[("file", (files[0].name, files[0].read_bytes(), "audio/wav"))], data={"speaker": "k" * 300})
        assert r.status_code == 422


def _keyed_rows(out):
    from emovox.batch.local import read_dataset

    return sorted(read_dataset(out).to_pylist(), key=lambda r: r["path"])


def _same_rows(a, b, probs_atol=1e-5):
    assert [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert (x["label"], x["head"], x["speaker"]) == (y["label"], y["head"], y["speaker"]), x["path"]
        np.testing.assert_allclose([v for k, v in x.items() if k.startswith("prob_")],
                                   [v for k, v in y.items() if k.startswith("prob_")], atol=probs_atol)


def test_batch_speaker_adaptation_does_not_depend_on_file_order(speaker_model, tone_corpus, tmp_path, monkeypatch):
    """Each speaker's files are classified against its statistics over all of them: path order, shuffled, resumed
    after an interruption and extended by a second run all give the rows of ``same_speaker=True`` per speaker."""
    pytest.importorskip("pyarrow")
    import random

    import pyarrow.dataset as ds

    from emovox.batch import keyed, run_batch

    utts = sorted(load_folder(tone_corpus), key=lambda u: str(u.path))
    by_path = [(str(u.path), u.speaker) for u in utts]
    shuffled = by_path[:]
    random.Random(3).shuffle(shuffled)

    def manifest(name, rows):
        m = tmp_path / name
        m.write_text("path,voice\n" + "".join(f"{p},{k}\n" for p, k in rows))
        return m

    def run(out, rows, **kw):
        rec = EmotionRecognizer.load(speaker_model)
        rec.speakers = SpeakerBook(min_files=7)  # the threshold is kept with the dataset
        return run_batch(rec, [manifest(f"{out}.csv", rows)], tmp_path / out, speaker_column="voice", progress=False, **kw)

    run("ordered", by_path, chunk=5)
    run("shuffled", shuffled, chunk=5)
    ordered = _keyed_rows(tmp_path / "ordered")
    _same_rows(ordered, _keyed_rows(tmp_path / "shuffled"))
    assert {r["head"] for r in ordered} == {"speaker"}  # 9 files a speaker, 7 needed
    rec = EmotionRecognizer.load(speaker_model)
    for spk in ("s1", "s4"):
        mine = [r for r in ordered if r["speaker"] == spk]
        whole = rec.predict_proba([r["path"] for r in mine], same_speaker=True)
        np.testing.assert_allclose([[v for k, v in r.items() if k.startswith("prob_")] for r in mine], whole, atol=1e-4)
    truth = {str(u.path): u.emotion for u in utts}
    assert np.mean([r["label"] == truth[r["path"]] for r in ordered if r["speaker"] == "s4"]) > 0.6  # unseen voice; chance 1/3

    # cut off after its first part: the vectors were saved first, so the rerun completes it with the same rows
    from emovox.storage import PartStore

    real_write = PartStore.write
    calls = {"n": 0}

    def dying(self, table, stem):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real_write(self, table, stem)

    monkeypatch.setattr(PartStore, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        run("resumed", shuffled, chunk=1)
    monkeypatch.setattr(PartStore, "write", real_write)
    assert 0 < len(_keyed_rows(tmp_path / "resumed")) < len(by_path)
    s = run("resumed", shuffled, chunk=5)
    assert s.skipped > 0 and s.skipped + s.annotated == len(by_path)
    _same_rows(ordered, _keyed_rows(tmp_path / "resumed"))

    # an archive that grows: the first run sees 5 files a speaker (per-file head), the second the rest; the old rows
    # of every speaker are rewritten with its statistics over all 9
    first = by_path[::2]  # 4 or 5 files a speaker
    run("grown", first)
    assert {r["head"] for r in _keyed_rows(tmp_path / "grown")} == {"file"}
    s = run("grown", by_path)
    assert s.skipped == len(first) and s.annotated == len(by_path) - len(first)
    _same_rows(ordered, _keyed_rows(tmp_path / "grown"))

    # the folder is one Parquet dataset: the side file is skipped by readers
    assert (tmp_path / "grown" / keyed.SPEAKERS_FILE).is_file()
    assert ds.dataset(tmp_path / "grown", format="parquet").to_table().num_rows == len(by_path)
    pd = pytest.importorskip("pandas")
    assert len(pd.read_parquet(tmp_path / "grown")) == len(by_path)
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    assert con.execute(f"select count(*) from read_parquet('{tmp_path / 'grown'}/*.parquet')").fetchall()[0][0] == len(by_path)


def test_batch_speaker_keys_errors_and_path_patterns(speaker_model, tone_corpus, tmp_path):
    pytest.importorskip("pyarrow")
    from emovox.batch import run_batch
    from emovox.batch.keyed import LEGACY_SPEAKERS_FILE

    rec = EmotionRecognizer.load(speaker_model)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,voice\n" + "".join(f"{u.path},{u.speaker}\n" for u in load_folder(tone_corpus)))
    with pytest.raises(EmovoxError, match="needs a 'voice ' column; it has path, voice"):
        run_batch(rec, [manifest], tmp_path / "o2.parquet", speaker_column="voice ", progress=False)
    with pytest.raises(EmovoxError, match="whole files"):
        run_batch(rec, [manifest], tmp_path / "o3.parquet", speaker_column="voice", segments=True, progress=False)
    s = run_batch(rec, [tone_corpus], tmp_path / "o4.parquet", speaker_from_path=r"/(s\d)/", progress=False)
    rows = _keyed_rows(tmp_path / "o4.parquet")
    assert s.annotated == len(rows) and {r["speaker"] for r in rows} == {"s1", "s2", "s3", "s4"}
    assert rec.speakers.count("s2") == 9  # the run's statistics stay with the recognizer
    old = tmp_path / "old.parquet"
    old.mkdir()
    (old / LEGACY_SPEAKERS_FILE).write_bytes(SpeakerBook().to_bytes())
    with pytest.raises(EmovoxError, match="running speaker statistics.*new folder"):
        run_batch(rec, [manifest], old, speaker_column="voice", progress=False)


def test_one_scoring_core_for_every_face(speaker_model, tone_corpus):
    """``score`` is what predict, the timeline, live streams and batch use: the same numbers whichever way in."""
    from emovox.errors import UnknownSoundError
    from emovox.model.familiar import Familiarity

    rec = EmotionRecognizer.load(speaker_model)
    files = sorted(u.path for u in load_folder(tone_corpus) if u.speaker == "s4")
    items = [rec.featurize(f) for f in files]
    plain = rec.score(items)
    assert plain.heads == ["file"] * 9 and plain.known.all() and plain.ood is None and plain.vectors.shape == (9, rec.model.vector_dim)
    np.testing.assert_allclose(plain.probabilities, rec.predict_proba(files), atol=1e-6)
    again = rec.score(items, vectors=plain.vectors)  # vectors computed before (a live stream encodes ahead)
    np.testing.assert_allclose(again.probabilities, plain.probabilities, atol=1e-6)
    together = rec.score(items, same_speaker=True)
    assert together.heads == ["speaker"] * 9
    np.testing.assert_allclose(together.probabilities, rec.predict_proba(files, same_speaker=True), atol=1e-6)
    book = SpeakerBook(min_files=4)
    keyed = rec.score(items[:5], ["s4"] * 4 + [None], book=book)
    assert keyed.heads == ["speaker"] * 4 + ["file"] and book.count("s4") == 4 and "s4" not in rec.speakers

    # a gate that knows nothing: every item unknown, a strict request refused before any statistics change
    v = plain.vectors
    rec.familiarity = Familiarity.fit(v, np.arange(9) % 3, components=2).with_threshold(1e-9)
    gated = rec.score(items, ["s4"] * 9, book=book)
    assert not gated.known.any() and (gated.ood > 1).all() and gated.heads == ["file"] * 9 and book.count("s4") == 4
    with pytest.raises(UnknownSoundError):
        rec.score(items, ["s4"] * 9, book=book, refuse=[str(f) for f in files])
    assert book.count("s4") == 4
    assert all(isinstance(rec.answer(gated, i, str(f)), UnknownSoundError) for i, f in enumerate(files))
