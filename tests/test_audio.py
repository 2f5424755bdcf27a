import numpy as np
import pytest
import soundfile as sf

from emovox.audio import fix_length, load_audio, prepare_signal
from emovox.errors import AudioError

from conftest import tone


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_formats_rates_and_channels_decode_to_mono_16k(tmp_path, fmt, ext):
    sr = 44100
    y = tone(220.0, 4.0, sr=sr, seconds=1.0)
    stereo = np.stack([y, 0.5 * y], axis=1)
    p = tmp_path / f"clip{ext}"
    sf.write(p, stereo, sr, format=fmt)
    out = load_audio(p, 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16000) < 1200  # mp3 adds encoder padding
    # the down-mix is the channel mean, so its peak sits near 0.75 * peak(y)
    assert 0.5 < np.abs(out).max() / np.abs(y).max() < 0.95


def test_trim_and_duration_policy(tmp_path):
    sr = 16000
    y = np.concatenate([np.zeros(sr), tone(200.0, 0.0, seconds=0.5), np.zeros(sr)])
    p = tmp_path / "padded.wav"
    sf.write(p, y, sr)
    assert load_audio(p).size == y.size
    trimmed = load_audio(p, trim=True)
    assert 0.4 * sr < trimmed.size < 0.7 * sr
    assert load_audio(p, trim=True, duration=2.0).size == 2 * sr
    assert load_audio(p, duration=1.0).size == sr


def test_fix_length_crops_centre_and_pads_end():
    y = np.arange(10, dtype=np.float32)
    assert fix_length(y, 4).tolist() == [3, 4, 5, 6]
    assert fix_length(y, 12).tolist() == list(range(10)) + [0, 0]


def test_array_input_is_resampled():
    y = tone(200.0, 0.0, sr=8000, seconds=1.0)
    out = prepare_signal(y, 8000, 16000)
    assert out.size == 16000


def _write(path, data):
    if isinstance(data, str):
        path.write_text(data)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        sf.write(path, data, 16000)
    return path


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda d: d / "missing.wav", "not found"),
        (lambda d: _write(d / "empty.wav", b""), "empty"),
        (lambda d: _write(d / "noise.wav", np.random.default_rng(0).bytes(5000)), "not a readable audio file"),
        (lambda d: _write(d / "notes.txt", "hello, I am not audio\n" * 20), "not a readable audio file"),
        (lambda d: _write(d / "silent.wav", np.zeros(16000)), "silent"),
        (lambda d: d, "folder"),
    ],
)
def test_bad_inputs_raise_audio_error_naming_file_and_problem(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_truncated_header_is_reported(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(200.0, 0.0), 16000)
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match="truncated.wav"):
        load_audio(bad)


def test_nan_signal_rejected():
    with pytest.raises(AudioError, match="NaN"):
        prepare_signal(np.array([0.1, np.nan, 0.2]), 16000)


def test_trim_and_resample_match_librosa():
    """The prediction path trims and resamples without librosa; the results are librosa's, sample for sample."""
    import librosa

    from emovox.audio import resample, trim_silence

    rng = np.random.default_rng(0)
    for k in range(5):
        y = np.concatenate([1e-5 * rng.standard_normal(3000 + 700 * k), 0.3 * rng.standard_normal(9000),
                            1e-5 * rng.standard_normal(5000)]).astype(np.float32)
        for top_db in (30.0, 60.0):
            np.testing.assert_array_equal(trim_silence(y, top_db), librosa.effects.trim(y, top_db=top_db)[0])
        for sr, target in ((44100, 16000), (8000, 16000), (16000, 22050)):
            ref = librosa.resample(y, orig_sr=sr, target_sr=target, res_type="soxr_hq")
            out = resample(y, sr, target)
            assert out.shape == ref.shape and out.dtype == np.float32
            np.testing.assert_allclose(out, ref, atol=1e-6)
    assert trim_silence(np.zeros(100, np.float32)).size == 100  # all equally quiet: nothing to trim, as librosa
