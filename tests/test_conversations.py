"""Conversations: voices told apart, a speaker per segment, adaptation per voice, and every face that shows it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emovox import EmotionRecognizer
from emovox.audio import load_audio
from emovox.errors import EmovoxError
from emovox.inference.voices import cluster_voices, parse_speakers

from conftest import SHARED_DATA
from helpers_models import quiet

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.flac"))  # actors 18, 17, 18
needs_voices = pytest.mark.skipif(__import__("importlib").util.find_spec("resemblyzer") is None,
                                  reason="the resemblyzer package (GE2E weights) is not installed")


def test_clustering_finds_the_groups_and_numbers_them_by_first_appearance():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 256))
    who = np.array([2, 2, 0, 1, 0, 1, 2, 0, 1, 1, 0, 2])
    x = centres[who] + 0.25 * rng.standard_normal((len(who), 256))
    expected = np.array([0, 0, 1, 2, 1, 2, 0, 1, 2, 2, 1, 0])  # S1 is whoever speaks first
    assert (cluster_voices(x, 3) == expected).all()
    assert (cluster_voices(x, "auto") == expected).all()
    one = centres[0] + 0.25 * rng.standard_normal((8, 256))
    assert (cluster_voices(one, "auto") == 0).all() and (cluster_voices(x, 1) == 0).all()
    assert cluster_voices(np.zeros((0, 256)), "auto").size == 0
    assert parse_speakers("AUTO") == "auto" and parse_speakers("2") == 2
    for bad in ("many", "0", "50"):
        with pytest.raises(EmovoxError, match="speakers must"):
            parse_speakers(bad)


@needs_voices
def test_the_speaker_encoder_tells_two_real_voices_apart():
    from emovox.inference.voices import VoiceEmbedder

    root = SHARED_DATA / "ravdess"
    if not root.is_dir():
        pytest.skip(f"real RAVDESS data not found at {root}")
    clips = {a: sorted((root / f"Actor_{a}").glob("*.flac"))[::10] for a in ("01", "02")}  # a man, a woman; 6 each
    emb = VoiceEmbedder.shared()
    e = {a: emb.embed_many([load_audio(p, 16000) for p in ps]) for a, ps in clips.items()}
    assert e["01"].shape == (6, 256) and np.allclose(np.linalg.norm(e["01"], axis=1), 1, atol=1e-4)
    same = np.mean([(e[a] @ e[a].T)[np.triu_indices(6, 1)].mean() for a in e])
    other = (e["01"] @ e["02"].T).mean()
    assert same > other + 0.1
    labels = cluster_voices(np.concatenate([e["01"], e["02"]]), 2)
    assert labels.tolist() == [0] * 6 + [1] * 6


def conversation(path: Path) -> list[tuple[float, float, str]]:
    """Actor 17 and actor 18 (the example clips) taking turns, 8 turns; (start, end, actor) of each."""
    clips = [load_audio(p, 16000) for p in EXAMPLES]
    order = [1, 0, 1, 2, 1, 0, 1, 2]
    parts, spans, t = [], [], 0
    for k in order:
        gap = quiet(0.8, level=0.0005)
        parts += [gap, clips[k]]
        t += gap.size
        spans.append((t / 16000, (t + clips[k].size) / 16000, "17" if k == 1 else "18"))
        t += clips[k].size
    sf.write(path, np.concatenate(parts + [quiet(0.8, level=0.0005)]), 16000)
    return spans


@pytest.fixture(scope="module")
def bundled() -> EmotionRecognizer:
    return EmotionRecognizer.load()


@needs_voices
def test_a_conversation_gets_a_speaker_per_segment_and_adaptation_per_voice(bundled, tmp_path):
    path = tmp_path / "call.flac"
    spans = conversation(path)
    tl = bundled.timeline(path, speakers=2, adapt="on")
    assert len(tl.segments) == len(spans)
    owner = [max(spans, key=lambda sp: min(sp[1], s.end) - max(sp[0], s.start))[2] for s in tl.segments]
    assert [s.speaker for s in tl.segments] == ["S1" if a == owner[0] else "S2" for a in owner]
    assert tl.speakers == ["S1", "S2"] and all(s.head == "speaker" for s in tl.segments)
    assert tl.adaptation == "speaker" and "2 speaker(s) told apart" in tl.adaptation_note
    assert all("speaker head" in note for note in tl.speaker_notes.values())
    summary = tl.to_dict()["speakers"]
    assert [s["speaker"] for s in summary] == ["S1", "S2"] and sum(s["segments"] for s in summary) == len(spans)
    for s in summary:
        mine = [seg for seg in tl.segments if seg.speaker == s["speaker"]]
        assert s["talk_seconds"] == pytest.approx(sum(x.end - x.start for x in mine), abs=1e-3)
        assert abs(sum(s["shares"].values()) - 1) < 1e-4 and 1 <= len(s["peaks"]) <= 3
    assert tl.to_csv().splitlines()[0].startswith("start,end,speaker,label")
    # Adaptation per voice: each speaker normalised by its own statistics -- not the mixed recording's.
    alone = [bundled.timeline(path, speakers=2, adapt="off").segments[i].probabilities for i in range(len(spans))]
    assert any(abs(a["angry"] - s.probabilities["angry"]) > 1e-3 for a, s in zip(alone, tl.segments))
    auto = bundled.timeline(path, speakers="auto")
    assert len(auto.speakers) == 2 and all(s.head == "file" for s in auto.segments)  # 4 segments each: fewer than 10
    assert "fewer than the 10 needed" in auto.speaker_notes["S1"]
    one = bundled.timeline(path)
    assert one.speakers == [] and all(s.speaker is None for s in one.segments) and "speakers" not in one.to_dict()


@needs_voices
def test_faces_cli_http_batch_and_plot(bundled, tmp_path, capsys):
    from emovox.cli import main
    from emovox.inference import plot_timeline

    path = tmp_path / "call.flac"
    conversation(path)
    assert main(["timeline", str(path), "--speakers", "2", "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "speaker" in out.splitlines()[0] and "  S1: " in out and "  S2: " in out and "most intense" in out
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("start,end,speaker,")
    assert main(["timeline", str(path), "--speakers", "lots"]) == 2
    assert "speakers must be" in capsys.readouterr().err
    png = plot_timeline(bundled.timeline(path, speakers=2), tmp_path / "t.png")
    assert png.stat().st_size > 10_000

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emovox.serve import create_app

    client = TestClient(create_app(bundled))
    with path.open("rb") as f:
        r = client.post("/v1/predict", data={"segments": "true", "speakers": "2"}, files={"file": ("call.flac", f, "audio/flac")})
    assert r.status_code == 200, r.text
    timeline = r.json()["timeline"]
    assert {s["speaker"] for s in timeline["segments"]} == {"S1", "S2"} and len(timeline["speakers"]) == 2
    with path.open("rb") as f:
        r = client.post("/v1/predict?speakers=auto", files={"file": ("call.flac", f, "audio/flac")})
    assert r.status_code == 422 and "segments=true" in r.json()["detail"]
    with path.open("rb") as f:
        r = client.post("/v1/predict?segments=true&speakers=x", files={"file": ("call.flac", f, "audio/flac")})
    assert r.status_code == 422 and "speakers must be" in r.json()["detail"]

    pytest.importorskip("pyarrow")
    from emovox.batch import read_dataset, run_batch

    s = run_batch(bundled, [str(path)], tmp_path / "out.parquet", segments=True, voices=2, progress=False)
    rows = read_dataset(tmp_path / "out.parquet").to_pylist()
    assert s.rows == len(rows) == 8 and {r["speaker"] for r in rows} == {"S1", "S2"} and rows[0]["head"] == "file"
    with pytest.raises(EmovoxError, match="needs timelines"):
        run_batch(bundled, [str(path)], tmp_path / "other.parquet", voices="auto", progress=False)
    assert json.loads(json.dumps(rows[0], default=str))["path"] == str(path)


def test_turns_split_a_region_where_the_voice_changes_and_keep_short_replies():
    from emovox.inference.turns import pieces, speaker_turns

    regions = [(0.0, 6.0), (6.5, 7.0), (8.0, 9.0)]
    spans = pieces(regions)
    assert spans[0] == (0.0, 1.5) and (6.5, 7.0) in spans and (8.0, 9.0) in spans  # short regions: one piece each
    assert all(b - a <= 1.5 + 1e-9 for a, b in spans)
    # voice 0 speaks until 3 s, voice 1 from there on, with no pause; the short reply is voice 2's, then voice 0
    mid = [(a + b) / 2 for a, b in spans]
    labels = [0 if m < 3.0 else 1 for m in mid[:-2]] + [2, 0]
    turns = speaker_turns(regions, spans, labels)
    assert [k for _, _, k in turns] == [0, 1, 2, 0]
    assert abs(turns[0][1] - 3.0) <= 0.4 and turns[1][1] == 6.0  # the region is cut near the change
    assert turns[2] == (6.5, 7.0, 2)  # a 0.5-s "yes" keeps its own voice
    # one piece of another voice inside a long turn claims only the middle of that piece (where no other piece
    # outweighs it), and two such pieces in a row a longer stretch
    flicker = [0] * len(spans[:-2])
    flicker[3] = 1
    turns = speaker_turns(regions[:1], spans[:-2], flicker)
    assert [k for _, _, k in turns] == [0, 1, 0] and turns[1][1] - turns[1][0] < 0.8
    assert spans[3][0] < turns[1][0] < turns[1][1] < spans[3][1]
    flicker[4] = 1
    longer = speaker_turns(regions[:1], spans[:-2], flicker)
    assert longer[1][1] - longer[1][0] > turns[1][1] - turns[1][0]


def test_diarization_error_counts_missed_false_alarm_and_confusion():
    pytest.importorskip("pyannote.metrics")
    from emovox.inference.turns import diarization_error

    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    assert diarization_error(ref, [(0.0, 10.0, "x"), (10.0, 20.0, "y")])["der"] == pytest.approx(0.0)
    wrong = diarization_error(ref, [(0.0, 20.0, "x")], collar=0.0)  # one voice found: B's 10 s confused
    assert wrong["confusion"] == pytest.approx(0.5) and wrong["missed"] == pytest.approx(0.0)
    half = diarization_error(ref, [(0.0, 10.0, "x")], collar=0.0)  # B not found at all: missed
    assert half["missed"] == pytest.approx(0.5) and half["der"] == pytest.approx(0.5)
    extra = diarization_error(ref, [(0.0, 10.0, "x"), (10.0, 25.0, "y")], collar=0.0)
    assert extra["false_alarm"] == pytest.approx(0.25)


@needs_voices
def test_three_real_voices_with_no_pause_between_two_of_them(tmp_path):
    """Three speakers, the second answering the first without a pause (one speech region, two voices): the timeline
    splits the region at the change and the turns score a low diarization error."""
    pytest.importorskip("pyannote.metrics")
    import librosa

    from emovox.inference.segments import SegmentOptions, voice_turns
    from emovox.audio.stream import ArraySource
    from emovox.audio.vad import speech_regions
    from emovox.inference.turns import diarization_error
    from emovox.inference.voices import VoiceEmbedder

    root = SHARED_DATA
    if not (root / "ravdess").is_dir() or not (root / "tess").is_dir():
        pytest.skip("real RAVDESS and TESS data not found")
    pick = {"m": sorted((root / "ravdess" / "Actor_01").glob("*.flac"))[10:14],
            "f": sorted((root / "ravdess" / "Actor_02").glob("*.flac"))[20:24],
            "o": sorted((root / "tess").glob("OAF_*/*.flac"))[:6]}
    rate = 16000

    def speech(p):
        y = load_audio(p, rate)
        _, (a, b) = librosa.effects.trim(y, top_db=35)
        return y[a:b]

    order = ["m", "f", "o", "m", "o", "f"]
    gaps = [0.6, 0.0, 0.8, 0.7, 0.0, 0.9]  # 0.0: the next voice starts at once
    used = {k: 0 for k in pick}
    parts, ref, t = [np.zeros(int(0.5 * rate), np.float32)], [], 0.5
    for who, gap in zip(order, gaps):
        y = np.concatenate([speech(p) for p in pick[who][used[who] : used[who] + 2]])
        used[who] += 2
        ref.append((t, t + y.size / rate, who))
        parts += [y, np.zeros(int(gap * rate), np.float32)]
        t += y.size / rate + gap
    y = np.concatenate(parts + [np.zeros(int(0.5 * rate), np.float32)])
    y = y + np.random.default_rng(0).standard_normal(y.size).astype(np.float32) * 3e-4
    regions = speech_regions(y, rate, vad="energy")
    assert len(regions) < len(ref)  # the detector joined turns: a region holds two voices
    turns = voice_turns(ArraySource(y, rate, "talk"), regions, VoiceEmbedder.shared(), SegmentOptions(speakers=3, vad="energy"))
    assert len({k for _, _, k in turns}) == 3
    der = diarization_error(ref, turns)
    assert der["der"] < 0.2, der
    one = diarization_error(ref, [(regions[0][0], regions[-1][1], "x")])  # what a single voice would score
    assert one["der"] > 0.4 and one["der"] > 3 * der["der"]
