"""`emovox download` against a local HTTP server on 127.0.0.1 (no other network)."""
import dataclasses
import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emovox.corpora import download as dl
from emovox.corpora import ravdess
from emovox.errors import CorpusError

RAVDESS_FILES = (
    "Actor_01/03-01-01-01-01-01-01.wav",
    "Actor_01/03-01-05-02-02-01-01.wav",
    "Actor_02/03-01-08-01-01-02-02.wav",
)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _ravdess_zip() -> bytes:
    # distinct, not very compressible payloads so a partial download is meaningful
    return _zip({name: b"RIFF" + hashlib.sha256(name.encode()).digest() * 200 for name in RAVDESS_FILES})


class _Server:
    """Serves ``files`` (path -> bytes); honours Range only when ``ranges`` is true."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                owner.requests.append((self.path, rng))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404, "not here")
                    return
                start = 0
                if rng and owner.ranges:
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/zip")
                self.end_headers()
                # Counted before writing: the client may finish reading before this thread runs again.
                owner.bytes_sent += len(body)
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def ravdess_zip(server, monkeypatch):
    """The test zip served at /ravdess.zip, registered as the RAVDESS source with its md5."""
    data = _ravdess_zip()
    server.files["/ravdess.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=len(RAVDESS_FILES), md5=hashlib.md5(data).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    return data


def _leftovers(to: Path) -> list[str]:
    return sorted(p.name for p in to.iterdir()) if to.exists() else []


def test_download_verifies_and_extracts_into_loader_layout(tmp_path, server, ravdess_zip):
    log: list[str] = []
    dest = dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=True, log=log.append)
    assert dest == tmp_path / "ravdess"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)
    assert _leftovers(tmp_path) == ["ravdess"]  # no archive, .part or staging folder left behind
    text = "\n".join(log)
    assert "CC BY-NC-SA 4.0" in text and "https://zenodo.org/record/1188976" in text
    assert log[0].startswith("RAVDESS")  # license first, before anything is fetched
    assert server.requests == [("/ravdess.zip", None)]
    utts = ravdess.load(dest)
    assert sorted(u.emotion for u in utts) == ["angry", "neutral", "surprise"]


def test_second_call_is_a_no_op(tmp_path, server, ravdess_zip):
    dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=lambda s: None)
    stamp = (tmp_path / "ravdess" / RAVDESS_FILES[0]).stat().st_mtime_ns
    log: list[str] = []
    dest = dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=log.append)
    assert dest == tmp_path / "ravdess"
    assert len(server.requests) == 1
    assert any("already present" in line and "nothing to do" in line for line in log)
    assert (dest / RAVDESS_FILES[0]).stat().st_mtime_ns == stamp


def test_checksum_mismatch_raises_and_leaves_nothing(tmp_path, server, ravdess_zip, monkeypatch):
    monkeypatch.setitem(dl.SOURCES, "ravdess", dataclasses.replace(dl.SOURCES["ravdess"], md5="0" * 32))
    with pytest.raises(dl.ChecksumError, match=r"md5 .* does not match the published 0{32}") as err:
        dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=lambda s: None)
    assert "run again" in str(err.value)
    assert _leftovers(tmp_path) == []
    assert isinstance(err.value, CorpusError)


def test_resumes_a_partial_download_with_range(tmp_path, server, ravdess_zip):
    half = len(ravdess_zip) // 2
    (tmp_path / "Audio_Speech_Actors_01-24.zip.part").write_bytes(ravdess_zip[:half])
    log: list[str] = []
    dest = dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=log.append)
    assert server.requests == [("/ravdess.zip", f"bytes={half}-")]
    assert server.bytes_sent == len(ravdess_zip) - half
    assert any("resuming at byte" in line for line in log)
    assert len(list(dest.rglob("*.wav"))) == len(RAVDESS_FILES)
    assert _leftovers(tmp_path) == ["ravdess"]


def test_restarts_when_the_server_ignores_range(tmp_path, server, ravdess_zip):
    server.ranges = False
    (tmp_path / "Audio_Speech_Actors_01-24.zip.part").write_bytes(b"stale bytes from another file")
    log: list[str] = []
    dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=log.append)
    assert server.bytes_sent == len(ravdess_zip)
    assert any("starting again from zero" in line for line in log)
    assert _leftovers(tmp_path) == ["ravdess"]


def test_complete_partial_file_answered_416_is_verified(tmp_path, server, ravdess_zip):
    (tmp_path / "Audio_Speech_Actors_01-24.zip.part").write_bytes(ravdess_zip)
    dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=lambda s: None)
    assert server.bytes_sent == 0
    assert _leftovers(tmp_path) == ["ravdess"]


def test_never_overwrites_an_existing_folder(tmp_path, server, ravdess_zip):
    mine = tmp_path / "ravdess" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("my notes")
    with pytest.raises(dl.DownloadError, match="not overwriting"):
        dl.download("ravdess", tmp_path, url=server.url("/ravdess.zip"), progress=False, log=lambda s: None)
    assert mine.read_text() == "my notes"
    assert server.requests == []


def test_wrong_file_count_writes_nothing(tmp_path, server, monkeypatch):
    data = _zip({"Actor_01/03-01-01-01-01-01-01.wav": b"RIFF"})
    server.files["/short.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=3, md5=hashlib.md5(data).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    with pytest.raises(dl.DownloadError, match="holds 1 files .* has 3"):
        dl.download("ravdess", tmp_path, url=server.url("/short.zip"), progress=False, log=lambda s: None)
    assert "ravdess" not in _leftovers(tmp_path)
    assert not any(name.endswith(".extracting") for name in _leftovers(tmp_path))


def test_single_top_folder_in_archive_is_stripped(tmp_path, server, monkeypatch):
    data = _zip({f"wrapped/{name}": b"RIFF" for name in RAVDESS_FILES} | {"__MACOSX/._x": b""})
    server.files["/wrapped.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=3, md5=None)
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    dest = dl.download("ravdess", tmp_path, url=server.url("/wrapped.zip"), progress=False, log=lambda s: None)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)


def test_corrupt_zip_without_checksum_is_deleted(tmp_path, server, monkeypatch):
    server.files["/bad.zip"] = b"PK\x03\x04 this is not really a zip"
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        dl.download("emodb", tmp_path, url=server.url("/bad.zip"), progress=False, log=lambda s: None)
    assert _leftovers(tmp_path) == []


def test_unsafe_member_paths_are_refused(tmp_path, server, monkeypatch):
    server.files["/evil.zip"] = _zip({"../escape.wav": b"x", "wav/03a01Fa.wav": b"RIFF"})
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    with pytest.raises(dl.DownloadError, match="unsafe member"):
        dl.download("emodb", tmp_path, url=server.url("/evil.zip"), progress=False, log=lambda s: None)
    assert not (tmp_path.parent / "escape.wav").exists()
    assert "emodb" not in _leftovers(tmp_path)


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download("emodb", tmp_path, url=server.url("/missing.zip"), progress=False, log=lambda s: None)


@pytest.mark.parametrize("corpus, words", [("savee", "Register"), ("cremad", "git lfs pull"), ("tess", "10.5683/SP2/E8H2MF")])
def test_manual_corpora_raise_with_instructions(tmp_path, corpus, words):
    log: list[str] = []
    with pytest.raises(dl.ManualDownloadRequired) as err:
        dl.download(corpus, tmp_path, progress=False, log=log.append)
    msg = str(err.value)
    assert words in msg
    assert str(tmp_path / corpus) in msg  # where to put the files
    assert "license" in log[0]
    assert isinstance(err.value, CorpusError)


def test_manual_corpus_already_in_place_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setitem(dl.SOURCES, "savee", dataclasses.replace(dl.SOURCES["savee"], expected_files=2))
    for name in ("DC/a01.wav", "KL/sa02.wav"):
        p = tmp_path / "savee" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"RIFF")
    log: list[str] = []
    assert dl.download("savee", tmp_path, progress=False, log=log.append) == tmp_path / "savee"
    assert any("nothing to do" in line for line in log)


def test_git_lfs_pointer_files_are_detected(tmp_path):
    p = tmp_path / "cremad" / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    p.parent.mkdir(parents=True)
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n")
    with pytest.raises(dl.ManualDownloadRequired, match="Git LFS pointer"):
        dl.download("cremad", tmp_path, progress=False, log=lambda s: None)


def test_unknown_corpus(tmp_path):
    with pytest.raises(CorpusError, match="choose from ravdess"):
        dl.download("iemocap", tmp_path, log=lambda s: None)
    assert dl.source("CREMA-D").name == "cremad"


def test_cli_download_manual_corpus_prints_instructions(tmp_path, capsys):
    from emovox.cli import main

    assert main(["download", "savee", "--to", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "savee" in err.lower() and "emovox: error:" in err
