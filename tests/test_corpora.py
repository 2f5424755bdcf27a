from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox.corpora import load_corpus, load_csv, load_folder, ravdess, tess
from emovox.errors import CorpusError, UnknownLabelError
from emovox.labels import CANONICAL, canonical, sort_labels


def _touch_audio(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


def test_canonical_labels_and_synonyms():
    assert CANONICAL == ("angry", "boredom", "calm", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert canonical("ps", tess.LABEL_MAP) == "surprise"
    assert canonical("Surprised") == "surprise"
    assert canonical("fearful") == "fear"
    with pytest.raises(UnknownLabelError, match="contempt"):
        canonical("contempt")
    assert sort_labels(["sad", "angry", "zzz", "happy"]) == ["angry", "happy", "sad", "zzz"]


def test_tess_uses_file_name_token_not_folder(tmp_path):
    # Folder names as in another TESS distribution, and deliberately misleading ones.
    _touch_audio(tmp_path / "OAF_Fear" / "OAF_back_fear.wav")
    _touch_audio(tmp_path / "YAF_pleasant_surprised" / "YAF_dog_ps.flac")
    _touch_audio(tmp_path / "OAF_neutral" / "OA_bite_neutral.wav")
    _touch_audio(tmp_path / "YAF_sad" / "YAF_chair_angry.wav")
    utts = {u.path.name: u for u in tess.load(tmp_path)}
    assert len(utts) == 4
    assert (utts["OAF_back_fear.wav"].emotion, utts["OAF_back_fear.wav"].speaker, utts["OAF_back_fear.wav"].text) == ("fear", "OAF", "back")
    assert (utts["YAF_dog_ps.flac"].emotion, utts["YAF_dog_ps.flac"].speaker) == ("surprise", "YAF")
    assert utts["OA_bite_neutral.wav"].speaker == "OAF"
    assert utts["YAF_chair_angry.wav"].emotion == "angry"


def test_tess_rejects_unknown_names(tmp_path):
    _touch_audio(tmp_path / "x" / "ZZZ_back_fear.wav")
    with pytest.raises(CorpusError, match="speaker"):
        tess.load(tmp_path)
    with pytest.raises(CorpusError, match="not found"):
        tess.load(tmp_path / "nope")


def test_ravdess_fields(tmp_path):
    _touch_audio(tmp_path / "Actor_01" / "03-01-06-02-01-02-01.wav")
    _touch_audio(tmp_path / "Actor_12" / "03-01-08-01-02-01-12.flac")
    _touch_audio(tmp_path / "Actor_12" / "03-02-05-01-02-01-12.wav")  # song: not speech
    utts = sorted(ravdess.load(tmp_path), key=lambda u: u.speaker)
    assert [(u.emotion, u.speaker, u.extra["gender"], u.extra["intensity"]) for u in utts] == [
        ("fear", "01", "male", "strong"),
        ("surprise", "12", "female", "normal"),
    ]
    assert utts[1].text == "Dogs are sitting by the door"


def test_folder_loader(tmp_path):
    _touch_audio(tmp_path / "happy" / "spk1" / "a.wav")
    _touch_audio(tmp_path / "Sadness" / "b.flac")
    _touch_audio(tmp_path / ".hidden" / "c.wav")
    utts = sorted(load_folder(tmp_path), key=lambda u: u.emotion)
    assert [(u.emotion, u.speaker) for u in utts] == [("happy", "spk1"), ("sad", "unknown")]
    _touch_audio(tmp_path / "whatever" / "d.wav")
    with pytest.raises(CorpusError, match="whatever"):
        load_folder(tmp_path)


def test_csv_manifest(tmp_path):
    _touch_audio(tmp_path / "clips" / "a.wav")
    (tmp_path / "m.csv").write_text("path,emotion,speaker\nclips/a.wav,Happy,s1\n/abs/b.wav,fearful,\n")
    utts = load_csv(tmp_path / "m.csv")
    assert utts[0].path == tmp_path / "clips" / "a.wav" and utts[0].emotion == "happy" and utts[0].speaker == "s1"
    assert utts[1].path == Path("/abs/b.wav") and utts[1].emotion == "fear" and utts[1].speaker == "unknown"
    (tmp_path / "bad.csv").write_text("path,emotion\na.wav,contempt\n")
    with pytest.raises(CorpusError, match=r"bad.csv:2: .*contempt"):
        load_csv(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("file,label\na.wav,happy\n")
    with pytest.raises(CorpusError, match="missing column"):
        load_csv(tmp_path / "nohead.csv")


def test_load_corpus_merges_and_filters(tmp_path):
    _touch_audio(tmp_path / "t" / "OAF_happy" / "OAF_back_happy.wav")
    _touch_audio(tmp_path / "t" / "OAF_sad" / "OAF_back_sad.wav")
    _touch_audio(tmp_path / "r" / "Actor_02" / "03-01-03-01-01-01-02.wav")
    utts = load_corpus("tess,ravdess", f"{tmp_path / 't'},{tmp_path / 'r'}")
    assert Counter(u.corpus for u in utts) == {"tess": 2, "ravdess": 1}
    assert len(load_corpus("tess,ravdess", [tmp_path / "t", tmp_path / "r"], emotions=["happy"])) == 2
    with pytest.raises(CorpusError, match="one path per corpus"):
        load_corpus("tess,ravdess", tmp_path / "t")
    with pytest.raises(CorpusError, match="unknown corpus"):
        load_corpus("iemocap", tmp_path)


def test_real_tess(tess_dir):
    utts = tess.load(tess_dir)
    assert len(utts) == 2602
    assert Counter(u.speaker for u in utts) == {"OAF": 1301, "YAF": 1301}
    assert set(u.emotion for u in utts) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert len({u.text for u in utts}) == 186
    bite = [u for u in utts if u.path.stem == "OA_bite_neutral"]
    assert len(bite) == 1 and bite[0].speaker == "OAF" and bite[0].emotion == "neutral"
    # every label agrees with the folder it was distributed in
    for u in utts:
        folder = u.path.parent.name.split("_", 1)[1]
        assert canonical(folder, {"pleasant_surprise": "surprise"}) == u.emotion


def test_real_ravdess(ravdess_dir):
    utts = ravdess.load(ravdess_dir)
    assert len(utts) == 1080
    assert len({u.speaker for u in utts}) == 18
    counts = Counter(u.emotion for u in utts)
    assert counts["neutral"] == 72 and counts["calm"] == 144
    assert all(u.path.parent.name == f"Actor_{u.speaker}" for u in utts)
