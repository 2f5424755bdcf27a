"""Options of the web service (:class:`ServeConfig`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EmovoxError
from ..inference.results import UNCERTAIN_BELOW
from ..inference.segments import SegmentOptions

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """Options of the service.

    Attributes:
        max_upload_mb: largest accepted audio file, MiB (larger: HTTP 413).
        uncertain_below: a prediction whose top probability is below this is flagged ``uncertain``.
        workers: inference threads (requests beyond them wait their turn).
        max_pending: requests waiting or running at once before new ones get HTTP 503.
        tmp_dir: folder for the temporary upload files (default: the system's).
        segment_options: how timelines are made (:class:`~emovox.inference.segments.SegmentOptions`, or a dict of
            its fields); ``max_duration_s`` is set from ``max_audio_minutes``.
        upload_timeout_s: a request body must arrive within this many seconds (slow or stalled uploads get 408).
        queue_timeout_s: when ``max_pending`` requests are in progress, a new one waits this long for a slot before 503.
        max_audio_minutes: longest recording accepted for a timeline (``segments=true``), minutes.
        allowed_hosts: ``Host`` header values accepted (``None``: any; the CLI sets the bound address, which stops
            DNS-rebinding pages from reaching a service on this machine).
        allowed_origins: origins whose browser pages may POST or open a stream (the service's own page always
            may); other cross-origin requests get 403.
        max_streams: live streams (``/v1/stream``) open at once; one more is closed with code 1013.
        stream_idle_s: a stream that sends nothing for this long is closed (code 4408).
        max_stream_minutes: audio one stream may send, minutes (then it is closed, code 1008).
        max_frame_kb: largest binary message of a stream, KiB (larger: code 1009).
        max_ahead_s: audio may arrive this many seconds ahead of real time (a file streamed fast); a flood
            beyond it is closed (code 1008).
        send_timeout_s: a client that does not read its events for this long is dropped.
    """

    max_upload_mb: float = 25.0
    uncertain_below: float = UNCERTAIN_BELOW
    workers: int = 2
    max_pending: int = 32
    tmp_dir: str | Path | None = None
    segment_options: SegmentOptions | dict[str, Any] = field(default_factory=SegmentOptions)
    upload_timeout_s: float = 60.0
    queue_timeout_s: float = 10.0
    max_audio_minutes: float = 30.0
    allowed_hosts: tuple[str, ...] | None = None
    allowed_origins: tuple[str, ...] = ()
    max_streams: int = 16
    stream_idle_s: float = 10.0
    max_stream_minutes: float = 60.0
    max_frame_kb: float = 512.0
    max_ahead_s: float = 60.0
    send_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise EmovoxError(f"max_upload_mb must be positive, not {self.max_upload_mb}")
        if not 0 <= self.uncertain_below <= 1:
            raise EmovoxError(f"uncertain_below must be between 0 and 1, not {self.uncertain_below}")
        if self.workers < 1 or self.max_pending < 1:
            raise EmovoxError(f"workers and max_pending must be at least 1, not {self.workers} and {self.max_pending}")
        if min(self.upload_timeout_s, self.max_audio_minutes) <= 0 or self.queue_timeout_s < 0:
            raise EmovoxError("upload_timeout_s and max_audio_minutes must be positive, queue_timeout_s at least 0")
        if self.max_streams < 1 or min(self.stream_idle_s, self.max_stream_minutes, self.max_frame_kb, self.max_ahead_s,
                                       self.send_timeout_s) <= 0:
            raise EmovoxError("max_streams must be at least 1 and the stream limits positive")
        if self.tmp_dir is not None and not Path(self.tmp_dir).is_dir():
            raise EmovoxError(f"tmp_dir {self.tmp_dir}: not a folder")
        given = self.segment_options
        options = SegmentOptions.of(given if isinstance(given, SegmentOptions) else None,
                                    **({} if isinstance(given, SegmentOptions) else dict(given or {})))
        object.__setattr__(self, "segment_options", SegmentOptions.of(options, max_duration_s=self.max_audio_minutes * 60))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)
