"""The public emotional-speech corpora emovox can fetch, and how.

Each :class:`Source` names the corpus's official page and license, the layout
a complete copy has, and either a direct archive link with its published
checksum (fetched by :mod:`emovox.corpora.download`) or the manual steps for
corpora that need registration, Git LFS or a dataverse page.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorpusError


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from and what a complete copy looks like.

    ``layout`` is a glob, relative to ``<to>/<folder>``, that matches every audio
    file of a complete copy, and ``expected_files`` how many it matches.
    ``md5`` / ``sha256`` are the checksums the publisher gives for the archive
    at ``url`` (Zenodo publishes an md5 for RAVDESS; EmoDB publishes none), and
    :attr:`known_hash` is the one the download is checked against.
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
        """File name of the downloaded archive (also its name in the download cache)."""
        return self.archive or f"{self.name}.zip"

    @property
    def known_hash(self) -> str | None:
        """The published checksum as pooch writes it (``sha256:...``, ``md5:...``), or None."""
        if self.sha256:
            return f"sha256:{self.sha256.lower()}"
        if self.md5:
            return f"md5:{self.md5.lower()}"
        return None


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


def registry() -> dict[str, str | None]:
    """Archive name -> published checksum, for every corpus with a direct link (a pooch registry)."""
    return {s.archive_name: s.known_hash for s in SOURCES.values() if s.url}


__all__ = ["SOURCES", "Source", "license_notice", "registry", "source"]
