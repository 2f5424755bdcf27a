from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox.corpora import cremad, emodb, savee
from emovox.errors import CorpusError
from emovox.labels import CANONICAL


def _touch_audio(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, dtype=np.float32), 16000, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


# ---------------------------------------------------------------- CREMA-D


def test_cremad_fields_intensity_and_gender(tmp_path):
    audio = tmp_path / "AudioWAV"
    _touch_audio(audio / "1001_DFA_ANG_XX.wav")
    _touch_audio(audio / "1002_IEO_HAP_HI.wav")
    _touch_audio(audio / "1091_TSI_FEA_LO.flac")
    _touch_audio(audio / "1076_ITH_DIS_MD.wav")
    _touch_audio(audio / "1015_WSI_NEU_XX.wav")
    _touch_audio(audio / "1030_MTI_SAD_XX.wav")
    # the repository's MP3 copies of the same clips must not be loaded twice
    _touch_audio(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")
    utts = {u.path.name: u for u in cremad.load(tmp_path)}
    assert len(utts) == 6
    u = utts["1001_DFA_ANG_XX.wav"]
    assert (u.emotion, u.speaker, u.corpus, u.text) == ("angry", "1001", "cremad", "Don't forget a jacket")
    assert u.extra == {"intensity": "unspecified", "sentence": "DFA", "gender": "male"}
    assert utts["1002_IEO_HAP_HI.wav"].extra["intensity"] == "high"
    assert utts["1002_IEO_HAP_HI.wav"].text == "It's eleven o'clock"
    assert utts["1002_IEO_HAP_HI.wav"].extra["gender"] == "female"
    assert (utts["1091_TSI_FEA_LO.flac"].emotion, utts["1091_TSI_FEA_LO.flac"].extra["intensity"]) == ("fear", "low")
    assert utts["1076_ITH_DIS_MD.wav"].extra == {"intensity": "medium", "sentence": "ITH", "gender": "female"}
    assert utts["1076_ITH_DIS_MD.wav"].emotion == "disgust"
    assert utts["1015_WSI_NEU_XX.wav"].text == "We'll stop in a couple of minutes"
    assert {u.emotion for u in utts.values()} == {"angry", "happy", "fear", "disgust", "neutral", "sad"}


def test_cremad_official_tables():
    assert len(cremad.SENTENCES) == 12
    assert set(cremad.LABEL_MAP.values()) <= set(CANONICAL)
    genders = Counter(cremad.gender(str(s)) for s in range(1001, 1092))
    assert genders == {"male": 48, "female": 43}


def test_cremad_empty_file_is_listed_not_read(tmp_path):
    # Known quirk: 1076_MTI_SAD_XX.wav is distributed without audio; decoding reports it later.
    _touch_audio(tmp_path / "1001_DFA_ANG_XX.wav")  # files directly under the root
    empty = tmp_path / "1076_MTI_SAD_XX.wav"
    empty.write_bytes(b"")
    utts = {u.path.name: u for u in cremad.load(tmp_path)}
    assert set(utts) == {"1001_DFA_ANG_XX.wav", "1076_MTI_SAD_XX.wav"}
    assert utts["1076_MTI_SAD_XX.wav"].emotion == "sad"
    assert utts["1076_MTI_SAD_XX.wav"].text == "Maybe tomorrow it will be cold"


@pytest.mark.parametrize(
    "name, match",
    [
        ("1001_DFA_ANG.wav", "not a CREMA-D file name"),
        ("1001-DFA-ANG-XX.wav", "not a CREMA-D file name"),
        ("0999_DFA_ANG_XX.wav", "out of range"),
        ("1092_DFA_ANG_XX.wav", "out of range"),
        ("1001_ABC_ANG_XX.wav", "sentence code 'ABC'"),
        ("1001_DFA_SUR_XX.wav", "emotion code 'SUR'"),
        ("1001_DFA_ANG_ZZ.wav", "intensity code 'ZZ'"),
    ],
)
def test_cremad_rejects_malformed_names(tmp_path, name, match):
    _touch_audio(tmp_path / "AudioWAV" / name)
    with pytest.raises(CorpusError, match=match) as err:
        cremad.load(tmp_path)
    assert name in str(err.value)


def test_cremad_missing_or_empty(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        cremad.load(tmp_path / "nope")
    (tmp_path / "AudioWAV").mkdir()
    with pytest.raises(CorpusError, match="no CREMA-D audio"):
        cremad.load(tmp_path)


# ---------------------------------------------------------------- SAVEE


def test_savee_nested_layout_and_two_letter_prefixes(tmp_path):
    for name in ("DC/a01.wav", "DC/sa01.wav", "JE/su15.wav", "JK/n30.wav", "KL/d07.wav", "KL/f02.wav", "JE/h11.flac"):
        _touch_audio(tmp_path / "AudioData" / name)
    utts = {f"{u.speaker}/{u.path.name}": u for u in savee.load(tmp_path)}
    assert {k: u.emotion for k, u in utts.items()} == {
        "DC/a01.wav": "angry",
        "DC/sa01.wav": "sad",
        "JE/su15.wav": "surprise",
        "JK/n30.wav": "neutral",
        "KL/d07.wav": "disgust",
        "KL/f02.wav": "fear",
        "JE/h11.flac": "happy",
    }
    sa = utts["DC/sa01.wav"]
    assert (sa.text, sa.extra["sentence_number"], sa.corpus, sa.extra["gender"]) == ("sa01", "01", "savee", "male")
    assert utts["JE/su15.wav"].text == "su15"


def test_savee_flat_layout(tmp_path):
    for name in ("DC_a01.wav", "JE_sa03.wav", "JK_su09.wav", "KL_n21.wav"):
        _touch_audio(tmp_path / "ALL" / name)
    utts = {u.path.name: u for u in savee.load(tmp_path)}
    assert [(utts[n].speaker, utts[n].emotion, utts[n].extra["sentence_number"]) for n in sorted(utts)] == [
        ("DC", "angry", "01"),
        ("JE", "sad", "03"),
        ("JK", "surprise", "09"),
        ("KL", "neutral", "21"),
    ]


def test_savee_same_sentence_id_across_speakers(tmp_path):
    _touch_audio(tmp_path / "DC" / "d03.wav")
    _touch_audio(tmp_path / "KL_d03.wav")
    utts = savee.load(tmp_path)
    assert {u.speaker for u in utts} == {"DC", "KL"}
    assert {u.text for u in utts} == {"d03"}


@pytest.mark.parametrize(
    "name, match",
    [
        ("DC/s01.wav", "not a SAVEE file name"),  # there is no bare "s"
        ("DC/x01.wav", "not a SAVEE file name"),
        ("DC/a1.wav", "not a SAVEE file name"),
        ("DC/sad01.wav", "not a SAVEE file name"),
        ("DC/a16.wav", "out of range"),  # 15 sentences per emotion
        ("DC/n31.wav", "out of range"),  # 30 neutral sentences
        ("DC/a00.wav", "out of range"),
        ("XX/a01.wav", "speaker 'XX'"),
        ("AB_a01.wav", "speaker 'AB'"),
    ],
)
def test_savee_rejects_malformed_names(tmp_path, name, match):
    _touch_audio(tmp_path / name)
    with pytest.raises(CorpusError, match=match) as err:
        savee.load(tmp_path)
    assert Path(name).name in str(err.value)


def test_savee_missing(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        savee.load(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no SAVEE audio"):
        savee.load(tmp_path)


# ---------------------------------------------------------------- EmoDB


def test_emodb_letters_gender_and_text(tmp_path):
    names = {
        "03a01Fa.wav": ("03", "happy", "male", "a01", "a"),
        "08b10Wb.wav": ("08", "angry", "female", "b10", "b"),
        "09a02La.wav": ("09", "boredom", "female", "a02", "a"),
        "10a04Ec.wav": ("10", "disgust", "male", "a04", "c"),
        "11a05Ab.wav": ("11", "fear", "male", "a05", "b"),
        "12a07Td.wav": ("12", "sad", "male", "a07", "d"),
        "13b01Na.wav": ("13", "neutral", "female", "b01", "a"),
        "14b02Fa.flac": ("14", "happy", "female", "b02", "a"),
        "15b03Wa.wav": ("15", "angry", "male", "b03", "a"),
        "16b09La.wav": ("16", "boredom", "female", "b09", "a"),
    }
    for name in names:
        _touch_audio(tmp_path / "wav" / name)
    # the distribution's other folders are not read when wav/ exists
    (tmp_path / "lablaut").mkdir()
    (tmp_path / "lablaut" / "03a01Fa.lab").write_text("label")
    utts = {u.path.name: u for u in emodb.load(tmp_path)}
    assert set(utts) == set(names)
    for name, (speaker, emotion, gender, text, version) in names.items():
        u = utts[name]
        assert (u.speaker, u.emotion, u.extra["gender"], u.text, u.extra["version"]) == (speaker, emotion, gender, text, version)
        assert u.corpus == "emodb" and u.extra["language"] == "de"
    assert Counter(g for g in emodb.GENDERS.values()) == {"male": 5, "female": 5}
    assert set(emodb.LABEL_MAP.values()) <= set(CANONICAL)


def test_emodb_files_directly_under_root(tmp_path):
    _touch_audio(tmp_path / "03a01Fa.wav")
    [u] = emodb.load(tmp_path)
    assert (u.speaker, u.emotion) == ("03", "happy")


@pytest.mark.parametrize(
    "name, match",
    [
        ("03a01F.wav", "not an EmoDB file name"),
        ("3a01Fa.wav", "not an EmoDB file name"),
        ("03c01Fa.wav", "not an EmoDB file name"),
        ("03a01fa.wav", "not an EmoDB file name"),
        ("04a01Fa.wav", "speaker '04'"),
        ("03a03Fa.wav", "text code 'a03'"),
        ("03a01Xa.wav", "emotion letter 'X'"),
    ],
)
def test_emodb_rejects_malformed_names(tmp_path, name, match):
    _touch_audio(tmp_path / "wav" / name)
    with pytest.raises(CorpusError, match=match) as err:
        emodb.load(tmp_path)
    assert name in str(err.value)


def test_emodb_missing(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        emodb.load(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no EmoDB audio"):
        emodb.load(tmp_path)
