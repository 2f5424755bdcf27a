"""Fetch the public emotional-speech corpora into the layout the loaders read.

Backend of ``emovox download``. Each corpus in :data:`SOURCES` names its
official page and license. Corpora with a stable direct link (RAVDESS, EmoDB)
are downloaded, verified and extracted; the others need a manual step
(registration, Git LFS, a dataverse page), and :func:`download` raises
:class:`ManualDownloadRequired` with exact instructions.

A download is

* idempotent: a corpus already extracted with the expected file count is left
  alone;
* resumable: an interrupted download leaves ``<archive>.part``; the next run
  asks the server for the rest (HTTP ``Range``) and restarts from zero if the
  server does not answer ``206 Partial Content``;
* verified: against the publisher's checksum where one is published, and by
  the zip's own CRCs and the expected number of audio files always;
* non-destructive: it extracts into a staging folder and only then moves the
  result into place, and never writes over an existing non-empty folder.

Only the standard library (``urllib.request``) and ``tqdm`` are used.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .._version import __version__
from ..errors import CorpusError

Log = Callable[[str], object]

_CHUNK = 1 << 16
_TIMEOUT_S = 60


class DownloadError(CorpusError):
    """A corpus could not be fetched, verified or extracted."""


class ChecksumError(DownloadError):
    """A downloaded archive does not match its published checksum."""


class ManualDownloadRequired(CorpusError):
    """The corpus cannot be fetched automatically; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from and what a complete copy looks like.

    ``layout`` is a glob, relative to ``<to>/<folder>``, that matches every audio
    file of a complete copy, and ``expected_files`` how many it matches.
    ``manual`` holds instructions (with ``{dest}`` for the target folder) for
    corpora without a direct download link.
    """

    name: str
    title: str
    page: str
    license: str
    folder: str
    layout: str
    expected_files: int
    url: str | None = None
    archive: str | None = None
    md5: str | None = None
    sha256: str | None = None
    manual: str | None = None

    @property
    def archive_name(self) -> str:
        """File name of the downloaded archive."""
        return self.archive or f"{self.name}.zip"


SOURCES: dict[str, Source] = {
    "ravdess": Source(
        name="ravdess",
        title="RAVDESS, audio-only speech (Livingstone & Russo, 2018)",
        page="https://zenodo.org/record/1188976",
        license=(
            "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 (CC BY-NC-SA 4.0). "
            "Cite: Livingstone & Russo (2018), PLoS ONE 13(5): e0196391."
        ),
        folder="ravdess",
        layout="Actor_*/*.wav",
        expected_files=1440,
        url="https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        archive="Audio_Speech_Actors_01-24.zip",
        md5="bc696df654c87fed845eb13823edef8a",
    ),
    "emodb": Source(
        name="emodb",
        title="Berlin Database of Emotional Speech, EmoDB (Burkhardt et al., 2005)",
        page="http://emodb.bilderbar.info/",
        license=(
            "No formal license is stated; the corpus is offered as a free download and its page asks "
            "users to cite Burkhardt et al. (2005), 'A Database of German Emotional Speech', Proc. "
            "Interspeech. See the corpus page for its terms."
        ),
        folder="emodb",
        layout="wav/*.wav",
        expected_files=535,
        url="http://emodb.bilderbar.info/download/download.zip",
        archive="emodb-download.zip",
    ),
    "cremad": Source(
        name="cremad",
        title="CREMA-D (Cao et al., 2014)",
        page="https://github.com/CheyneyComputerScience/CREMA-D",
        license="Open Database License (ODbL) v1.0, with the Database Contents License (DbCL) v1.0 for its contents.",
        folder="cremad",
        layout="AudioWAV/*.wav",
        expected_files=7442,
        manual=(
            "CREMA-D is stored with Git LFS on GitHub and has no single archive to download.\n"
            "  1. Install Git LFS (https://git-lfs.com), then run: git lfs install\n"
            "  2. Clone the repository without its large files, then fetch only the WAV audio:\n"
            "       GIT_LFS_SKIP_SMUDGE=1 git clone https://github.com/CheyneyComputerScience/CREMA-D.git \"{dest}\"\n"
            "       cd \"{dest}\" && git lfs pull --include \"AudioWAV/*\"\n"
            "  3. Check that {dest}/AudioWAV holds 7442 .wav files such as 1001_DFA_ANG_XX.wav\n"
            "     (files of about 130 bytes are LFS pointers: step 2's 'git lfs pull' did not run)."
        ),
    ),
    "tess": Source(
        name="tess",
        title="Toronto Emotional Speech Set, TESS (Dupuis & Pichora-Fuller, 2010)",
        page="https://doi.org/10.5683/SP2/E8H2MF",
        license="Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 (CC BY-NC-ND 4.0).",
        folder="tess",
        layout="**/*.wav",
        expected_files=2800,
        manual=(
            "TESS is published on the University of Toronto dataverse (Borealis) without a stable\n"
            "direct link to one archive.\n"
            "  1. Open https://doi.org/10.5683/SP2/E8H2MF and download all files as a zip\n"
            "     ('Access Dataset' -> 'Download ZIP').\n"
            "  2. Extract it so that the speaker/emotion folders lie in {dest},\n"
            "     e.g. {dest}/OAF_angry/OAF_back_angry.wav (one extra top folder is fine).\n"
            "  3. Check that {dest} holds 2800 .wav files."
        ),
    ),
    "savee": Source(
        name="savee",
        title="Surrey Audio-Visual Expressed Emotion, SAVEE (Haq & Jackson, 2009)",
        page="http://kahlan.eps.surrey.ac.uk/savee/",
        license="Free for research use after registration on the corpus site; see the corpus page for the terms.",
        folder="savee",
        layout="**/*.wav",
        expected_files=480,
        manual=(
            "SAVEE is released after registration only.\n"
            "  1. Register on http://kahlan.eps.surrey.ac.uk/savee/ and download the audio data\n"
            "     (the 'AudioData' folder) with the access you are given.\n"
            "  2. Put it in {dest} as the original per-speaker folders, e.g. {dest}/DC/a01.wav,\n"
            "     {dest}/JE/sa01.wav, or as flat names, e.g. {dest}/DC_a01.wav.\n"
            "  3. Check that {dest} holds 480 .wav files (speakers DC, JE, JK, KL; 120 each)."
        ),
    ),
}


def source(corpus: str) -> Source:
    """The :class:`Source` registered for ``corpus`` (case-insensitive)."""
    key = corpus.strip().lower().replace("-", "")
    if key not in SOURCES:
        raise CorpusError(f"no download source for corpus {corpus!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[key]


def license_notice(src: Source) -> str:
    """The lines printed before anything is fetched: corpus, page and license."""
    return f"{src.title}\n  corpus page: {src.page}\n  license: {src.license}"


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
    progress: bool = True,
    log: Log = print,
) -> Path:
    """Download, verify and extract ``corpus`` into ``<to>/<corpus>``; return that folder.

    ``url`` replaces the registered download link (a mirror, or a local server
    in tests); the published checksum, if any, still applies. Raises
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

    to.mkdir(parents=True, exist_ok=True)
    archive = to / src.archive_name
    fetched = False
    if archive.exists():
        log(f"{src.name}: using the archive already at {archive}")
        _verify(archive, src, delete=False)
    else:
        part = archive.with_name(archive.name + ".part")
        _fetch(href, part, progress=progress, log=log, desc=src.archive_name)
        _verify(part, src, delete=True)
        part.replace(archive)
        fetched = True

    _extract(archive, dest, src, progress=progress, log=log)
    if fetched:
        archive.unlink()
    else:
        log(f"{src.name}: {archive} is no longer needed and may be deleted")
    log(f"{src.name}: {src.expected_files} files extracted to {dest}")
    return dest


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


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _fetch(url: str, part: Path, *, progress: bool, log: Log, desc: str) -> None:
    """Download ``url`` into ``part``, continuing an existing partial file when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": f"emovox/{__version__}"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            log(f"{part.name}: server reports the partial file as complete ({have} bytes); verifying it")
            return
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the address or try again later") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the network or pass another url") from e

    with resp:
        if have and resp.status == 206 and _content_range_start(resp.headers.get("Content-Range")) == have:
            log(f"{part.name}: resuming at byte {have}")
            mode = "ab"
        else:
            if have:
                log(f"{part.name}: the server cannot resume this download; starting again from zero")
            have, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        try:
            with open(part, mode) as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"{url}: download interrupted ({e}); {part} was kept, run again to resume"
            ) from e
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} of {total} bytes; {part} was kept, run again to resume")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, src: Source, *, delete: bool) -> None:
    """Check ``path`` against the published checksum (if any) and the zip's own CRCs.

    With ``delete`` (a file this run downloaded) a bad file is removed so the
    next run starts afresh; a file the user put there is left alone.
    """
    fate = "it was deleted; run again to download it afresh" if delete else "delete it and run again"
    for algorithm, expected in (("md5", src.md5), ("sha256", src.sha256)):
        if expected is None:
            continue
        actual = _digest(path, algorithm)
        if actual != expected.lower():
            if delete:
                path.unlink()
            raise ChecksumError(
                f"{path}: {algorithm} {actual} does not match the published {expected} for {src.name}; {fate}"
            )
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        bad, err = None, e
    else:
        err = None
    if err is not None or bad is not None:
        if delete:
            path.unlink()
        what = f"member {bad!r} is corrupt" if bad is not None else f"not a valid zip archive ({err})"
        raise DownloadError(f"{path}: {what}; {fate}")


def _safe_members(zf: zipfile.ZipFile, archive: Path) -> None:
    for name in zf.namelist():
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
            raise DownloadError(f"{archive}: refusing to extract unsafe member path {name!r}")


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


def _extract(archive: Path, dest: Path, src: Source, *, progress: bool, log: Log) -> None:
    """Extract ``archive`` into a staging folder, check the layout, then move it to ``dest``."""
    staging = dest.with_name(f".{dest.name}.extracting")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf, archive)
            members = zf.infolist()
            for info in tqdm(members, desc=f"extracting {archive.name}", unit="file", disable=not progress):
                zf.extract(info, staging)
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
        log(f"{src.name}: extracted {archive.name}")
    finally:
        if staging.exists():
            shutil.rmtree(staging)


__all__ = [
    "ChecksumError", "DownloadError", "ManualDownloadRequired", "SOURCES", "Source",
    "count_files", "download", "license_notice", "source",
]
