"""The familiarity (out-of-distribution) gate: statistics, threshold by speaker CV, saving, and the paths that use it."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from emovox.errors import ModelError, NoSpeechError, UnknownSoundError
from emovox.model import FAMILIARITY_FILE, Familiarity, load_model, save_model
from emovox.training.familiar import fit_familiarity

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def clusters(n_per: int, speakers: int, dim: int = 48, seed: int = 0, shift: float = 0.0):
    """Vectors of 3 classes in a low-dimensional subspace, each speaker with its own offset."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((6, dim))
    centres = np.random.default_rng(98).standard_normal((3, 6)) * 3
    x, y, spk = [], [], []
    for s in range(speakers):
        offset = rng.standard_normal(6) * 0.5
        for c in range(3):
            z = centres[c] + offset + rng.standard_normal((n_per, 6))
            x.append(z @ basis + 0.3 * rng.standard_normal((n_per, dim)) + shift)
            y += [c] * n_per
            spk += [f"s{s}"] * n_per
    return np.concatenate(x).astype(np.float32), np.array(y), spk


def test_familiarity_scores_new_speakers_low_and_other_sounds_high(tmp_path):
    x, y, spk = clusters(40, 8)
    fam = fit_familiarity(x, y, spk, components=8)
    assert fam.threshold >= fam.info["speaker_cv_quantile"] > 0
    new_x, _, _ = clusters(40, 4, seed=5)  # new speakers of the same kind of data
    assert (fam.score(new_x) <= 1).mean() >= 0.98
    basis = np.random.default_rng(99).standard_normal((6, x.shape[1]))
    far = (np.random.default_rng(3).standard_normal((50, 6)) * 12) @ basis  # far along the directions speech varies in
    assert (fam.score(far.astype(np.float32)) > 1).all()
    assert (fam.score(x + 25.0) > 1).all()  # a shifted cloud
    # saved and loaded: the same scores (the projection is stored in fp16)
    back = Familiarity.load(fam.save(tmp_path / "f.safetensors"), fam.info)
    np.testing.assert_allclose(back.score(new_x), fam.score(new_x), rtol=2e-2, atol=1e-3)
    with pytest.raises(ModelError, match="length 48"):
        fam.score(x[:, :10])


def test_threshold_by_corpus_is_at_least_by_speaker():
    a, ya, sa = clusters(30, 6, seed=1)
    b, yb, sb = clusters(30, 6, seed=2, shift=0.8)
    x, y = np.concatenate([a, b]), np.concatenate([ya, yb])
    spk = [f"a:{s}" for s in sa] + [f"b:{s}" for s in sb]
    fam = fit_familiarity(x, y, spk, ["a"] * len(a) + ["b"] * len(b), components=8)
    assert fam.info["corpora"] == ["a", "b"]
    assert fam.threshold == pytest.approx(max(fam.info["speaker_cv_quantile"], fam.info["corpus_cv_quantile"]), rel=1e-3)
    with pytest.raises(Exception, match="at least 2 speakers"):
        fit_familiarity(x, y, ["one"] * len(x))
    # the second opinion reaches to where 99.9 % of the same held-out speech lies
    from emovox.training.familiar import held_out_distances

    by_speaker, by_corpus, _ = held_out_distances(x, y, spk, ["a"] * len(a) + ["b"] * len(b), components=8)
    far = max(np.quantile(by_speaker, 0.999), np.quantile(by_corpus, 0.999))
    assert fam.info["confirmed_rate"] == 0.999
    assert fam.speech_ceiling == pytest.approx(max(1.0, far / fam.threshold), rel=1e-3) and fam.speech_ceiling >= 1.0
    assert fit_familiarity(x, y, spk, components=8, confirmed_rate=None).speech_ceiling == 1.0


def test_channel_copies_go_with_their_speaker_in_the_threshold():
    """A channel copy (speaker "<s>~aug-ch1") is held out with its source speaker, never scored by statistics that
    saw its source: it is no new voice."""
    from emovox.training.familiar import held_out_distances

    x, y, spk = clusters(30, 1, seed=4)
    copies = x + 0.2 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    with pytest.raises(Exception, match="at least 2 speakers"):
        held_out_distances(np.concatenate([x, copies]), np.concatenate([y, y]), spk + [f"{s}~aug-ch1" for s in spk])
    held, _, _ = held_out_distances(np.concatenate([x, copies]), np.concatenate([y, y]), spk + [f"{s}-b" for s in spk],
                                    components=8)
    assert held.shape == (2 * len(x),)  # as two voices it would be scored
