"""API fuzzing: schemathesis makes requests from the OpenAPI schema of a live service (the app ``emovox serve`` runs,
on a loopback port, with a small model) and checks every answer: never a server error, and status, content type,
headers and body as the schema documents them.

Generated uploads are never audio, so another test puts real recordings (short, long with a pause, silent,
stereo at 44.1 kHz, FLAC) into otherwise generated requests: those reach the model, timelines and speaker heads."""
from __future__ import annotations

import io
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'emovox[serve]'")
schemathesis = pytest.importorskip("schemathesis", reason="API fuzzing needs schemathesis (the test extra)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emovox.serve.app import serve_app  # noqa: E402

from helpers_models import quiet, random_model, tone_signal  # noqa: E402
from helpers_server import running_server  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
#: Generated requests per operation and mode; bounded so the file takes well under a minute on 2 cores.
MAX_EXAMPLES = 50
#: Requests with real audio (each runs the model).
AUDIO_EXAMPLES = 40
#: Reproducible from run to run (a failure in CI is a failure on a laptop), no example database written.
CONFIG = {"seed": 24, "generation": {"deterministic": True, "database": "none"}}


def bounded(examples: int) -> settings:
    """Hypothesis settings: ``examples`` requests, reproducible, no time limit on one, no example database."""
    return settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def audio(y: np.ndarray, sr: int = 16000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt)
    return buf.getvalue()


CLIPS = {
    "short": audio(tone_signal("sad", 1.2)),
    "talk": audio(np.concatenate([tone_signal("angry", 2.5), quiet(1.5), tone_signal("sad", 2.5)]), fmt="FLAC"),
    "tiny": audio(tone_signal("neutral", 0.15)),
    "silent": audio(np.zeros(16000, np.float32)),
    "stereo": audio(np.stack([tone_signal("angry", 1.5, sr=44100), tone_signal("sad", 1.5, sr=44100)], 1), sr=44100),
}


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis keeps what it learns in a temporary folder, not in the working tree."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    uploads = root / "uploads"
    uploads.mkdir()
    # a speaker head too, so same_speaker and speaker keys are served rather than refused
    app = serve_app(random_model(root, normalize="speaker"), "127.0.0.1", tmp_dir=uploads,
                    segment_options={"vad": "energy"}, upload_timeout_s=10)
    with running_server(app) as url:
        yield url
    assert list(uploads.iterdir()) == [], "an upload was left in the temporary folder"


@pytest.fixture(scope="module")
def api_schema(live):
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json", config=schemathesis.Config.from_dict(CONFIG))
    assert urlsplit(schema.get_base_url()).hostname == "127.0.0.1"  # requests go to the loopback server only
    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_answers_as_documented(api_schema, mode):
    """Every operation of the schema, with requests that follow it (positive) and that break it (negative)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/predict", "GET /v1/labels", "GET /healthz"}
    if mode is GenerationMode.NEGATIVE:  # an operation without parameters or a body has nothing to break
        operations = [op for op in operations if op.body or any(True for _ in op.iter_parameters())]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @bounded(MAX_EXAMPLES)
        def answers_as_documented(case):
            case.call_and_validate(checks=CHECKS, timeout=30)

        answers_as_documented()


def test_requests_with_real_audio_answer_as_documented(api_schema):
    """Generated requests carrying real recordings, some with known speakers and voices to tell apart (generated
    keys are rarely printable, and generated voices rarely come with segments=true)."""
    predict = api_schema["/v1/predict"]["POST"]
    statuses = set()

    @given(case=predict.as_strategy(), files=st.lists(st.sampled_from(sorted(CLIPS)), min_size=1, max_size=3),
           speakers=st.sampled_from([None, "auto", "2"]), speaker=st.sampled_from([None, "alice", "bob"]))
    @bounded(AUDIO_EXAMPLES)
    def answers_as_documented(case, files, speakers, speaker):
        chosen = {"speakers": speakers, "segments": "true" if speakers else None, "speaker": speaker}
        fields = {k: v for k, v in chosen.items() if v is not None}
        case.query = {k: v for k, v in (case.query or {}).items() if k not in chosen}
        if case.media_type == "multipart/form-data":
            case.body = {k: v for k, v in case.body.items() if k not in chosen} | fields | {"file": [CLIPS[f] for f in files]}
        else:  # the raw body: one file
            case.body = CLIPS[files[0]]
            case.query |= fields
        statuses.add(case.call_and_validate(checks=CHECKS, timeout=60).status_code)

    answers_as_documented()
    assert 200 in statuses  # some requests got through to the model


def test_a_prediction_and_a_timeline_match_the_schema(api_schema):
    predict = api_schema["/v1/predict"]["POST"]
    for body in ({"file": [CLIPS["short"]]}, {"file": [CLIPS["short"], CLIPS["stereo"]], "same_speaker": True}):
        response = predict.Case(media_type="multipart/form-data", body=body).call_and_validate(checks=CHECKS, timeout=30)
        assert response.status_code == 200, response.text
    raw = predict.Case(media_type="application/octet-stream", body=CLIPS["talk"],
                       query={"segments": "true", "speakers": "auto", "filename": "talk.flac"})
    response = raw.call_and_validate(checks=CHECKS, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "talk.flac" and response.json()["timeline"]["source"] == "talk.flac"
