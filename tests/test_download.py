"""`emovox download` against a local HTTP server on 127.0.0.1 (no other network)."""
import dataclasses
import hashlib
import io
import socket
import tarfile
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
ARCHIVE = "Audio_Speech_Actors_01-24.zip"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def _payload(name: str) -> bytes:
    # distinct, not very compressible payloads so a cut-off download is meaningful
    return b"RIFF" + hashlib.sha256(name.encode()).digest() * 200


def _ravdess_zip() -> bytes:
    return _zip({name: _payload(name) for name in RAVDESS_FILES})


class _Server:
    """Serves ``files`` (path -> bytes); the next ``cut_off`` answers stop halfway and close the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_off = 0
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404, "not here")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if owner.cut_off:
                    owner.cut_off -= 1
                    owner.bytes_sent += len(data) // 2
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                # Counted before writing: the client may finish reading before this thread runs again.
                owner.bytes_sent += len(data)
                self.wfile.write(data)

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


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No retries (pooch waits a second before each; a test that wants one sets dl.RETRIES), and the
    default download cache inside tmp_path, never the user's."""
    monkeypatch.setattr(dl, "RETRIES", 0)
    monkeypatch.setenv("EMOVOX_CACHE", str(tmp_path / "emovox-cache"))


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def to(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def ravdess_zip(server, monkeypatch):
    """The test zip served at /ravdess.zip, registered as the RAVDESS source with its md5."""
    data = _ravdess_zip()
    server.files["/ravdess.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=len(RAVDESS_FILES), md5=hashlib.md5(data).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    return data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _get(corpus: str, to: Path, cache: Path, server, path: str, **kw) -> Path:
    kw.setdefault("log", lambda s: None)
    return dl.download(corpus, to, url=server.url(path), cache_dir=cache, progress=kw.pop("progress", False), **kw)


def test_download_verifies_and_extracts_into_loader_layout(to, cache, server, ravdess_zip):
    log: list[str] = []
    dest = _get("ravdess", to, cache, server, "/ravdess.zip", progress=True, log=log.append)
    assert dest == to / "ravdess"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)
    assert _leftovers(to) == ["ravdess"]  # no staging folder left behind
    assert _leftovers(cache) == [ARCHIVE]  # the verified archive, no temporary file
    assert (cache / ARCHIVE).read_bytes() == ravdess_zip
    text = "\n".join(log)
    assert "CC BY-NC-SA 4.0" in text and "https://zenodo.org/record/1188976" in text
    assert log[0].startswith("RAVDESS")  # license first, before anything is fetched
    assert server.requests == [("/ravdess.zip", None)]
    utts = ravdess.load(dest)
    assert sorted(u.emotion for u in utts) == ["angry", "neutral", "surprise"]


def test_second_call_is_a_no_op(to, cache, server, ravdess_zip):
    _get("ravdess", to, cache, server, "/ravdess.zip")
    stamp = (to / "ravdess" / RAVDESS_FILES[0]).stat().st_mtime_ns
    log: list[str] = []
    dest = _get("ravdess", to, cache, server, "/ravdess.zip", log=log.append)
    assert dest == to / "ravdess"
    assert len(server.requests) == 1
    assert any("already present" in line and "nothing to do" in line for line in log)
    assert (dest / RAVDESS_FILES[0]).stat().st_mtime_ns == stamp


def test_checksum_mismatch_raises_and_leaves_nothing(to, cache, server, ravdess_zip, monkeypatch):
    monkeypatch.setitem(dl.SOURCES, "ravdess", dataclasses.replace(dl.SOURCES["ravdess"], md5="0" * 32))
    with pytest.raises(dl.ChecksumError, match=r"MD5 hash .* does not match the known hash: expected md5:0{32}") as err:
        _get("ravdess", to, cache, server, "/ravdess.zip")
    msg = str(err.value)
    assert server.url("/ravdess.zip") in msg and ARCHIVE in msg and "run again" in msg.lower()
    assert hashlib.md5(ravdess_zip).hexdigest() in msg  # the hash actually received
    assert _leftovers(to) == [] and _leftovers(cache) == []
    assert isinstance(err.value, CorpusError)


def test_sha256_is_preferred_and_checked(to, cache, server, ravdess_zip, monkeypatch):
    good = hashlib.sha256(ravdess_zip).hexdigest()
    src = dataclasses.replace(dl.SOURCES["ravdess"], md5="0" * 32, sha256=good.upper())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    assert dl.registry()[ARCHIVE] == f"sha256:{good}"
    assert len(list(_get("ravdess", to, cache, server, "/ravdess.zip").rglob("*.wav"))) == len(RAVDESS_FILES)
    monkeypatch.setitem(dl.SOURCES, "ravdess", dataclasses.replace(src, sha256="f" * 64))
    other = to.with_name("other")
    with pytest.raises(dl.ChecksumError, match="SHA256 hash"):
        _get("ravdess", other, cache.with_name("other-cache"), server, "/ravdess.zip")
    assert _leftovers(other) == []


def test_a_dropped_connection_keeps_nothing_and_the_next_run_starts_afresh(to, cache, server, ravdess_zip):
    # pooch cannot resume (no HTTP Range): the cut-off file is deleted and the next run fetches all of it.
    server.cut_off = 1
    with pytest.raises(dl.DownloadError, match="connection dropped") as err:
        _get("ravdess", to, cache, server, "/ravdess.zip")
    assert server.url("/ravdess.zip") in str(err.value) and "run again" in str(err.value)
    assert _leftovers(cache) == [] and not to.exists()
    dest = _get("ravdess", to, cache, server, "/ravdess.zip")
    assert server.requests == [("/ravdess.zip", None)] * 2
    assert server.bytes_sent == len(ravdess_zip) // 2 + len(ravdess_zip)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)


def test_a_dropped_connection_is_retried(to, cache, server, ravdess_zip, monkeypatch):
    monkeypatch.setattr(dl, "RETRIES", 1)
    server.cut_off = 1
    dest = _get("ravdess", to, cache, server, "/ravdess.zip")
    assert len(server.requests) == 2
    assert len(list(dest.rglob("*.wav"))) == len(RAVDESS_FILES)
    assert _leftovers(cache) == [ARCHIVE]


def test_archive_already_in_the_cache_is_verified_and_used_without_a_request(to, cache, server, ravdess_zip):
    cache.mkdir()
    (cache / ARCHIVE).write_bytes(ravdess_zip)  # e.g. fetched by hand
    log: list[str] = []
    dest = _get("ravdess", to, cache, server, "/ravdess.zip", log=log.append)
    assert server.requests == []
    assert any("already in the cache" in line for line in log)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)
    assert _leftovers(to) == ["ravdess"]


def test_cached_archive_with_a_wrong_checksum_is_downloaded_again(to, cache, server, ravdess_zip):
    cache.mkdir()
    (cache / ARCHIVE).write_bytes(ravdess_zip[: len(ravdess_zip) // 2])  # a truncated copy
    log: list[str] = []
    dest = _get("ravdess", to, cache, server, "/ravdess.zip", log=log.append)
    assert len(server.requests) == 1
    assert any("did not match its checksum" in line for line in log)
    assert (cache / ARCHIVE).read_bytes() == ravdess_zip
    assert len(list(dest.rglob("*.wav"))) == len(RAVDESS_FILES)


def test_never_overwrites_an_existing_folder(to, cache, server, ravdess_zip):
    mine = to / "ravdess" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes")
    with pytest.raises(dl.DownloadError, match="not overwriting"):
        _get("ravdess", to, cache, server, "/ravdess.zip")
    assert mine.read_text() == "my notes"
    assert server.requests == []
    assert not cache.exists()


def test_wrong_file_count_writes_nothing(to, cache, server, monkeypatch):
    data = _zip({"Actor_01/03-01-01-01-01-01-01.wav": b"RIFF"})
    server.files["/short.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=3, md5=hashlib.md5(data).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    with pytest.raises(dl.DownloadError, match="holds 1 files .* has 3"):
        _get("ravdess", to, cache, server, "/short.zip")
    assert _leftovers(to) == []  # neither the corpus folder nor a staging folder


def test_single_top_folder_in_archive_is_stripped(to, cache, server, monkeypatch):
    data = _zip({f"wrapped/{name}": b"RIFF" for name in RAVDESS_FILES} | {"__MACOSX/._x": b""})
    server.files["/wrapped.zip"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=3, md5=None)
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    dest = _get("ravdess", to, cache, server, "/wrapped.zip")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)


def test_archive_without_checksum_has_its_sha256_logged(to, cache, server, monkeypatch):
    data = _zip({"wav/03a01Fa.wav": b"RIFF"})
    server.files["/emodb.zip"] = data
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    log: list[str] = []
    dest = _get("emodb", to, cache, server, "/emodb.zip", log=log.append)
    assert (dest / "wav" / "03a01Fa.wav").read_bytes() == b"RIFF"
    assert any("no checksum is published" in line and hashlib.sha256(data).hexdigest() in line for line in log)


def test_tar_archives_are_unpacked(to, cache, server, monkeypatch):
    data = _tar_gz({f"top/{name}": _payload(name) for name in RAVDESS_FILES})
    server.files["/ravdess.tar.gz"] = data
    src = dataclasses.replace(dl.SOURCES["ravdess"], expected_files=3, archive="ravdess.tar.gz",
                              md5=None, sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(dl.SOURCES, "ravdess", src)
    dest = _get("ravdess", to, cache, server, "/ravdess.tar.gz")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(RAVDESS_FILES)
    assert (dest / RAVDESS_FILES[0]).read_bytes() == _payload(RAVDESS_FILES[0])


def test_links_in_a_tar_are_refused(to, cache, server, monkeypatch):
    server.files["/evil.tar.gz"] = _tar_gz({"wav/03a01Fa.wav": b"RIFF"}, links={"wav/x.wav": "/etc/passwd"})
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1, archive="e.tar.gz"))
    with pytest.raises(dl.DownloadError, match="links or special files"):
        _get("emodb", to, cache, server, "/evil.tar.gz")
    assert _leftovers(to) == []


def test_corrupt_zip_without_checksum_is_deleted(to, cache, server, monkeypatch):
    server.files["/bad.zip"] = b"PK\x03\x04 this is not really a zip"
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    with pytest.raises(dl.DownloadError, match="not a valid zip") as err:
        _get("emodb", to, cache, server, "/bad.zip")
    assert "emodb-download.zip" in str(err.value)
    assert _leftovers(to) == [] and _leftovers(cache) == []


def test_zip_with_a_bad_crc_is_rejected(to, cache, server, monkeypatch):
    data = bytearray(_zip({"wav/03a01Fa.wav": _payload("x")}))
    data[60] ^= 0xFF  # flip a byte inside the member's compressed data
    server.files["/crc.zip"] = bytes(data)
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    with pytest.raises(dl.DownloadError, match="not a valid zip"):
        _get("emodb", to, cache, server, "/crc.zip")
    assert _leftovers(to) == [] and _leftovers(cache) == []


def test_unsafe_member_paths_are_refused(to, cache, server, monkeypatch):
    server.files["/evil.zip"] = _zip({"../escape.wav": b"x", "wav/03a01Fa.wav": b"RIFF"})
    monkeypatch.setitem(dl.SOURCES, "emodb", dataclasses.replace(dl.SOURCES["emodb"], expected_files=1))
    with pytest.raises(dl.DownloadError, match="unsafe member"):
        _get("emodb", to, cache, server, "/evil.zip")
    assert not (to.parent / "escape.wav").exists()
    assert "emodb" not in _leftovers(to)


def test_http_error_is_reported(to, cache, server):
    with pytest.raises(dl.DownloadError, match="HTTP 404") as err:
        _get("emodb", to, cache, server, "/missing.zip")
    assert server.url("/missing.zip") in str(err.value)
    assert _leftovers(cache) == []


def test_no_server_is_reported(to, cache):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/emodb.zip"
    with pytest.raises(dl.DownloadError, match="cannot connect .* check the network") as err:
        dl.download("emodb", to, url=url, cache_dir=cache, progress=False, log=lambda s: None)
    assert url in str(err.value)


def test_unknown_url_scheme_is_reported(to, cache):
    with pytest.raises(dl.DownloadError, match="cannot download from this address"):
        dl.download("emodb", to, url="gopher://example.org/x.zip", cache_dir=cache, progress=False, log=lambda s: None)


def test_default_cache_is_under_emovox_cache(tmp_path, to, server, ravdess_zip):
    assert dl.default_cache_dir() == tmp_path / "emovox-cache" / "downloads"
    dl.download("ravdess", to, url=server.url("/ravdess.zip"), progress=False, log=lambda s: None)
    assert _leftovers(tmp_path / "emovox-cache" / "downloads") == [ARCHIVE]


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
    assert not (tmp_path / "emovox-cache").exists()  # nothing was fetched or cached


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


def test_cli_download_from_a_mirror_into_a_cache(to, cache, server, ravdess_zip, capsys):
    from emovox.cli import main

    args = ["download", "ravdess", "--to", str(to), "--url", server.url("/ravdess.zip"), "--cache-dir", str(cache), "--quiet"]
    assert main(args) == 0
    assert f"ravdess is in {to / 'ravdess'}" in capsys.readouterr().out
    assert len(list((to / "ravdess").rglob("*.wav"))) == len(RAVDESS_FILES)
    assert _leftovers(cache) == [ARCHIVE]


def test_a_manual_corpus_downloads_from_a_mirror_url(to, cache, server, monkeypatch):
    names = ["OAF_angry/OAF_back_angry.wav", "YAF_sad/YAF_back_sad.wav", "OAF_neutral/OAF_bar_neutral.wav"]
    server.files["/tess-mirror.zip"] = _zip({n: b"RIFF" for n in names})
    monkeypatch.setitem(dl.SOURCES, "tess", dataclasses.replace(dl.SOURCES["tess"], expected_files=3))
    dest = _get("tess", to, cache, server, "/tess-mirror.zip")
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.wav")) == sorted(names)
