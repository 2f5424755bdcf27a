from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emovox.corpora.base import Utterance
from emovox.errors import EmovoxError
from emovox.training.splits import all_split, make_split, random_split, speaker_split, words_split

EMOS = ["angry", "happy", "sad", "neutral"]


def corpus(n_speakers=6, words=10, corpus="c"):
    return [
        Utterance(Path(f"/{s}/{w}/{e}.wav"), e, f"spk{s}", corpus, text=f"w{w}")
        for s in range(n_speakers) for w in range(words) for e in EMOS
    ]


def _parts(split):
    return [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]


def _disjoint_cover(split, n):
    tr, va, te = _parts(split)
    assert not (tr & va or tr & te or va & te)
    assert len(tr | va | te) == n


def test_random_split_is_stratified_deterministic_and_70_15_15():
    utts = corpus()
    s = random_split(utts, seed=3)
    _disjoint_cover(s, len(utts))
    assert abs(len(s.test) - 0.15 * len(utts)) <= 2 and abs(len(s.val) - 0.15 * len(utts)) <= 2
    counts = Counter(utts[i].emotion for i in s.test)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert np.array_equal(s.test, random_split(utts, seed=3).test)
    assert not np.array_equal(s.test, random_split(utts, seed=4).test)


def test_speaker_split_has_no_shared_speaker():
    utts = corpus(n_speakers=8)
    s = speaker_split(utts, seed=1)
    _disjoint_cover(s, len(utts))
    spk = [{utts[i].speaker for i in part} for part in _parts(s)]
    assert all(spk) and not (spk[0] & spk[1] or spk[0] & spk[2] or spk[1] & spk[2])


def test_fixed_test_speakers_and_two_speaker_corpus():
    utts = corpus(n_speakers=2)
    s = speaker_split(utts, ["spk1"])
    assert {utts[i].speaker for i in s.test} == {"spk1"}
    assert {utts[i].speaker for i in s.train} == {"spk0"} == {utts[i].speaker for i in s.val}
    assert "shares training speakers" in s.description
    with pytest.raises(EmovoxError, match="spk9"):
        speaker_split(utts, ["spk9"])
    with pytest.raises(EmovoxError, match="nothing left"):
        speaker_split(utts, ["spk0", "spk1"])


def test_speaker_keys_are_per_corpus():
    utts = corpus(2, corpus="a") + corpus(2, corpus="b")
    s = make_split("speaker", utts, test_speakers=["b:spk0"])
    assert {utts[i].speaker_key for i in s.test} == {"b:spk0"}


def test_words_split_has_no_shared_word():
    utts = corpus(n_speakers=2, words=20)
    s = words_split(utts, seed=0)
    _disjoint_cover(s, len(utts))
    words = [{utts[i].text for i in part} for part in _parts(s)]
    assert all(words) and not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])
    with pytest.raises(EmovoxError, match="word"):
        words_split([Utterance(Path("/a"), "sad", "s", "c")] * 4)


def test_all_split_has_no_test_part():
    utts = corpus()
    s = all_split(utts)
    assert len(s.test) == 0 and abs(len(s.val) - 0.1 * len(utts)) <= 2
    with pytest.raises(EmovoxError, match="unknown split"):
        make_split("kfold", utts)


def test_speaker_kfold_covers_every_speaker_once_as_test():
    from emovox.training.splits import speaker_kfold

    utts = corpus(n_speakers=18, words=2)
    folds = speaker_kfold(utts, k=6, seed=0)
    assert len(folds) == 6
    tested = [{utts[i].speaker for i in f.test} for f in folds]
    assert all(len(t) == 3 for t in tested)
    assert set().union(*tested) == {f"spk{s}" for s in range(18)}
    for f in folds:
        _disjoint_cover(f, len(utts))
        spk = [{utts[i].speaker for i in part} for part in _parts(f)]
        assert not (spk[0] & spk[1] or spk[0] & spk[2] or spk[1] & spk[2])
    with pytest.raises(EmovoxError, match="at least 3 speakers"):
        speaker_kfold(corpus(n_speakers=2))


def test_loso_and_cross_speaker():
    from emovox.training.splits import cross_speaker, leave_one_speaker_out

    utts = corpus(n_speakers=4, words=2)
    loso = leave_one_speaker_out(utts)
    assert sorted(next(iter({utts[i].speaker for i in f.test})) for f in loso) == ["spk0", "spk1", "spk2", "spk3"]
    two = corpus(n_speakers=2)
    cs = cross_speaker(two)
    assert [{two[i].speaker for i in f.test} for f in cs] == [{"spk0"}, {"spk1"}]
    assert [{two[i].speaker for i in f.train} for f in cs] == [{"spk1"}, {"spk0"}]


def test_cross_corpus_scores_only_shared_labels():
    from emovox.training.splits import cross_corpus, protocol_folds

    a = corpus(n_speakers=4, words=2, corpus="a")
    b = [Utterance(Path(f"/b/{i}.wav"), e, "x", "b") for i, e in enumerate(["angry", "calm", "sad", "calm"])]
    utts = a + b
    s = cross_corpus(utts, "b")
    assert sorted(utts[i].emotion for i in s.test) == ["angry", "sad"]
    assert {utts[i].corpus for i in np.concatenate([s.train, s.val])} == {"a"}
    assert not ({utts[i].speaker for i in s.train} & {utts[i].speaker for i in s.val})
    assert len(protocol_folds("cross-corpus", utts)) == 2
    with pytest.raises(EmovoxError, match="unknown protocol"):
        protocol_folds("magic", utts)


def test_fixed_validation_and_test_speakers():
    utts = corpus(2, corpus="t") + corpus(6, corpus="r")
    s = speaker_split(utts, ["r:spk4", "r:spk5"], val_speakers=["r:spk2", "r:spk3"])
    _disjoint_cover(s, len(utts))
    assert {utts[i].speaker_key for i in s.test} == {"r:spk4", "r:spk5"}
    assert {utts[i].speaker_key for i in s.val} == {"r:spk2", "r:spk3"}
    assert {utts[i].speaker_key for i in s.train} == {"t:spk0", "t:spk1", "r:spk0", "r:spk1"}
    with pytest.raises(EmovoxError, match="both"):
        speaker_split(utts, ["r:spk4"], val_speakers=["r:spk4"])
    with pytest.raises(EmovoxError, match="validation speaker"):
        speaker_split(utts, ["r:spk4"], val_speakers=["zz"])
