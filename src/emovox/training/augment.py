"""Seeded waveform augmentation of training files, and the features of the copies.

Each augmented copy of a file passes through an ``audiomentations`` chain —
Gaussian noise at 10–30 dB SNR, gain ±6 dB, pitch shift ±3 semitones,
tempo 0.85–1.15 — seeded by the file's content and the copy number, so a
copy is the same on every run and its features can be cached like the
originals'. Copies only ever join the training part.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from ..audio.decode import load_audio
from ..cache import content_hash
from ..corpora.base import Utterance
from ..encoders.base import Preparer
from ..errors import EmovoxError
from ..features import FeatureConfig
from .extract import extract_arrays

#: Bump when the chain changes: cached features of copies are keyed by it.
CHAIN_VERSION = "v1"
#: Bump when the timeline's cut changes (its voice activity or padding): cached cut copies are keyed by it.
CUT_VERSION = "v1"
#: The speaker suffix of a timeline cut: normalised among the cuts of its speaker, as timeline segments are.
CUT_SUFFIX = "~aug-cut"
#: Bump when the training channels change (:data:`emovox.audio.channels.TRAINING_FAMILIES`): cached channel copies
#: are keyed by it.
CHANNEL_VERSION = "v1"


def augmenter():
    """The augmentation chain (needs ``pip install 'emovox[augment]'``)."""
    try:
        import audiomentations as A
    except ImportError:
        raise EmovoxError("augmentation needs the audiomentations package: pip install 'emovox[augment]'") from None
    return A.Compose([
        A.AddGaussianSNR(min_snr_db=10.0, max_snr_db=30.0, p=0.5),
        A.Gain(min_gain_db=-6.0, max_gain_db=6.0, p=0.5),
        A.PitchShift(min_semitones=-3.0, max_semitones=3.0, p=0.7),
        A.TimeStretch(min_rate=0.85, max_rate=1.15, p=0.5),
    ])


def augmented_signal(path: str | Path, copy: int, sample_rate: int = 16000) -> np.ndarray:
    """Copy number ``copy`` (1, 2 …) of the file at ``path``: decoded, then augmented with a seed of its own."""
    seed = (int(content_hash(path)[:8], 16) + 7919 * copy) % (2**32)
    random.seed(seed)  # audiomentations draws from the global generators
    np.random.seed(seed)
    y = augmenter()(samples=load_audio(path, sample_rate), sample_rate=sample_rate)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def input_of_copy(path: str, copy: int, prep: Preparer) -> np.ndarray:
    """An encoder's input (through its preparer) of augmented copy ``copy`` of ``path``."""
    return prep(augmented_signal(path, copy, prep.sample_rate), prep.sample_rate, f"{path} (augmented copy {copy})")


def cut_signal(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The file at ``path`` as the timeline cuts it: from the start of its first voice-activity region to the end
    of its last, with the timeline's padding (:class:`~emovox.inference.segments.SegmentOptions`); the whole file
    when no speech is found."""
    from ..audio.vad import speech_regions

    y = load_audio(path, sample_rate)
    regions = speech_regions(y, sample_rate, vad="auto", min_speech_s=0.3, min_silence_s=0.3, pad_s=0.1, name=str(path))
    if not regions:
        return y
    return y[int(regions[0][0] * sample_rate) : int(np.ceil(regions[-1][1] * sample_rate))]


def input_of_cut(path: str, prep: Preparer) -> np.ndarray:
    """An encoder's input (through its preparer) of the timeline's cut of ``path``."""
    return prep(cut_signal(path, prep.sample_rate), prep.sample_rate, f"{path} (timeline cut)")


def cut_inputs(
    utts: Sequence[Utterance], preparers: Sequence[Preparer], *, cache_dir: Path | None = None,
    workers: int | None = None, progress: bool = True,
) -> tuple[list[Utterance], list[list[np.ndarray]], list[str | None]]:
    """``(utterances, inputs per preparer, cache keys)`` of the timeline's cut of every utterance: the clip as a
    timeline segment of it would be (its speech, :func:`cut_signal`). Its speaker gets :data:`CUT_SUFFIX`, so
    speaker normalisation groups a speaker's cuts together, as the timeline's adaptation groups its segments."""
    paths = [u.path for u in utts]
    opts = dict(cache_dir=cache_dir, use_cache=cache_dir is not None, workers=workers, progress=progress)
    ns = f"cut-{CUT_VERSION}"
    done = [extract_arrays(paths, partial(input_of_cut, prep=prep), f"{ns}/inputs/{prep.digest()}", desc="timeline cuts",
                           **opts) for prep in preparers]
    errors = {i: e for ext in done for i, e in ext.errors.items()}
    if errors:
        raise EmovoxError("timeline cuts failed: " + "; ".join(errors.values()))
    out_utts = [replace(u, speaker=f"{u.speaker}{CUT_SUFFIX}") for u in utts]
    keys = [f"{k}-cut{CUT_VERSION}" if k else None for k in done[0].keys]
    return out_utts, [ext.specs for ext in done], keys


def augmented_inputs(
    utts: Sequence[Utterance], copies: int, preparers: Sequence[Preparer], *, cache_dir: Path | None = None,
    workers: int | None = None, progress: bool = True,
) -> tuple[list[Utterance], list[list[np.ndarray]], list[str | None]]:
    """``(utterances, inputs per preparer, cache keys)`` of every copy of every utterance (copy 1 of each, then 2 ...).

    A copy's utterance keeps its emotion; its speaker becomes
    ``"<speaker>~aug<k>"``: pitch and tempo changes alter the voice, so
    speaker normalisation treats it as a voice of its own.
    """
    augmenter()  # fail early, with the install hint, when audiomentations is missing
    return _copies(utts, copies, preparers, lambda k, prep: partial(input_of_copy, copy=k, prep=prep),
                   namespace=f"augmented-{CHAIN_VERSION}", speaker="~aug", key=f"aug{CHAIN_VERSION}",
                   desc="augmented copy", failure="augmentation failed",
                   opts=dict(cache_dir=cache_dir, use_cache=cache_dir is not None, workers=workers, progress=progress))


def _copies(
    utts: Sequence[Utterance], copies: int, preparers: Sequence[Preparer], compute, *, namespace: str, speaker: str,
    key: str, desc: str, failure: str, opts: dict,
) -> tuple[list[Utterance], list[list[np.ndarray]], list[str | None]]:
    """Copies 1 .. ``copies`` of every utterance through ``compute(k, preparer)`` (a picklable ``path -> input``),
    each preparer's inputs cached under ``<namespace>/<k>``; copy ``k`` of an utterance gets the speaker
    ``<speaker><speaker suffix><k>`` and the cache key ``<file key>-<key>-<k>``."""
    paths = [u.path for u in utts]
    out_utts: list[Utterance] = []
    out_inputs: list[list[np.ndarray]] = [[] for _ in preparers]
    keys: list[str | None] = []
    for k in range(1, copies + 1):
        done = [extract_arrays(paths, compute(k, prep), f"{namespace}/{k}/inputs/{prep.digest()}", desc=f"{desc} {k}", **opts)
                for prep in preparers]
        errors = {i: e for ext in done for i, e in ext.errors.items()}
        if errors:
            raise EmovoxError(f"{failure}: " + "; ".join(errors.values()))
        for i, u in enumerate(utts):
            out_utts.append(replace(u, speaker=f"{u.speaker}{speaker}{k}"))
            keys.append(f"{done[0].keys[i]}-{key}-{k}" if done[0].keys[i] else None)
        for column, ext in zip(out_inputs, done):
            column.extend(ext.specs)
    return out_utts, out_inputs, keys


def augmented_copies(
    utts: Sequence[Utterance], copies: int, features: FeatureConfig, acoustic: str | None = None, *,
    cache_dir: Path | None = None, workers: int | None = None, progress: bool = True,
) -> list[tuple[Utterance, np.ndarray, np.ndarray | None, str | None]]:
    """``(utterance, spectrogram, functionals or None, cache key)`` of every copy (:func:`augmented_inputs` with the
    spectrogram preparer of ``features`` and the ``acoustic`` functionals set)."""
    from ..encoders.functionals import ACOUSTIC_RATE, FunctionalsPreparer
    from ..encoders.image import SpectrogramPreparer

    preparers = [SpectrogramPreparer(features.sample_rate, features)]
    if acoustic:
        preparers.append(FunctionalsPreparer(ACOUSTIC_RATE, acoustic))
    aug_utts, inputs, keys = augmented_inputs(utts, copies, preparers, cache_dir=cache_dir, workers=workers, progress=progress)
    funcs = inputs[1] if acoustic else [None] * len(aug_utts)
    return list(zip(aug_utts, inputs[0], funcs, keys))


@dataclass(frozen=True)
class VoicesOf:
    """Babble for a channel copy: ``n`` files of *other* speakers of the training pool (never the talker's own)."""

    paths: tuple[str, ...]
    speakers: tuple[str, ...]
    exclude: str = ""

    @cached_property
    def speaker_of(self) -> dict[str, str]:
        """Each path's speaker (built once per pool)."""
        return dict(zip(self.paths, self.speakers))

    def __call__(self, rng: np.random.Generator, n: int, sample_rate: int) -> list[np.ndarray]:
        others = [i for i, s in enumerate(self.speakers) if s != self.exclude]
        if not others:
            raise EmovoxError("babble needs files of at least one other speaker")
        return [load_audio(self.paths[i], sample_rate) for i in rng.choice(others, size=n, replace=len(others) < n)]


def channel_signal(path: str | Path, copy: int, pool: VoicesOf, sample_rate: int = 16000) -> tuple[np.ndarray, str]:
    """Channel copy ``copy`` of the file at ``path`` and the name of its channel: a family of
    :data:`~emovox.audio.channels.TRAINING_FAMILIES` and its settings drawn from a seed of the file's content and the
    copy number; babble from the other speakers of ``pool``."""
    from ..audio.channels import training_channel

    seed = (int(content_hash(path)[:8], 16) + 104729 * copy) % (2**32)
    chan = training_channel(seed)
    speaker = pool.speaker_of.get(str(path), "")
    return chan.apply(load_audio(path, sample_rate), sample_rate, seed + 1, replace(pool, exclude=speaker)), chan.name


def input_of_channel(path: str, copy: int, pool: VoicesOf, prep: Preparer) -> np.ndarray:
    """An encoder's input (through its preparer) of channel copy ``copy`` of ``path``."""
    y, name = channel_signal(path, copy, pool, prep.sample_rate)
    return prep(y, prep.sample_rate, f"{path} (channel copy {copy}: {name})")


def channel_inputs(
    utts: Sequence[Utterance], copies: int, preparers: Sequence[Preparer], *, cache_dir: Path | None = None,
    workers: int | None = None, progress: bool = True,
) -> tuple[list[Utterance], list[list[np.ndarray]], list[str | None]]:
    """``(utterances, inputs per preparer, cache keys)`` of ``copies`` channel copies of every utterance (copy 1 of
    each, then 2 ...): each through a room, a telephone line, a codec, babble of the other speakers of ``utts``,
    noise or a chain of these (:func:`channel_signal`). A copy keeps its emotion; its speaker becomes
    ``"<speaker>~aug-ch<k>"``, a voice heard through other channels, normalised as one speaker of its own."""
    from ..audio import channels

    channels._need("pyroomacoustics")  # fail early, with the install hint
    channels._need("pedalboard")
    paths = [u.path for u in utts]
    pool = VoicesOf(tuple(str(p) for p in paths), tuple(u.speaker_key for u in utts))
    from ..identity import digest

    pool_id = digest(sorted(set(zip(pool.speakers, (content_hash(p)[:12] for p in pool.paths)))))[:12]
    return _copies(utts, copies, preparers, lambda k, prep: partial(input_of_channel, copy=k, pool=pool, prep=prep),
                   namespace=f"channel-{CHANNEL_VERSION}-{pool_id}", speaker="~aug-ch", key=f"ch{CHANNEL_VERSION}-{pool_id}",
                   desc="channel copy", failure="channel simulation failed",
                   opts=dict(cache_dir=cache_dir, use_cache=cache_dir is not None, workers=workers, progress=progress))


def channel_vectors(model, data, name: str, *, rows: Sequence[int] | None = None, seed: int = 0,
                    progress: bool = True) -> np.ndarray:
    """What a frozen-encoder ``model``'s heads read of the prepared utterances ``rows`` (default: all) of ``data``
    heard through the channel ``name`` of :data:`emovox.audio.channels.CHANNELS` (``"clean"``: as recorded), each
    copy seeded by the file's content and ``seed``, babble drawn from the other speakers among ``rows``; cached
    like every encoder vector. For scoring a model on a channel (``emovox evaluate --channel``, benchmarks)."""
    from ..audio.channels import channel
    from .data import encoder_vectors, encoder_inputs

    chan = channel(name)
    rows = np.arange(len(data.utts)) if rows is None else np.asarray(rows, dtype=np.int64)
    speakers = [data.utts[i].speaker_key for i in rows]
    seeds = [(int((data.keys[i] or content_hash(data.utts[i].path))[:8], 16) + 7919 * seed) % (2**32) for i in rows]
    parts = []
    for enc in model.encoders:
        prep = enc.preparer()
        if name == "clean":
            keys = [data.keys[i] for i in rows]
            parts.append(encoder_vectors(enc, keys, lambda todo, enc=enc: encoder_inputs(enc, data, [int(rows[t]) for t in todo],
                                                                                        progress=progress),
                                         data.cache_root, progress=progress))
            continue

        pool = VoicesOf(tuple(str(data.utts[int(i)].path) for i in rows), tuple(speakers))
        alone = len(set(speakers)) < 2  # one speaker: babble of their other recordings

        def inputs(todo, prep=prep):
            for t in todo:
                path = data.utts[int(rows[t])].path
                voices = replace(pool, exclude="" if alone else speakers[t])
                y = chan.apply(load_audio(path, prep.sample_rate), prep.sample_rate, seeds[t], voices)
                yield prep(y, prep.sample_rate, f"{path} ({name})")

        keys = [f"{data.keys[i]}-through-{name}-{CHANNEL_VERSION}-{seed}" if data.keys[i] else None for i in rows]
        parts.append(encoder_vectors(enc, keys, inputs, data.cache_root, progress=progress))
    return np.concatenate(parts, axis=1)
