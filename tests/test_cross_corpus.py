"""Cross-corpus scoring: the argmax restricted to the labels a test corpus uses, beside the unrestricted score."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone
from emovox.cli import main
from emovox.errors import EmovoxError
from emovox.training.data import restrict_logits
from helpers_models import tone_model


def test_restricted_logits_never_pick_a_masked_label():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.1, 0.2, 4.0]])
    out = restrict_logits(logits, ["angry", "neutral", "sad"], ["neutral", "sad"])
    assert out.argmax(1).tolist() == [1, 2]
    probs = torch.softmax(out, 1)
    assert torch.allclose(probs.sum(1), torch.ones(2)) and (probs[:, 0] == 0).all()
    assert torch.equal(out[:, 1:], logits[:, 1:])  # the allowed labels keep their logits
    with pytest.raises(EmovoxError, match="none of the labels"):
        restrict_logits(logits, ["angry", "neutral", "sad"], ["boredom"])


def test_evaluate_reports_restricted_beside_unrestricted(tmp_path, capsys):
    """A 3-label model scored on a 2-label corpus: the restricted argmax never answers the missing label."""
    model = tone_model(tmp_path)
    for emo, f0 in (("angry", 320.0), ("sad", 120.0)):
        (tmp_path / "d" / emo).mkdir(parents=True)
        for i in range(4):
            # off-pitch tones: the unrestricted model may call some of them neutral
            sf.write(tmp_path / "d" / emo / f"{i}.wav", tone(f0 * (0.8 + 0.15 * i) ** (1 if emo == "sad" else -1), 4.0, seed=i), 16000)
    rc = main(["evaluate", str(model), "--corpus", "folder", "--data", str(tmp_path / "d"), "--no-cache", "--quiet",
               "--restrict-labels", "--json", str(tmp_path / "m.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "all labels: n=8" in out and "restricted to angry, sad: n=8" in out
    m = json.loads((tmp_path / "m.json").read_text())
    r = m["restricted"]
    assert r["labels_restricted_to"] == ["angry", "sad"]
    assert r["accuracy"] >= m["accuracy"]  # restricting can only turn wrong answers right
    neutral = r["labels"].index("neutral")
    assert np.asarray(r["confusion"])[:, neutral].sum() == 0


def test_benchmark_rows_with_test_labels(tone_corpus, tmp_path):
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'''
[data]
folder = "{tone_corpus}"
[[cell]]
corpus = "folder"
protocol = "speaker-kfold"
folds = 3
solver = "logreg"
duration = 1.0
image_size = 64
restrict_labels = true
''')
    rc = main(["benchmark", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--workers", "1",
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    rows = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["normalized"] for r in rows] == ["per file", "per file, test labels"]
    # every test fold uses all three labels here, so restricting changes nothing
    assert rows[0]["accuracy"] == rows[1]["accuracy"]


def test_speaker_kfold_on_one_corpus_keeps_the_others_in_training():
    from emovox.corpora.base import Utterance
    from emovox.training.splits import protocol_folds

    utts = [Utterance(f"/x/{c}{s}{i}.wav", "angry" if i % 2 else "sad", s, c) for c in ("a", "b") for s in "123456" for i in range(4)]
    folds = protocol_folds("speaker-kfold", utts, folds=3, test_corpus="b")
    assert len(folds) == 3
    tested = set()
    for f in folds:
        assert {utts[i].corpus for i in f.test} == {"b"} and {utts[i].corpus for i in f.val} == {"b"}
        assert sum(utts[i].corpus == "a" for i in f.train) == 24  # every file of corpus a trains in every fold
        tested |= {utts[i].speaker_key for i in f.test}
    assert tested == {f"b:{s}" for s in "123456"}
    same = protocol_folds("speaker-kfold", [u for u in utts if u.corpus == "b"], folds=3)
    assert [sorted(f.description) for f in same] == [sorted(f.description) for f in folds]  # the same folds as b alone
    with pytest.raises(EmovoxError, match="not among"):
        protocol_folds("speaker-kfold", utts, folds=3, test_corpus="c")


def test_corpus_weights_make_each_corpus_count_alike():
    from emovox.training.train import TrainConfig, group_weights

    w = group_weights(["tess"] * 6 + ["ravdess"] * 2)
    assert w[:6].sum() == pytest.approx(w[6:].sum()) and w.sum() == pytest.approx(8)
    with pytest.raises(EmovoxError, match="logistic-regression"):
        TrainConfig(balance_corpora=True)  # the Adam solver has no sample weights here


def test_balancing_corpora_keeps_a_small_corpus_from_being_outvoted(tmp_path):
    """Two 'corpora' whose voices express 'angry' differently: the small one's way wins only when corpora are balanced."""
    from emovox.training.splits import Split
    from emovox.training.train import TrainConfig, fit
    from emovox.model import EmotionClassifier

    rng = np.random.default_rng(0)
    # feature 0 marks angry in the big corpus; feature 1 marks it, the other way round, in the small one
    big = rng.normal(size=(200, 2)); big_y = (big[:, 0] > 0).astype(int)
    small = rng.normal(size=(20, 2)); small_y = (small[:, 1] < 0).astype(int)
    test = rng.normal(size=(200, 2)); test_y = (test[:, 1] < 0).astype(int)  # new voices behave like the small corpus
    x = torch.tensor(np.vstack([big, small, test]), dtype=torch.float32)
    y = torch.tensor(np.concatenate([big_y, small_y, test_y]))
    corpora = ["big"] * 200 + ["small"] * 20 + ["new"] * 200
    split = Split(np.arange(220), np.arange(200, 220), np.arange(220, 420))

    def accuracy(balance: bool) -> float:
        class Probe(EmotionClassifier):  # a head on 2-d vectors: no backbone needed
            def __init__(self):
                torch.nn.Module.__init__(self)
                from emovox.model.heads import linear_head

                self.finetune, self.labels, self.encoders, self.vector_dim = "none", ["neutral", "angry"], torch.nn.ModuleList(), 2
                self.heads, self.temperatures_ = torch.nn.ModuleDict({"file": linear_head(2, 2, 0.0)}), {"file": 1.0}

        model = Probe()
        fit(model, x, y, split, TrainConfig(solver="logreg", logreg_c=1.0, balance_corpora=balance),
            progress=False, corpora=corpora)
        with torch.inference_mode():
            return float((model.head(x[220:]).argmax(1) == y[220:]).float().mean())

    balanced, plain = accuracy(True), accuracy(False)
    assert balanced > plain + 0.05
