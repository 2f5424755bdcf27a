"""Reading a request: its audio streamed into temporary files with the size limit enforced while reading, small
form fields kept, and every problem a :class:`Reject` with its HTTP status."""
from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from .config import MIB

#: Room for multipart headers and small form fields on top of the file limit.
BODY_OVERHEAD = 64 * 1024
#: Largest non-file form field, bytes.
MAX_FIELD_BYTES = 4096
#: After a 413, this many extra bytes are read and discarded so the client sees the answer.
DRAIN_BYTES = 8 * MIB
#: Most audio files in one request (several ``file`` parts).
MAX_FILES = 64
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class Reject(Exception):
    """Ends a request with an HTTP error (after the body has been dealt with)."""

    def __init__(self, status: int, detail: str, **extra: object):
        super().__init__(detail)
        self.status, self.detail = status, detail
        #: more fields of the error body (``unknown``, ``ood_score``)
        self.extra = extra


class TooLarge(Exception):
    pass


@dataclass
class UploadedFile:
    filename: str
    path: Path
    content_type: str | None = None
    size: int = 0


@dataclass
class Upload:
    """What a request carried: its audio files (each streamed to a temporary file) and small form fields."""

    tmp_dir: str | Path | None = None
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    out: BinaryIO | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def new_file(self, filename: str, content_type: str | None) -> None:
        self.close()
        fd, name = tempfile.mkstemp(prefix="emovox-upload-", dir=self.tmp_dir)
        self.files.append(UploadedFile(filename, Path(name), content_type))
        self.out = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self.out is not None
        self.out.write(data)
        self.files[-1].size += len(data)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def cleanup(self) -> None:
        self.close()
        for f in self.files:
            f.path.unlink(missing_ok=True)


class FormReader:
    """Multipart callbacks: every ``file`` part streams into its own temporary file, small text fields are kept."""

    def __init__(self, upload: Upload, max_bytes: int):
        self.upload, self.max_bytes = upload, max_bytes
        self.header_name, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.mode = "skip"  # "file", "field" or "skip"
        self.name = ""
        self.value = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin, "on_part_data": self.on_part_data, "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.headers, self.mode, self.name, self.value = {}, "skip", "", bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_name.strip().lower()] = self.header_value.strip()
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options or self.name == "file":  # a 'file' part sent without a filename is still the audio
            if self.name != "file":
                raise Reject(422, f"send audio in form fields named 'file', not {self.name[:64]!r}")
            if len(self.upload.files) >= MAX_FILES:
                raise Reject(422, f"at most {MAX_FILES} files per request")
            self.mode = "file"
            ctype = self.headers.get(b"content-type")
            self.upload.new_file(safe_name(options.get(b"filename", b"").decode("utf-8", "replace")), ctype.decode("latin-1") if ctype else None)
        else:
            self.mode = "field"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self.mode == "file":
            if self.upload.size + n > self.max_bytes:
                raise TooLarge()
            self.upload.write(data[start:end])
        elif self.mode == "field":
            if len(self.value) + n > MAX_FIELD_BYTES:
                raise Reject(422, f"form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes")
            self.value += data[start:end]

    def on_part_end(self) -> None:
        if self.mode == "file":
            self.upload.close()
        if self.mode == "field" and self.name:
            self.upload.fields[self.name] = self.value.decode("utf-8", "replace")
        self.mode = "skip"


def safe_name(name: str) -> str:
    """The base name of an uploaded file, for messages only (it never becomes a path)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "".join(c for c in base if c.isprintable())[:200] or "upload"


async def receive(request: Request, upload: Upload, max_bytes: int, filename: str | None = None) -> Upload:
    """Stream the request body into ``upload``'s temporary files (a raw body: one file, named ``filename``); raises
    :class:`Reject` for a bad or oversized upload."""
    body_limit = max_bytes + BODY_OVERHEAD
    too_large_msg = f"upload is larger than the limit of {round(max_bytes / MIB, 3):g} MiB"
    ctype = request.headers.get("content-type", "")
    kind, params = parse_options_header(ctype)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        if int(declared) > body_limit + DRAIN_BYTES:
            raise Reject(413, too_large_msg)  # too much to drain: answer now, the connection will close
        await drain(request.stream(), DRAIN_BYTES + body_limit)
        raise Reject(413, too_large_msg)

    parser: MultipartParser | None = None
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise Reject(422, "multipart body without a boundary in its Content-Type")
        parser = MultipartParser(boundary, FormReader(upload, max_bytes).callbacks())
    elif kind == b"application/x-www-form-urlencoded":
        raise Reject(415, "send the audio as multipart/form-data (field 'file') or as the raw request body, not as a URL-encoded form")
    else:
        upload.new_file(safe_name(filename or "upload"), ctype or None)

    stream = request.stream()
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > body_limit:
                raise TooLarge()
            if parser is not None:
                parser.write(chunk)
            else:
                if received > max_bytes:
                    raise TooLarge()
                upload.write(chunk)
        if parser is not None:
            parser.finalize()
    except TooLarge:
        await drain(stream, DRAIN_BYTES)
        raise Reject(413, too_large_msg) from None
    except MultipartParseError as err:
        raise Reject(422, f"malformed multipart body ({err})") from None
    except ClientDisconnect:
        raise Reject(400, "the client disconnected during the upload") from None
    finally:
        upload.close()
    if not upload.files:
        raise Reject(422, "no audio file in the request: send it in a multipart field named 'file'")
    for f in upload.files:
        if f.size == 0:
            raise Reject(422, f"{f.filename}: file is empty (0 bytes)")
    return upload


async def drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and discard up to ``limit`` more bytes, so a client still sending can read the error."""
    n = 0
    try:
        async for chunk in stream:
            n += len(chunk)
            if n > limit:
                break
    except ClientDisconnect:
        pass


def flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise Reject(422, f"{name} must be true or false, not {value!r}")
