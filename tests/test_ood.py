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
    fam = fit_familiarity(x, y, spk, components=8, confirmed_rate=None)  # the distance alone
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
    plain = max(fam.info["speaker_cv_quantile"], fam.info["corpus_cv_quantile"])
    assert fam.info["plain_threshold"] == pytest.approx(plain, rel=1e-3)
    alone = fit_familiarity(x, y, spk, ["a"] * len(a) + ["b"] * len(b), components=8, confirmed_rate=None)
    assert alone.threshold == pytest.approx(plain, rel=1e-3) and alone.speech_ceiling == 1.0
    with pytest.raises(Exception, match="at least 2 speakers"):
        fit_familiarity(x, y, ["one"] * len(x))
    # with the second opinion: a stricter threshold (95 % of new speakers pass on distance alone), and the
    # detector asked up to where 99.9 % of the held-out speech (new speakers, new corpora) lies
    from emovox.training.familiar import held_out_distances

    by_speaker, by_corpus, _ = held_out_distances(x, y, spk, ["a"] * len(a) + ["b"] * len(b), components=8)
    assert fam.threshold == pytest.approx(np.quantile(by_speaker, 0.95), rel=1e-3) and fam.threshold <= plain
    far = max(np.quantile(by_speaker, 0.999), np.quantile(by_corpus, 0.999))
    assert fam.info["confirmed_rate"] == 0.999
    assert fam.speech_ceiling == pytest.approx(max(1.0, far / fam.threshold), rel=1e-3) and fam.speech_ceiling >= 1.0


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


def test_model_folder_round_trip_digest_and_old_models(tmp_path):
    from helpers_models import random_model

    from emovox.inference import EmotionRecognizer

    src = random_model(tmp_path)
    model, features, _ = load_model(src)
    assert model.familiarity is None
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((60, model.vector_dim)).astype(np.float32)
    model.familiarity = Familiarity.fit(vecs, rng.integers(0, 4, 60), components=4).with_threshold(1e-9)
    out = save_model(model, tmp_path / "gated", features)
    entry = json.loads((out / "config.json").read_text())["familiarity"]
    assert entry["file"] == FAMILIARITY_FILE and entry["components"] == 4
    back, _, _ = load_model(out)
    assert back.familiarity is not None and back.familiarity.threshold == pytest.approx(1e-9)

    # every input is unfamiliar at this threshold: predict refuses with a "no speech" error that says why
    rec = EmotionRecognizer.load(out)
    y = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    with pytest.raises(UnknownSoundError, match="not speech this model knows") as err:
        rec.predict(y, sample_rate=16000)
    assert isinstance(err.value, NoSpeechError) and err.value.score > 1
    results = list(rec.predict_files([tmp_path / "missing.wav"]))
    assert not isinstance(results[0], UnknownSoundError)  # a missing file is still a plain error
    # the gate can be turned off: an emotion again, no score
    pred = EmotionRecognizer.load(out, ood_gate=False).predict(y, sample_rate=16000)
    assert pred.label in rec.labels and pred.ood_score is None

    # an old folder without statistics: no gate, said once when loading
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = EmotionRecognizer.load(src)
    assert any("no familiarity statistics" in str(w.message) for w in caught)
    assert old.predict(y, sample_rate=16000).ood_score is None

    # a changed statistics file is refused
    raw = bytearray((out / FAMILIARITY_FILE).read_bytes())
    raw[-10] ^= 0xFF
    (out / FAMILIARITY_FILE).write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="digest mismatch"):
        load_model(out)
    (out / FAMILIARITY_FILE).unlink()
    with pytest.raises(ModelError, match="is missing"):
        load_model(out)


def test_cli_and_http_report_unknown(tmp_path, capsys):
    from helpers_models import random_model

    from emovox.cli import main

    model, features, _ = load_model(random_model(tmp_path))
    rng = np.random.default_rng(0)
    model.familiarity = Familiarity.fit(rng.standard_normal((40, model.vector_dim)), rng.integers(0, 4, 40),
                                        components=4).with_threshold(1e-9)
    gated = save_model(model, tmp_path / "gated", features)
    import soundfile as sf

    wav = tmp_path / "hum.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 150 * np.arange(32000) / 16000)).astype(np.float32), 16000)
    assert main(["predict", "--model", str(gated), "--format", "json", str(wav)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["unknown"] is True and row["label"] is None and row["ood_score"] > 1
    assert main(["predict", "--model", str(gated), str(wav)]) == 0
    assert "not speech I know" in capsys.readouterr().out

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emovox.inference import EmotionRecognizer
    from emovox.serve import create_app

    (tmp_path / "up").mkdir()
    with TestClient(create_app(EmotionRecognizer.load(gated), tmp_dir=tmp_path / "up")) as c:
        r = c.post("/v1/predict", files={"file": ("hum.wav", wav.read_bytes(), "audio/wav")})
    assert r.status_code == 422
    body = r.json()
    assert body["unknown"] is True and body["ood_score"] > 1 and body["detail"].startswith("hum.wav: not speech")


@pytest.fixture(scope="module")
def default_rec():
    from emovox.inference import EmotionRecognizer

    rec = EmotionRecognizer.load()
    if rec.familiarity is None:
        pytest.skip("the bundled model has no familiarity gate")
    return rec


def test_bundled_model_refuses_synthetic_non_speech(default_rec):
    from emovox.audio import probes

    passed = []
    for kind, name, y in probes.non_speech():
        try:
            default_rec.predict(y, sample_rate=probes.RATE)
        except NoSpeechError:  # the energy gate or the familiarity gate
            continue
        passed.append(name)
    assert not passed, f"given an emotion: {passed}"


def test_bundled_model_passes_held_out_and_distorted_speech(default_rec):
    import soundfile as sf

    from emovox.audio import probes

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac"))
    clips = list(examples)
    held = default_rec.config.get("training", {}).get("held_out", [])
    rav = SHARED / "ravdess"
    if rav.is_dir():  # actors the model never heard
        for key in held:
            actor = key.split(":")[-1]
            clips += sorted(rav.glob(f"**/03-01-*-{actor}.flac"))[::12]
    scores = []
    for path in clips:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
        for _, z in [("as recorded", y.mean(1)), *probes.speech_variants(y.mean(1), sr)]:
            pred = default_rec.predict(z, sample_rate=sr)  # raises if refused
            scores.append(pred.ood_score)
    assert len(scores) >= 15 and max(scores) < 1.0
    # several sentences in one file (longer than the training clips): judged by their loudest stretch, they pass
    from emovox.audio import load_audio

    joined = np.concatenate([p for c in examples for p in (np.zeros(8000, np.float32), load_audio(c, 16000))])
    assert len(joined) > 10 * 16000 and default_rec.predict(joined, sample_rate=16000).ood_score < 1.0
    with pytest.raises(UnknownSoundError):
        default_rec.predict(np.tile(probes.chords(3.0), 5), sample_rate=probes.RATE)  # 15 s of music


def test_timeline_leaves_unfamiliar_windows_out(default_rec):
    import soundfile as sf

    from emovox.audio import probes

    path = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac"))[0]
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    z = y.mean(1)
    if sr != probes.RATE:
        import soxr

        z = soxr.resample(z, sr, probes.RATE).astype(np.float32)
    gap = np.zeros(probes.RATE, np.float32)
    signal = np.concatenate([z, gap, probes.tone(440.0, 3.0), gap])
    tone_start = (len(z) + len(gap)) / probes.RATE
    tl = default_rec.timeline(signal, sample_rate=probes.RATE, vad="energy")
    assert tl.segments and all(s.end <= tone_start + 0.3 for s in tl.segments)
    assert tl.unknown and all(s >= tone_start - 0.5 for s, _ in tl.unknown)
    assert "unknown" in tl.to_dict()


def _gated_copy(tmp_path, threshold_from_tones: bool, normalize: str = "none"):
    """A seeded random model whose gate knows synthetic tones (fitted on their vectors) and not the probe farthest
    from them (its threshold between the two), saved; returns ``(folder, that probe)``."""
    import torch
    from helpers_models import SMALL

    from conftest import tone
    from emovox.audio import probes
    from emovox.features import FeatureConfig
    from emovox.inference import EmotionRecognizer
    from emovox.model import EmotionClassifier

    torch.manual_seed(0)
    model = EmotionClassifier("efficientnet_lite0", ["angry", "happy", "neutral", "sad"], weights=None, normalize=normalize)
    features = FeatureConfig(**SMALL)
    model.encoders[0].features = features
    rec = EmotionRecognizer(model)
    items = [rec.featurize(tone(f0, vib, seconds=1.2, seed=s), 16000)
             for f0 in (160, 200, 240, 280) for vib in (3.0, 6.0) for s in range(8)]
    vecs = rec.vectors(items).numpy()
    fam = Familiarity.fit(vecs, np.repeat([0, 1, 2, 3], 16), components=8)
    known = float(fam.distances(vecs).max())
    candidates = [probes.chirp(100, 7000, 2.0), probes.wave("square", 1000, 2.0), probes.noise("brown", 2.0),
                  probes.dtmf(), probes.chords(2.0)]
    far = fam.distances(rec.vectors([rec.featurize(y, 16000) for y in candidates]).numpy())
    odd = candidates[int(np.argmax(far))]
    assert far.max() > known * 1.2, "the random network tells none of the probes from the tones"
    model.familiarity = fam.with_threshold((known * float(far.max())) ** 0.5 if threshold_from_tones else 1e-9)
    return save_model(model, tmp_path / f"gated-{normalize}", features), odd


def test_a_refused_request_leaves_speaker_statistics_alone(tmp_path):
    from conftest import tone
    from emovox.inference import EmotionRecognizer

    folder, odd = _gated_copy(tmp_path, True, normalize="speaker")
    rec = EmotionRecognizer.load(folder)
    voice = [tone(220, 4.0, seconds=1.2, seed=s) for s in range(3)]
    assert rec.predict(voice[0], sample_rate=16000, speaker="ann").ood_score <= 1
    assert rec.speakers.count("ann") == 1
    with pytest.raises(UnknownSoundError):
        rec.predict([voice[1], odd], sample_rate=16000, speaker="ann")
    assert rec.speakers.count("ann") == 1  # the familiar file of the refused request did not count
    # NaN scores count as unfamiliar
    from emovox.model.familiar import unfamiliar

    assert unfamiliar(np.array([0.5, 1.0, 1.5, np.nan])).tolist() == [False, False, True, True]


def test_same_speaker_with_one_familiar_file_keeps_its_own_answer(tmp_path):
    from conftest import tone
    from emovox.inference import EmotionRecognizer

    folder, odd = _gated_copy(tmp_path, True, normalize="speaker")
    rec = EmotionRecognizer.load(folder)
    items = [rec.featurize(tone(220, 4.0, seconds=1.2, seed=1), 16000), rec.featurize(odd, 16000)]
    probs, ood = rec.assess(items, same_speaker=True)
    assert ood[0] <= 1 < ood[1]
    np.testing.assert_allclose(probs[0], rec.probabilities(items[:1])[0], rtol=1e-5)  # not a zero vector's answer


def test_an_exported_network_still_gets_the_gate(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from emovox.inference import EmotionRecognizer
    from emovox.inference.export import export_onnx

    folder, odd = _gated_copy(tmp_path, True)
    export_onnx(folder)
    with pytest.warns(UserWarning, match="PyTorch runs it"):
        rec = EmotionRecognizer.load(folder)
    assert rec.engine.name == "onnx"
    with pytest.raises(UnknownSoundError):
        rec.predict(odd, sample_rate=16000)
    assert EmotionRecognizer.load(folder, ood_gate=False).predict(odd, sample_rate=16000).ood_score is None


def test_a_live_stream_says_when_it_hears_something_unfamiliar(default_rec):
    from emovox.audio import probes

    gap = np.zeros(probes.RATE, np.float32)
    stream = default_rec.stream(probes.RATE, vad="energy")  # silero would not even call it voice activity
    events = []
    for block in np.array_split(np.concatenate([gap, probes.chords(3.0), gap, gap]), 20):
        events += stream.feed(block)
    events += stream.close()
    unknown = [ev for ev in events if ev.kind == "unknown"]
    assert unknown and not [ev for ev in events if ev.kind == "segment"]
    d = unknown[0].to_dict()
    assert d["type"] == "unknown" and d["ood_score"] > 1 and d["end"] > d["start"]
    assert stream.timeline().unknown


def test_second_opinion_raises_the_threshold_only_for_confirmed_speech():
    rng = np.random.default_rng(0)
    fam = Familiarity.fit(rng.standard_normal((80, 6)).astype(np.float32), rng.integers(0, 2, 80), components=4)
    assert fam.speech_ceiling == 1.0  # models saved before the second opinion: none
    scores = np.array([0.5, 1.5, 2.9, 3.5, 1.2], np.float32)
    np.testing.assert_array_equal(fam.second_opinion(scores, lambda i: True), scores)
    asked = []
    ceil = fam.with_info(speech_ceiling=3.0)

    def speech(i):
        asked.append(i)
        return i != 4

    out = ceil.second_opinion(scores, speech)
    assert asked == [1, 2, 4]  # only the unfamiliar ones under the ceiling are checked (the detector costs time)
    np.testing.assert_allclose(out, [0.5, 0.5, 2.9 / 3, 3.5, 1.2], rtol=1e-6)
    for bad in (0.5, "3", True, float("nan"), 1e9):
        with pytest.raises(ModelError, match="speech_ceiling"):
            fam.with_info(speech_ceiling=bad).speech_ceiling


def test_bundled_gate_asks_the_speech_detector_before_refusing(default_rec):
    """Real speech that lies a little further out than the threshold passes when silero hears speech in it; a tone
    at the same distance does not."""
    pytest.importorskip("silero_vad")
    from emovox.audio import load_audio, probes

    clip = Path(__file__).resolve().parents[1] / "examples" / "03-01-05-02-01-01-17.flac"
    rec = default_rec
    fam = rec.familiarity
    speech = rec.featurize(load_audio(clip, 16000), 16000)
    tone = rec.featurize(probes.tone(440.0), probes.RATE)
    raw = fam.distances(rec.vectors([speech, tone]).numpy())
    try:
        for item, d in ((speech, raw[0]), (tone, raw[1])):
            rec.familiarity = fam.with_threshold(d / 2.0).with_info(speech_ceiling=1.0)  # scores 2: refused
            assert rec.assess([item])[1][0] == pytest.approx(2.0, rel=1e-3)
            rec.familiarity = fam.with_threshold(d / 2.0).with_info(speech_ceiling=3.0)
            score = rec.assess([item])[1][0]
            if item is speech:
                assert score == pytest.approx(2.0 / 3.0, rel=1e-3)
                assert rec.predict(load_audio(clip, 16000), sample_rate=16000).label == "angry"
            else:
                assert score == pytest.approx(2.0, rel=1e-3)  # the detector hears no speech in a tone
                with pytest.raises(UnknownSoundError):
                    rec.predict(probes.tone(440.0), sample_rate=probes.RATE)
    finally:
        rec.familiarity = fam


def test_speech_evidence_hears_shouting_and_not_synthetic_sounds():
    pytest.importorskip("silero_vad")
    from emovox.audio import load_audio, probes
    from emovox.audio.vad import speech_evidence
    from emovox.model.familiar import CONFIRM_MEAN_P

    for clip in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.flac")):  # strong sad, angry, fear
        seconds, mean_p = speech_evidence(load_audio(clip, 16000), 16000)
        assert mean_p >= CONFIRM_MEAN_P, clip.name
    for kind, name, y in probes.non_speech():
        seconds, mean_p = speech_evidence(y, probes.RATE)
        assert seconds < 0.25 and mean_p < CONFIRM_MEAN_P, name
    assert speech_evidence(np.zeros(16000, np.float32), 16000) == (0.0, 0.0)


def test_a_model_folder_with_a_bad_speech_ceiling_is_refused_when_loading(tmp_path):
    import shutil

    from emovox.inference.recognizer import DEFAULT_MODEL

    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["familiarity"]["speech_ceiling"] > 1.0  # the bundled gate has its second opinion
    config["familiarity"]["speech_ceiling"] = -1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="speech_ceiling"):
        load_model(folder)
