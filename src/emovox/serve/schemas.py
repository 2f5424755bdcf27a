"""Response models and the request body of ``POST /v1/predict``, as ``/docs`` shows them."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .upload import MAX_FILES

#: Longest speaker key a request may give.
MAX_SPEAKER_KEY = 200
#: What ``speakers`` may be: ``auto``, or a number of voices from 1 to 20.
SPEAKERS_PATTERN = "^(auto|[1-9]|1[0-9]|20)$"


class PredictResponse(BaseModel):
    filename: str = Field(description="name of the uploaded file")
    label: str = Field(description="most probable emotion")
    confidence: float = Field(description="probability of that emotion")
    probabilities: dict[str, float] = Field(description="probability of every label, in the model's order")
    uncertain: bool = Field(description="true when the top probability is below the service's threshold")
    threshold: float = Field(description="the threshold used for `uncertain`")
    timeline: dict[str, Any] | None = Field(None, description="emotion over time (only with segments=true)")
    speaker: str | None = Field(None, description="the speaker key given with the request")
    head: str | None = Field(None, description="with a speaker key: 'speaker' (normalised by that speaker's running statistics) "
                                               "or 'file' (too few of its recordings so far)")
    ood_score: float | None = Field(None, description="distance from the model's training speech as a multiple of its threshold "
                                                      "(below 1 here; a file above 1 is refused with 422, unknown=true)")


class BatchResponse(BaseModel):
    files: list[PredictResponse] = Field(description="one result per uploaded file, in upload order")
    same_speaker: bool = Field(description="true when the files were classified together as one speaker's recordings")


class LabelsResponse(BaseModel):
    labels: list[str]


class HealthResponse(BaseModel):
    status: str
    version: str
    labels: int
    pending: int
    workers: int
    max_upload_mb: float
    streams: int = 0
    max_streams: int = 0


class ErrorResponse(BaseModel):
    detail: str
    unknown: bool | None = Field(None, description="true when the file is unlike all the speech the model knows (a tone, "
                                                   "music, noise): it gets no emotion")
    ood_score: float | None = Field(None, description="with unknown=true: its distance from the training speech as a "
                                                      "multiple of the model's threshold (above 1)")


PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1,
                             "maxItems": MAX_FILES,
                             "description": "audio file(s) (wav, flac, ogg, mp3, ...); several give one result each"},
                    "segments": {"type": "boolean", "description": "also return the emotion timeline"},
                    "adapt": {"type": "string", "enum": ["auto", "on", "off"], "description": "speaker adaptation of the timeline"},
                    "same_speaker": {"type": "boolean", "description": "several files of ONE speaker: classify them together with the speaker head"},
                    "speaker": {"type": "string", "maxLength": MAX_SPEAKER_KEY,
                                "description": "key of a known speaker: adapt to it with running statistics"},
                    "speakers": {"type": "string", "pattern": SPEAKERS_PATTERN,
                                 "description": "with segments: 'auto' or a number tells the timeline's voices apart"},
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": "raw audio file"}},
    },
}
