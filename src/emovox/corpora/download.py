"""Fetch the public emotional-speech corpora into the layout the loaders read.

Backend of ``emovox download``. The corpora, their pages, licenses and manual
steps are listed in :mod:`emovox.corpora.sources`. Corpora with a stable
direct link (RAVDESS, EmoDB) are fetched with `pooch
<https://www.fatiando.org/pooch>`_: the archive is streamed over HTTP into the
download cache (:func:`default_cache_dir`), checked against the registry of
published checksums (:func:`emovox.corpora.sources.registry`) before it is
kept, and unpacked by :class:`pooch.Unzip` or :class:`pooch.Untar`. The other
corpora raise :class:`ManualDownloadRequired` with exact instructions.

A download is

* idempotent: a corpus already extracted with the expected file count is left
  alone, and an archive already in the cache that matches its checksum is
  unpacked without any request (an archive fetched by hand can be put there
  under its name);
* verified: against the publisher's checksum where one is published (an
  archive without one has its sha256 logged), by the archive's own CRCs while
  it is unpacked, and by the expected number of audio files always;
* not resumable: pooch streams into a temporary file in the cache and deletes
  it when the connection drops (it has no HTTP ``Range`` support), so a failed
  download is retried :data:`RETRIES` times and otherwise starts again from
  zero on the next run (a process killed outright can leave a ``tmp*`` file
  in the cache, which may be deleted);
* non-destructive: it unpacks into a staging folder beside the target and only
  then moves the result into place, never writes over an existing non-empty
  folder, and refuses archive members that would land outside it. Only the
  cache is emovox's own: a cached archive that fails its checksum is replaced
  by a fresh download, and one that is not a valid archive is deleted.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pooch

from .._version import __version__
from ..cache import default_cache_dir as _cache_root
from ..errors import CorpusError
from .sources import SOURCES, Source, license_notice, registry, source

Log = Callable[[str], object]

#: Extra attempts after a failed download (dropped connection, HTTP error, bad checksum);
#: pooch waits 1 s, 2 s, ... between them.
RETRIES = 1
_TIMEOUT_S = 60
_CHUNK = 1 << 16
_UNPACKERS: dict[str, type[pooch.processors.ExtractorProcessor]] = {
    ".zip": pooch.Unzip, ".tar": pooch.Untar, ".tar.gz": pooch.Untar, ".tgz": pooch.Untar,
    ".tar.bz2": pooch.Untar, ".tar.xz": pooch.Untar,
}
_BAD_ARCHIVE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)


class DownloadError(CorpusError):
    """A corpus could not be fetched, verified or extracted."""


class ChecksumError(DownloadError):
    """A downloaded archive does not match its published checksum."""


class ManualDownloadRequired(CorpusError):
    """The corpus cannot be fetched automatically; the message says what to do."""


def default_cache_dir() -> Path:
    """Where downloaded archives are kept: ``$EMOVOX_CACHE/downloads`` (``~/.cache/emovox/downloads``)."""
    return _cache_root() / "downloads"


def count_files(dest: Path, src: Source) -> int:
    """How many files of ``src.layout`` lie below ``dest`` (0 if it does not exist)."""
    if not dest.is_dir():
        return 0
    return sum(1 for p in dest.glob(src.layout) if p.is_file() and not p.name.startswith("."))


def download(
    corpus: str,
    to: Path,
    *,
    url: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Download, verify and extract ``corpus`` into ``<to>/<corpus>``; return that folder.

    ``url`` replaces the registered download link (a mirror, or a local server
    in tests); the published checksum, if any, still applies. The archive is
    kept in ``cache_dir`` (default :func:`default_cache_dir`). Raises
    :class:`ManualDownloadRequired` for corpora without a direct link,
    :class:`ChecksumError` when the archive does not match its checksum and
    :class:`DownloadError` for network, archive or layout problems.
    """
    src = source(corpus)
    to = Path(to).expanduser()
    dest = to / src.folder
    log(license_notice(src))

    found = count_files(dest, src)
    if found == src.expected_files:
        _check_not_lfs_pointers(dest, src)
        log(f"{src.name}: already present at {dest} ({found} files); nothing to do")
        return dest

    href = url or src.url
    if href is None:
        if found:
            _check_not_lfs_pointers(dest, src)
            log(
                f"{src.name}: found {found} files at {dest}, but a complete copy has {src.expected_files}; "
                "using what is there (see the instructions below if it is incomplete)\n"
                + _manual_text(src, dest)
            )
            return dest
        raise ManualDownloadRequired(f"{src.name}: cannot be downloaded automatically.\n{_manual_text(src, dest)}")

    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(
            f"{dest}: already exists and holds {found} of the {src.expected_files} expected files "
            f"({src.layout}); not overwriting it. Move or delete it, then run again"
        )

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    archive = _fetch_and_unpack(src, href, cache, dest, progress=progress, log=log)
    log(f"{src.name}: {src.expected_files} files extracted to {dest}")
    log(
        f"{src.name}: the archive stays in the download cache at {archive} "
        f"({archive.stat().st_size / 2**20:.1f} MiB); delete it to free the space"
    )
    return dest


def _fetch_and_unpack(src: Source, href: str, cache: Path, dest: Path, *, progress: bool, log: Log) -> Path:
    """Let pooch fetch ``src``'s archive from ``href`` into ``cache`` (or reuse it there) and unpack it to ``dest``."""
    cached = cache / src.archive_name
    unpack = _Unpack(src, dest, _unpacker(cached), log)  # an unknown archive type fails before anything is fetched
    downloader = _downloader(href, progress)
    if cached.exists():
        log(f"{src.name}: checking the archive already in the cache at {cached}")
    else:
        log(f"{src.name}: downloading {href} to {cached}")
    fetcher = pooch.create(
        path=cache, base_url="", registry=registry() | {src.archive_name: src.known_hash}, urls={src.archive_name: href}, retry_if_failed=RETRIES
    )
    import requests  # pooch's HTTP client: its exceptions say what went wrong on the network

    try:
        with _pooch_quiet():
            fetcher.fetch(src.archive_name, processor=unpack, downloader=downloader)
    except CorpusError:
        raise
    except requests.RequestException as e:
        raise _network_error(href, e) from e
    except ValueError as e:
        if src.known_hash is None or unpack.started:
            raise DownloadError(f"{src.name}: {href}: {e}") from e
        # pooch's message names the file, the expected and the actual hash; it has deleted the bad download
        raise ChecksumError(f"{href}: {e} Run again to download it afresh, or pass another url") from e
    except OSError as e:
        raise DownloadError(f"{src.name}: {e}") from e
    return cached


class _Unpack:
    """pooch processor: unpack the archive into a staging folder beside ``dest``, check the layout, move it into place.

    ``action`` is pooch's: ``download`` (new), ``update`` (the cached copy failed
    its checksum and was fetched again) or ``fetch`` (the cached copy was used).
    """

    def __init__(self, src: Source, dest: Path, unpacker: type[pooch.processors.ExtractorProcessor], log: Log):
        self.src, self.dest, self.unpacker, self.log = src, dest, unpacker, log
        self.started = False  # set once pooch hands over a verified archive

    def __call__(self, fname: str, action: str, fetcher: pooch.Pooch | None) -> str:
        self.started = True
        src, dest, log = self.src, self.dest, self.log
        archive = Path(fname)
        if action == "fetch":
            log(f"{src.name}: using the archive already in the cache ({archive})")
        elif action == "update":
            log(f"{src.name}: the cached archive did not match its checksum; downloaded a fresh copy")
        if action != "fetch" and src.known_hash is None:
            log(f"{src.name}: no checksum is published; the sha256 of {archive.name} is {pooch.file_hash(fname)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = dest.with_name(f".{dest.name}.extracting")
        if staging.exists():
            shutil.rmtree(staging)
        try:
            try:
                _check_members(archive, zip_=self.unpacker is pooch.Unzip)
                # An absolute extract_dir: pooch joins it to the cache folder, which leaves it unchanged.
                self.unpacker(extract_dir=str(staging.resolve()))(fname, action, fetcher)
            except _BAD_ARCHIVE as e:
                archive.unlink(missing_ok=True)
                kind = "zip" if self.unpacker is pooch.Unzip else "tar"
                raise DownloadError(
                    f"{archive}: not a valid {kind} archive ({e}); it was deleted from the cache, "
                    "run again to download it afresh"
                ) from e
            root = _layout_root(staging, src)
            n = count_files(root, src)
            if n != src.expected_files:
                raise DownloadError(
                    f"{archive}: holds {n} files matching {src.layout}, but a complete {src.name} has "
                    f"{src.expected_files}; is it the right archive? Nothing was written to {dest}"
                )
            if dest.is_dir():
                dest.rmdir()  # empty: checked by the caller
            root.replace(dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return str(dest)


def _unpacker(archive: Path) -> type[pooch.processors.ExtractorProcessor]:
    name = archive.name.lower()
    for suffix, cls in _UNPACKERS.items():
        if name.endswith(suffix):
            return cls
    raise DownloadError(f"{archive.name}: unknown archive type; expected one of {', '.join(_UNPACKERS)}")


def _check_members(archive: Path, *, zip_: bool) -> None:
    """Refuse members that would land outside the target folder, and links or devices in a tar.

    ``zipfile`` strips such paths itself, but pooch unpacks tars without
    ``tarfile``'s ``data`` filter on Python 3.11; refusing is clearer in both cases.
    """
    if zip_:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    else:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
        names = [m.name for m in members]
        special = [m.name for m in members if not (m.isfile() or m.isdir())]
        if special:
            raise DownloadError(f"{archive}: refusing to extract links or special files such as {special[0]!r}")
    for name in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
            raise DownloadError(f"{archive}: refusing to extract unsafe member path {name!r}")


def _downloader(url: str, progress: bool) -> pooch.HTTPDownloader:
    """pooch's streaming HTTP downloader, with a tqdm progress bar when asked and tqdm is installed."""
    if url.split(":", 1)[0].lower() not in ("http", "https"):
        raise DownloadError(f"{url}: cannot download from this address; give an http:// or https:// URL")
    bar = progress and importlib.util.find_spec("tqdm") is not None
    headers = {"User-Agent": f"emovox/{__version__} pooch/{pooch.__version__.lstrip('v')}"}
    return pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK, timeout=_TIMEOUT_S, headers=headers)


def _network_error(url: str, e: Exception) -> DownloadError:
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        r = e.response
        return DownloadError(f"{url}: HTTP {r.status_code} {r.reason}; check the address or try again later")
    if isinstance(e, requests.Timeout):
        return DownloadError(f"{url}: no answer within {_TIMEOUT_S} s ({_reason(e)}); try again later or use a mirror")
    if isinstance(e, requests.ConnectionError):
        return DownloadError(f"{url}: cannot connect ({_reason(e)}); check the network or pass another url")
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return DownloadError(
            f"{url}: the connection dropped during the download ({_reason(e)}); nothing partial is kept "
            "(downloads are not resumed), run again to download it from the start"
        )
    return DownloadError(f"{url}: download failed ({_reason(e)})")


def _reason(e: Exception) -> object:
    """The socket-level cause inside requests' exception (urllib3 wraps it in MaxRetryError or ProtocolError)."""
    inner = e.args[0] if e.args else e
    inner = getattr(inner, "reason", inner)
    if isinstance(inner, BaseException) and inner.args and isinstance(inner.args[0], str):
        return inner.args[0]
    return inner


@contextlib.contextmanager
def _pooch_quiet() -> Iterator[None]:
    """pooch logs every step at INFO on stderr; emovox reports through ``log`` instead."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _manual_text(src: Source, dest: Path) -> str:
    steps = (src.manual or "").format(dest=dest)
    return (
        f"{steps}\n"
        f"  Corpus page: {src.page}\n"
        f"  Then run 'emovox download {src.name}' again to check, and load it with --corpus {src.name} --data {dest}"
    )


def _check_not_lfs_pointers(dest: Path, src: Source, sample: int = 3) -> None:
    """Raise when the audio files are Git LFS pointer files rather than audio."""
    for i, p in enumerate(q for q in sorted(dest.glob(src.layout)) if q.is_file()):
        if i >= sample:
            break
        with open(p, "rb") as f:
            head = f.read(64)
        if head.startswith(b"version https://git-lfs"):
            raise ManualDownloadRequired(
                f"{p}: is a Git LFS pointer file, not audio; run 'git lfs pull' in the repository "
                f"at {dest} (see 'emovox download {src.name}')\n{_manual_text(src, dest)}"
            )


def _layout_root(staging: Path, src: Source) -> Path:
    """The folder in ``staging`` that holds ``src.layout``: itself or a single top folder."""
    root = staging
    for _ in range(3):
        if count_files(root, src):
            return root
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return staging


__all__ = [
    "ChecksumError", "DownloadError", "ManualDownloadRequired", "RETRIES", "SOURCES", "Source",
    "count_files", "default_cache_dir", "download", "license_notice", "registry", "source",
]
