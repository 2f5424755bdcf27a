from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from conftest import corpus_dir, tone

from emovox.corpora import LOADERS, load_corpus, nemo
from emovox.errors import CorpusError
from emovox.labels import CANONICAL

SPEAKERS = {"KS0", "WR0", "KD0", "IC0"}
LABELS = {"angry", "fear", "happy", "neutral", "sad", "surprise"}


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(200.0, 5.0, seconds=0.05), 16000, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


def _tree(root: Path) -> Path:
    samples = root / "samples"
    for name in (
        "KS0_anger_12.flac",
        "WR0_fear_1.flac",
        "KD0_happiness_90.flac",
        "IC0_neutral_3.wav",
        "KS0_sadness_7.flac",
        "IC0_surprised_12.flac",
    ):
        _write(samples / name)
    return samples


def test_nemo_synthetic_tree_both_root_forms(tmp_path):
    samples = _tree(tmp_path)
    (tmp_path / "README.txt").write_text("not audio")
    for root in (tmp_path, samples):
        utts = {u.path.name: u for u in nemo.load(root)}
        assert len(utts) == 6
        u = utts["KS0_anger_12.flac"]
        assert (u.emotion, u.speaker, u.corpus, u.text) == ("angry", "KS0", "nemo", "12")
        assert u.extra == {"gender": "male", "sentence": "12", "language": "pl"}
        assert u.speaker_key == "nemo:KS0"
        assert (utts["WR0_fear_1.flac"].emotion, utts["WR0_fear_1.flac"].extra["gender"]) == ("fear", "male")
        assert (utts["KD0_happiness_90.flac"].emotion, utts["KD0_happiness_90.flac"].extra["gender"]) == ("happy", "female")
        assert (utts["IC0_neutral_3.wav"].emotion, utts["IC0_neutral_3.wav"].extra["gender"]) == ("neutral", "female")
        assert utts["KS0_sadness_7.flac"].emotion == "sad"
        assert utts["IC0_surprised_12.flac"].emotion == "surprise"
        assert {u.speaker for u in utts.values()} == SPEAKERS
        assert {u.emotion for u in utts.values()} == LABELS
        assert {u.corpus for u in utts.values()} == {"nemo"}


def test_nemo_only_samples_folder_read_when_present(tmp_path):
    _tree(tmp_path)
    _write(tmp_path / "other" / "KS0_anger_99.wav")  # e.g. a second copy outside samples/
    assert "KS0_anger_99.wav" not in {u.path.name for u in nemo.load(tmp_path)}


def test_nemo_registered_and_label_map_canonical():
    assert LOADERS["nemo"] is nemo.load
    assert set(nemo.LABEL_MAP.values()) == LABELS
    assert LABELS <= set(CANONICAL)
    assert set(nemo.GENDERS) == SPEAKERS


def test_nemo_unlisted_actor_has_unknown_gender(tmp_path):
    _write(tmp_path / "SB0_anger_1.flac")
    [u] = nemo.load(tmp_path)
    assert (u.speaker, u.emotion, u.extra["gender"]) == ("SB0", "angry", "unknown")


@pytest.mark.parametrize(
    "name, match",
    [
        ("KS0_anger.flac", "not a nEMO file name"),
        ("KS0-anger-12.flac", "not a nEMO file name"),
        ("ks0_anger_12.flac", "not a nEMO file name"),
        ("KS0_anger_x2.flac", "not a nEMO file name"),
        ("KS0_disgust_3.flac", "unknown nEMO emotion word 'disgust'"),
        ("WR0_angry_3.flac", "unknown nEMO emotion word 'angry'"),
    ],
)
def test_nemo_rejects_malformed_names(tmp_path, name, match):
    _write(tmp_path / "samples" / name)
    with pytest.raises(CorpusError, match=match) as err:
        nemo.load(tmp_path)
    assert name in str(err.value)


def test_nemo_missing_or_empty(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        nemo.load(tmp_path / "nope")
    (tmp_path / "samples").mkdir()
    with pytest.raises(CorpusError, match="no nEMO audio files"):
        nemo.load(tmp_path)


# ---------------------------------------------------------------- real data


def test_nemo_real_data():
    d = corpus_dir("nemo")
    utts = nemo.load(d)
    assert len(utts) == 2159
    assert {u.path.name for u in nemo.load(d / "samples")} == {u.path.name for u in utts}
    assert {u.speaker for u in utts} == SPEAKERS
    assert {u.emotion for u in utts} == LABELS
    assert {u.corpus for u in utts} == {"nemo"}
    per_speaker = Counter(u.speaker for u in utts)
    assert all(500 <= n <= 600 for n in per_speaker.values()), per_speaker
    pairs = Counter((u.speaker, u.emotion) for u in utts)
    assert set(pairs) == {(s, e) for s in SPEAKERS for e in LABELS}
    assert {u.extra["gender"] for u in utts if u.speaker in ("KS0", "WR0")} == {"male"}
    assert {u.extra["gender"] for u in utts if u.speaker in ("KD0", "IC0")} == {"female"}
    # the emotion word in the file name is the label
    assert all(nemo.LABEL_MAP[u.path.stem.split("_")[1]] == u.emotion for u in utts)


def test_nemo_merges_with_ravdess():
    nemo_dir, ravdess_dir = corpus_dir("nemo"), corpus_dir("ravdess")
    utts = load_corpus("nemo,ravdess", [nemo_dir, ravdess_dir])
    by_corpus = Counter(u.corpus for u in utts)
    assert by_corpus["nemo"] == 2159 and by_corpus["ravdess"] > 0
    nemo_keys = {u.speaker_key for u in utts if u.corpus == "nemo"}
    ravdess_keys = {u.speaker_key for u in utts if u.corpus == "ravdess"}
    assert nemo_keys == {f"nemo:{s}" for s in SPEAKERS}
    assert nemo_keys.isdisjoint(ravdess_keys)
    assert len(nemo_keys | ravdess_keys) == 4 + len({u.speaker for u in utts if u.corpus == "ravdess"})
