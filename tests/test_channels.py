"""Simulated recording channels (rooms, telephone, codecs, babble, noise) and the channel copies training adds."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from conftest import tone

pytest.importorskip("pyroomacoustics")
pytest.importorskip("pedalboard")

from emovox.audio.channels import (CHANNELS, TRAINING_FAMILIES, Babble, Channel, Clip, Noise, Room, Telephone,  # noqa: E402
                                   channel, coloured_noise, mix_at_snr, room_response, training_channel)
from emovox.errors import EmovoxError  # noqa: E402

SR = 16000


def speechlike(seed: int = 0, seconds: float = 1.5) -> np.ndarray:
    """A harmonic tone with a bright noise burst: energy from 100 Hz to 8 kHz."""
    rng = np.random.default_rng(seed)
    y = tone(150.0 + 40 * seed, 4.0, seconds=seconds, seed=seed)
    burst = rng.standard_normal(len(y)).astype(np.float32) * 0.05
    burst[: len(y) // 2] = 0
    return (y + burst).astype(np.float32)


def band_energy(y: np.ndarray, lo: float, hi: float) -> float:
    f, p = sps.welch(y, SR, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].sum())


def pool(rng, n, sr):
    return [speechlike(seed=10 + int(k)) for k in rng.integers(0, 5, n)]


@pytest.mark.parametrize("name", list(CHANNELS))
def test_every_channel_is_seeded_keeps_length_and_stays_in_range(name):
    y = speechlike()
    a, again, other = (CHANNELS[name].apply(y, SR, s, pool) for s in (3, 3, 4))
    assert a.shape == y.shape and a.dtype == np.float32 and np.isfinite(a).all() and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, again)  # the same seed: the same copy on every run
    if name == "clean":
        np.testing.assert_array_equal(a, y)
    else:
        assert not np.allclose(a, y, atol=1e-4)
        if name not in ("mp3", "narrowband", "telephone"):  # fixed settings: one seed may equal another
            assert not np.allclose(a, other, atol=1e-4)


def test_telephone_keeps_the_voice_band_and_removes_the_rest():
    y = speechlike()
    out = CHANNELS["telephone"].apply(y, SR, 0)
    assert band_energy(out, 4200, 8000) < 1e-3 * band_energy(y, 4200, 8000)  # 8-kHz codec: nothing above 4 kHz
    assert band_energy(out, 50, 200) < 0.1 * band_energy(y, 50, 200)  # 300-Hz high-pass
    assert band_energy(out, 500, 3000) > 0.05 * band_energy(y, 500, 3000)  # the voice band goes through


def test_room_reverberation_grows_with_rt60():
    def tail(rt60):  # share of the response's energy after 50 ms
        h = room_response(1, rt60, 2.0, SR).astype(np.float64)
        peak = int(np.argmax(np.abs(h)))
        return float(np.sum(h[peak + SR // 20 :] ** 2) / np.sum(h ** 2))

    assert tail(0.3) < tail(0.8)
    impulse = np.zeros(SR, np.float32)
    impulse[100] = 0.5
    out = Channel("r", (Room(rt60=(0.8, 0.8)),)).apply(impulse, SR, 0)
    assert np.count_nonzero(np.abs(out) > 1e-3 * np.abs(out).max()) > SR // 10  # one click becomes a long decay


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_and_babble_are_mixed_at_the_asked_snr(snr):
    y = speechlike()
    other = speechlike(seed=3)
    mixed = mix_at_snr(y, other, snr)
    noise = mixed - y
    assert 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2)) == pytest.approx(snr, abs=0.01)
    out = Channel("n", (Noise(snr_db=(snr, snr)),)).apply(y, SR, 5)
    measured = 10 * np.log10(np.mean(y ** 2) / np.mean((out - y) ** 2))
    assert measured == pytest.approx(snr, abs=0.3)  # (clipping at full scale aside)
    for colour in ("white", "pink", "brown"):
        n = coloured_noise(SR, colour, np.random.default_rng(0))
        assert np.std(n) == pytest.approx(1.0, abs=1e-3)
    pink, white = (coloured_noise(4 * SR, c, np.random.default_rng(0)) for c in ("pink", "white"))
    assert band_energy(pink, 50, 500) / band_energy(pink, 4000, 8000) > 5 * band_energy(white, 50, 500) / band_energy(white, 4000, 8000)


def test_babble_needs_other_voices_and_uses_them():
    y = speechlike()
    with pytest.raises(EmovoxError, match="other voices"):
        Channel("b", (Babble(),)).apply(y, SR, 0)
    drawn = []

    def voices(rng, n, sr):
        drawn.append(n)
        return pool(rng, n, sr)

    out = Channel("b", (Babble(snr_db=(10.0, 10.0), talkers=(3, 3)),)).apply(y, SR, 0, voices)
    assert drawn == [3] and not np.allclose(out, y)


def test_clipping_and_chains():
    y = speechlike()
    clipped = Channel("c", (Clip(factor=(4.0, 4.0)),)).apply(y, SR, 0)
    peak = np.abs(y).max()
    assert np.mean(np.abs(clipped) >= 0.999 * peak) > 0.05  # flat tops
    far = CHANNELS["far"]
    assert [type(s) for s in far.steps] == [Room, Babble, Telephone]


def test_training_channels_are_drawn_from_every_family_by_seed():
    names = [training_channel(s).name for s in range(400)]
    assert names == [training_channel(s).name for s in range(400)]
    assert set(names) == {c.name for _, c in TRAINING_FAMILIES}
    with pytest.raises(EmovoxError, match="unknown channel"):
        channel("underwater")


def test_channel_copies_are_seeded_cached_and_babble_from_other_speakers(tone_corpus, tmp_path):
    import soundfile as sf

    from emovox.audio import load_audio
    from emovox.corpora import load_folder
    from emovox.encoders.speech import SPEECH_RATE
    from emovox.training import augment

    utts = [u for u in load_folder(tone_corpus) if u.speaker in ("s1", "s2")][:6]
    path = utts[0].path
    pool_ = augment.VoicesOf(tuple(str(u.path) for u in utts), tuple(u.speaker_key for u in utts))
    a, name = augment.channel_signal(path, 1, pool_)
    b, _ = augment.channel_signal(path, 1, pool_)
    c, _ = augment.channel_signal(path, 2, pool_)
    np.testing.assert_array_equal(a, b)
    assert not (len(a) == len(c) and np.allclose(a, c))
    original, _ = sf.read(path, dtype="float32")
    assert len(a) == len(original) and name in {ch.name for _, ch in TRAINING_FAMILIES}

    me = utts[0].speaker_key
    mine = [load_audio(u.path, SPEECH_RATE) for u in utts if u.speaker_key == me]
    theirs = [load_audio(u.path, SPEECH_RATE) for u in utts if u.speaker_key != me]
    drawn = augment.VoicesOf(pool_.paths, pool_.speakers, exclude=me)(np.random.default_rng(0), 8, SPEECH_RATE)
    assert len(drawn) == 8
    assert all(any(len(v) == len(t) and np.array_equal(v, t) for t in theirs) for v in drawn)
    assert not any(len(v) == len(m) and np.array_equal(v, m) for v in drawn for m in mine)
    with pytest.raises(EmovoxError, match="other speaker"):
        augment.VoicesOf(pool_.paths[:1], pool_.speakers[:1], exclude=pool_.speakers[0])(np.random.default_rng(0), 1, SPEECH_RATE)

    from emovox.training.data import _Readable

    class Raw(_Readable):  # the waveform itself as the "input": cheap, and shows what the channel did
        cached = True

        def __call__(self, y, sr, source="<array>"):
            return y

    cache = tmp_path / "cache"
    out_utts, inputs, keys = augment.channel_inputs(utts, 2, [Raw(SPEECH_RATE)], cache_dir=cache, progress=False, workers=1)
    assert [u.speaker for u in out_utts] == [f"{u.speaker}~aug-ch{k}" for k in (1, 2) for u in utts]
    assert [u.emotion for u in out_utts] == [u.emotion for u in utts] * 2
    assert len(set(keys)) == len(keys) and all(keys)
    np.testing.assert_array_equal(inputs[0][0], augment.channel_signal(utts[0].path, 1, pool_)[0])
    assert len(list(cache.rglob("*.npy"))) == 2 * len(utts)
    again = augment.channel_inputs(utts, 2, [Raw(SPEECH_RATE)], cache_dir=cache, progress=False, workers=1)
    np.testing.assert_array_equal(again[1][0][7], inputs[0][7])


def test_channel_copies_only_for_frozen_encoders():
    from emovox.training.config import TrainConfig

    with pytest.raises(EmovoxError, match="channels must be 0 or more"):
        TrainConfig(channels=-1)
    with pytest.raises(EmovoxError, match="frozen backbone"):
        TrainConfig(channels=1, finetune="all")
    assert TrainConfig(channels=2).channels == 2


def test_evaluate_through_a_channel(tone_corpus, tmp_path, capsys):
    from helpers_models import tone_model

    from emovox.cli import main
    from emovox.corpora import load_folder
    from emovox.inference import EmotionRecognizer
    from emovox.training.evaluate import evaluate

    model = tone_model(tmp_path)
    rec = EmotionRecognizer.load(model)
    utts = load_folder(tone_corpus)
    cache = tmp_path / "cache"
    clean = evaluate(rec, utts, cache_dir=cache, progress=False)
    phone = evaluate(rec, utts, cache_dir=cache, progress=False, channel="telephone")
    assert clean["n"] == phone["n"] == len(utts) and phone["channel"] == "telephone" and "channel" not in clean
    assert clean["accuracy"] > 0.9  # the tones are told apart as recorded
    noisy = evaluate(rec, utts, cache_dir=cache, progress=False, channel="babble")
    again = evaluate(rec, utts, cache_dir=cache, progress=False, channel="babble")
    assert again["accuracy"] == noisy["accuracy"] and again["confusion"] == noisy["confusion"]  # seeded: the same copies
    assert main(["evaluate", str(model), "--corpus", "folder", "--data", str(tone_corpus), "--channel", "far", "--quiet",
                 "--cache-dir", str(cache)]) == 0
    assert "through the simulated channel: far" in capsys.readouterr().out


def test_training_with_channel_copies_learns_and_records_them(tone_corpus, tmp_path):
    import json

    from emovox.corpora import load_folder
    from emovox.features import FeatureConfig
    from emovox.inference import EmotionRecognizer
    from emovox.training.train import TrainConfig, train

    utts = load_folder(tone_corpus)
    cfg = TrainConfig(split="speaker", test_speakers=("s4",), val_speakers=("s3",), solver="logreg", channels=1,
                      familiarity=False)
    logs: list[str] = []
    summary = train(utts, tmp_path / "run", cfg, FeatureConfig(duration=1.0, image_size=64), workers=1,
                    cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    sizes = summary["sizes"]
    n_train = sum(u.speaker in ("s1", "s2") for u in utts)
    assert sizes["train"] == 2 * n_train and sizes["test"] == sum(u.speaker == "s4" for u in utts)  # copies train only
    assert any("1 channel copy(ies)" in m for m in logs) and summary["timings"]["channels_s"] > 0
    assert summary["metrics"]["accuracy"] > 0.6  # 3 tones: chance is 1/3
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["training"]["channels"] == 1
    rec = EmotionRecognizer.load(tmp_path / "run" / "model")
    assert rec.predict(tone(320.0, 9.0, seed=77), sample_rate=SR).label == "angry"
