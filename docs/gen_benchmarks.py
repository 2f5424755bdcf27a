"""The Benchmarks page, rendered from the measurements in ``bench/results/*.json`` when the site is built.

mkdocs-gen-files runs this script (see ``mkdocs.yml``) and it writes ``benchmarks.md`` into the site: every table
of a measurement that is stored as JSON is rendered from that JSON, so the page cannot drift from what was
measured. The prose between the tables is kept here. Tables of ``emovox benchmark`` runs whose results are not
kept in ``bench/results/`` (their ``reports/*/report.md``) are part of the prose, as measured.

``python docs/gen_benchmarks.py`` prints the page instead (to read it without building the site).
"""
from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = "benchmarks.md"

log = logging.getLogger("mkdocs.plugins.gen_benchmarks")  # under "mkdocs": a warning fails `mkdocs build --strict`
used: set[str] = set()


# --------------------------------------------------------------------------- helpers


def load(name: str) -> Any:
    """``bench/results/<name>.json`` (``None``, with a build warning, when it is missing or unreadable)."""
    used.add(name)
    path = RESULTS / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("gen_benchmarks: cannot read %s (%s)", path, err)
        return None


def missing(name: str) -> str:
    return f"*(`bench/results/{name}.json` is missing: this table could not be rendered.)*\n"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def num(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction (0.75) as a percentage ("75.0 %")."""
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def pct_of(x: float | None, digits: int = 1) -> str:
    """A number that is already a percentage (75.0) as "75.0 %"."""
    return "–" if x is None else f"{x:.{digits}f} %"


def rate(x: float | None) -> str:
    """A share as the tables write it: "0 %", "1.1 %", "100 %"."""
    if x is None:
        return "–"
    v = 100 * x
    return f"{v:.0f} %" if v == 0 or v == 100 or abs(v - round(v)) < 1e-9 else f"{v:.1f} %"


def mean_sd(values: Sequence[float], scale: float = 100.0) -> tuple[float, float]:
    """Mean and (population) standard deviation, as the benchmark reports give them."""
    v = [scale * x for x in values]
    return statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0


def pm(values: Sequence[float], scale: float = 100.0, digits: int = 1, unit: str = " %") -> str:
    m, s = mean_sd(values, scale)
    return f"{m:.{digits}f} ± {s:.{digits}f}{unit}" if len(values) > 2 else f"{m:.{digits}f}{unit}"


def bold(s: str, on: bool) -> str:
    return f"**{s}**" if on else s


CORPORA = {"tess": "TESS", "ravdess": "RAVDESS", "nemo": "nEMO"}


def sci(x: float) -> str:
    """3e-05 as the prose writes it: 3e-5."""
    mant, _, exp = f"{x:g}".partition("e")
    return f"{mant}e{int(exp)}" if exp else mant


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


# --------------------------------------------------------------------------- sections


INTRO = """\
# Benchmarks

All numbers below were measured on this project's 2-core CPU machine with the
real recordings in `../shared/data` (TESS: 2,602 files, 2 speakers; RAVDESS:
actors 01–18, 1,080 files; nEMO: 2,159 files, 4 speakers), unless a section
says otherwise. Every table whose measurement is kept in `bench/results/` is
rendered from that JSON file (named under the table); the tables of
`emovox benchmark` runs (`reports/*/report.md`) are given as measured.
"""


def bundled_model() -> str:
    out = ["## The bundled model\n",
           "The bundled model (`src/emovox/models/default`) scored on what it never heard: RAVDESS actors 17–18 "
           "(120 clips, 8 emotions, chance 12.5 %) one file at a time and with each actor's files normalised "
           "together (`same_speaker=True`), and the 20 held-out TESS words (280 clips). Its training record is "
           "`bench/results/default_model.json`; earlier generations are kept beside it.\n"]
    d = load("default_model")
    if d is None:
        return "\n".join(out + [missing("default_model")])
    parts = [("RAVDESS actors 17–18, per file", "ravdess_17_18"),
             ("RAVDESS actors 17–18, each actor's files together", "ravdess_17_18_per_speaker"),
             ("TESS held-out words", "tess_held_out_words")]
    rows = [(label, d[k]["n"], pct(d[k]["accuracy"]), pct(d[k]["uar"]), pct(d[k]["macro_f1"]), num(d[k]["ece"], 3),
             num(d[k].get("nll"), 3)) for label, k in parts if k in d]
    out.append(table(["test part", "n", "accuracy", "UAR", "macro-F1", "ECE", "NLL"], rows))
    r = d.get("ravdess_17_18", {})
    if r.get("per_class"):
        out.append("Per emotion on RAVDESS actors 17–18, per file:\n")
        out.append(table(["emotion", "precision", "recall", "F1", "clips"],
                         [(lab, pct(m["precision"]), pct(m["recall"]), pct(m["f1"]), m["support"])
                          for lab, m in r["per_class"].items()]))
    t, sizes = d.get("timings", {}), d.get("sizes", {})
    steps = [("features_s", "checking and decoding the files"), ("backbone_pass_s", "the encoder over the files"),
             ("augment_s", "the copies of the training files (timeline cuts, channel copies) through the encoder"),
             ("channels_s", "… of which the channel copies, with their simulation"),
             ("epochs_s", "the heads, fitted and calibrated (out of fold)"), ("familiarity_s", "the familiarity gate")]
    if t:
        out.append(f"Training took {d['train_seconds'] / 60:.0f} minutes on the 2-core CPU with nothing cached "
                   f"({sizes.get('train', 0):,} training vectors: the files, their timeline cuts and their channel "
                   f"copies; {sizes.get('val', '?')} validation and {sizes.get('test', '?')} test clips); the model "
                   f"folder's weights are {mb(d['size_bytes'])}:\n")
        known = [k for k, _ in steps]
        rows = [(label, num(t[k], 0), num(t[k] / 60, 1)) for k, label in steps if k in t]
        rows += [(k, num(v, 0), num(v / 60, 1)) for k, v in t.items() if k not in known]
        rows.append(("**the whole run**", f"**{num(d['train_seconds'], 0)}**", f"**{num(d['train_seconds'] / 60, 1)}**"))
        out.append(table(["step", "seconds", "minutes"], rows))
    gens = [("v2", "default_model_v2"), ("v3", "default_model_v3"), ("v4", "default_model_v4"), ("v5 (bundled)", "default_model")]
    rows = []
    for label, name in gens:
        g = d if name == "default_model" else load(name)
        if g is None:
            continue
        rows.append((label, pct(g["ravdess_17_18"]["accuracy"]),
                     pct(g.get("ravdess_17_18_per_speaker", {}).get("accuracy")),
                     pct(g["tess_held_out_words"]["accuracy"]), num(g["ravdess_17_18"]["ece"], 3),
                     f"{g['sizes']['train']:,}", num(g["train_seconds"] / 60, 0), mb(g["size_bytes"])))
    out.append("The generations of the bundled model on the same held-out clips "
               "(`bench/results/default_model_v*.json`):\n")
    out.append(table(["model", "RAVDESS 17–18 per file", "each actor together", "TESS held-out words", "ECE (RAVDESS)",
                      "training vectors", "training min", "weights"], rows))
    return "\n".join(out)


def tess_recipe() -> str:
    out = ["## The recipe on TESS\n",
           "`python bench/tess_recipe.py`: EfficientNet-Lite0 frozen, 10 epochs, seed 0 "
           "(`bench/results/tess_recipe.json`). The tutorial reports 94.93 % validation accuracy on a random split.\n"]
    d = load("tess_recipe")
    if d is None:
        return "\n".join(out + [missing("tess_recipe")])
    out.append(table(["protocol", "n test", "accuracy", "UAR", "macro-F1", "seconds"],
                     [(r["protocol"].replace("->", "→"), f"{r['n_test']:,}", pct(r["accuracy"], 2), pct(r["uar"], 2),
                       pct(r["macro_f1"], 2), num(r.get("total_s"), 0)) for r in d["rows"]]))
    out.append("""\
Time on TESS (measured with the CNN pass on PyTorch): decoding and log-mels
23 s with 2 workers (1 s from the cache), one EfficientNet-Lite0 pass over
all 2,602 spectrograms 70–90 s, the 10 training epochs on the cached
embeddings 0.3–1 s. With onnxruntime installed the pass runs on ONNX Runtime,
about 5× faster (see [Speed](#speed)).
""")
    return "\n".join(out)


PROTOCOLS = """\
## Protocols

`emovox benchmark --config bench/protocols.toml --out reports/protocols`;
mean ± std over folds, frozen EfficientNet-Lite0, 10 epochs:

| corpus · protocol | folds | n | accuracy | UAR | macro-F1 | ECE before → after calibration |
|---|---|---|---|---|---|---|
| TESS · random | 1 | 391 | 99.5 % | 99.5 % | 99.5 % | 0.023 → 0.007 |
| TESS · held-out words | 1 | 390 | 99.2 % | 99.2 % | 99.2 % | 0.020 → 0.007 |
| TESS · train YAF → test OAF | 1 | 1301 | 57.5 % | 57.5 % | 50.0 % | 0.259 → 0.326 |
| TESS · train OAF → test YAF | 1 | 1301 | 49.3 % | 49.3 % | 47.6 % | 0.310 → 0.497 |
| RAVDESS · speaker-grouped 6-fold (3 actors per fold) | 6 | 1080 | 48.7 % ± 4.9 % | 48.1 % ± 4.2 % | 46.6 % ± 4.7 % | 0.123 → 0.105 |
| TESS → RAVDESS (7 shared labels) | 1 | 936 | 18.8 % | 19.2 % | 13.8 % | 0.645 → 0.759 |
| RAVDESS → TESS | 1 | 2602 | 29.9 % | 29.9 % | 27.7 % | 0.462 → 0.341 |
| TESS + RAVDESS · speaker-grouped 5-fold | 5 | 3682 | 47.3 % ± 6.7 % | 47.5 % ± 8.7 % | 44.6 % ± 6.8 % | 0.177 → 0.108 |
| RAVDESS · speaker-grouped 6-fold, last blocks fine-tuned (lr 3·10⁻⁴) | 6 | 1080 | 44.4 % ± 5.4 % | 43.1 % ± 5.6 % | 42.9 % ± 5.2 % | 0.419 → 0.107 |

The fine-tuned row is the first cell of `bench/finetune.toml` (37 minutes
on the 2-core CPU, shared with other jobs). Fine-tuning the last blocks
without augmentation did not beat the frozen backbone on unseen RAVDESS
actors; more fine-tuning variants are measured under
[Unseen speakers](#unseen-speakers-recipe-robust) below.

A random split of TESS is solved; what matters is a new voice, and there
plain transfer learning is far from solved: the same two speakers say the
same words in every emotion, so random and held-out-word splits measure
memory of the voice. On cross-speaker TESS, temperature scaling fitted on
validation data from the *training* speaker makes calibration worse: with
only two speakers there is no speaker-independent validation part.
"""

SPEECH_RECIPE = """\
## New voices: `--recipe speech` (speech-pretrained encoder)

```bash
# offline: point emovox at local copies of the encoders (or pass --weights DIR)
export EMOVOX_WEIGHTS=../shared/models          # holds whisper-tiny.en-encoder/
emovox train --recipe speech --corpus tess,ravdess,nemo --data ../shared/data/tess,../shared/data/ravdess,../shared/data/nemo \\
    --split speaker --test-speakers 17,18 --val-speakers 15,16 --out runs/speech
emovox predict --model runs/speech/model clip.wav
emovox predict --model runs/speech/model --same-speaker speaker_07/
emovox evaluate runs/speech/model --corpus nemo --data ../shared/data/nemo --restrict-labels
```

The speech recipe replaces the ImageNet CNN by a **speech-pretrained
encoder**: OpenAI's Whisper tiny.en audio encoder (8.2 M parameters, MIT
license), frozen, read through `transformers`. It runs on the trimmed clip at
its own length (Whisper was trained on 30-s windows; cutting its positional
embeddings to the clip is about ten times cheaper for a 3-s clip), and the
mean and standard deviation over time of each of its 6 hidden states (after
the convolutions, after each of the 4 layers, after the final layer norm)
make one 4,608-dimensional vector per file, cached on disk by file content
and by the encoder's weights digest. An L2 logistic regression reads it, and
a second head reads speaker-normalised vectors, as in the robust recipe.

- **Any transformers speech encoder** works the same way:
  `--backbone hf:openai/whisper-base`, `hf:microsoft/wavlm-base-plus`,
  `hf:facebook/hubert-base-ls960`, `hf:facebook/wav2vec2-base` (hub ids, for
  machines that are online) or `hf:/path/to/folder` (a local transformers
  folder). `whisper_tiny_en` loads from `--weights DIR`, else from
  `$EMOVOX_WEIGHTS/whisper-tiny.en-encoder`, else from the hub
  (`openai/whisper-tiny.en`). The model folder keeps the encoder's weights and
  its transformers config, so a trained model predicts offline.
- **Which recipe when**: `speech` for new voices (the default choice; the
  bundled model uses it, and transformers comes with emovox);
  `robust` to compare with openSMILE functionals on CNN embeddings;
  `plain` for the tutorial's recipe and the smallest, fastest model.
- **Cross-corpus scoring** (`emovox evaluate --restrict-labels`, benchmark
  cells with `restrict_labels = true`): a model trained on 8 emotions scored
  on a corpus with 6 can be scored as the field usually does, the argmax
  restricted to the labels the test corpus uses; both figures are reported.

Measured on the 2-core CPU (`emovox benchmark --config bench/speech.toml
--out reports/speech`; RAVDESS: the same speaker-grouped 6-fold over actors
01–18 as the robust recipe's table below; "per speaker" normalises each test
actor's recordings together):

| RAVDESS 6-fold | per file | per speaker |
|---|---|---|
| robust recipe (below) | 60.2 % ± 4.0 % | 70.4 % ± 5.3 % |
| Whisper tiny.en, frozen, 6 states × mean/std, logistic regression = **speech** | **74.4 % ± 5.4 %** (UAR 72.9 %, macro-F1 72.8 %) | **82.0 % ± 4.1 %** (UAR 80.7 %, macro-F1 80.8 %) |
| + ComParE functionals (not adopted) | 69.6 % ± 3.1 % | 80.5 % ± 3.8 % |

The speech recipe elsewhere (per file / per speaker; same command, the
whole run takes about 18 minutes with vectors cached): TESS cross-speaker
76.2 % / 73.1 % (train OAF, test YAF) and 60.4 % / 71.2 % (train YAF, test
OAF), against 69.8 % / 68.6 % and 65.7 % / 69.6 % for the robust recipe; TESS
random split and held-out words 100.0 %; nEMO (Polish, leave one of 4
speakers out) 38.2 % ± 12.1 % per file and 69.3 % ± 7.3 % per speaker: with
3 training voices a single Polish file is hard, a speaker's set much less so.

Across corpora and languages:

| train → test | per file | per speaker | argmax over the test labels: per file / per speaker |
|---|---|---|---|
| TESS + RAVDESS → nEMO (Polish, 6 shared labels) | 37.1 % | 38.5 % | 39.7 % / 43.4 % |
| TESS + nEMO + 12 RAVDESS actors → 3 held-out RAVDESS actors (6 folds) | 67.9 % ± 5.4 % | 77.2 % ± 5.7 % | the same (all 8 labels) |

Adding TESS and nEMO to the training part costs 6.5 points per file on the
held-out RAVDESS actors (67.9 % against 74.4 % with RAVDESS actors alone):
TESS's two voices and nEMO's four are many files of few speakers, and the
head fits them. Weighting every corpus alike in the heads
(`--balance-corpora`, benchmark `balance_corpora = true`) recovers part of
it: 69.8 % ± 4.6 % per file and 78.8 % ± 5.5 % per speaker on the same
folds, and leaves TESS + RAVDESS → nEMO unchanged (37.6 % / 38.5 %; test
labels 39.7 % / 43.0 %). Use it when training on several corpora; the
recipe leaves it off because a single corpus gains nothing from it.

Head and pooling variants on the same folds (`python bench/speech_probe.py
--ravdess ../shared/data/ravdess --weights ../shared/models/whisper-tiny.en-encoder`;
each fold's head fitted on its training and validation actors together, so
the baseline reads 75.6 % / 83.7 % there): C = 0.003 / 0.03 / 0.1: 75.5 /
75.6 / 75.4 % per file, 83.1 / 84.1 / 84.1 % per speaker; transformer layers
only (no convolution state): 76.0 % / 84.0 %; last 3 states only: 73.1 % /
80.4 %; mean only: 74.8 % / 82.4 %; mean + std + max: 76.1 % / 84.2 %; states
balanced by block RMS: 73.8 % / 83.8 %; an MLP head (256 hidden, dropout,
early stopping): 72.3–73.3 % / 81.3–81.7 %; one augmented copy of each
training file through the encoder: 76.2 % / 83.7 %. None moves both numbers
by more than a point, so the recipe keeps the plain setting (all 6 states,
mean + std, C = 0.01, no augmentation).
"""


def speech_finetune() -> str:
    d = load("speech_finetune")
    if d is None:
        return missing("speech_finetune")
    tuned = [f["test"] for f in d["folds"]]
    frozen = [f["frozen_logreg"] for f in d["folds"]]
    rows = [(k + 1, f["epoch"], pct(f["test"]), pct(f["frozen_logreg"]), num(f.get("seconds"), 0))
            for k, f in enumerate(d["folds"])]
    return f"""\
Fine-tuning the encoder's last transformer layer (and its final layer norm)
on cached outputs of the layers below, with the pooled statistics of the
frozen states kept beside it and a linear head (AdamW, encoder lr {sci(d['lr'])}, head
lr 1e-3, label smoothing 0.1, up to {d['epochs']} epochs, epoch picked on each fold's
validation actors): {pm(tuned)} per file, against {pm(frozen)} for the
frozen encoder with logistic regression fitted on the same training actors
(`python bench/speech_finetune.py --ravdess ... --weights ...`, {len(d['folds'])} folds,
about {sum(f.get('seconds', 0) for f in d['folds']) / 60:.0f} minutes; `bench/results/speech_finetune.json`):

{table(["fold", "epoch picked", "fine-tuned", "frozen + logistic regression", "seconds"], rows)}
With about 900 training clips per fold, adapting 1.8 M encoder weights overfits the
training voices; the recipe keeps the encoder frozen.
"""


def speech_combine() -> str:
    d = load("speech_combine")
    if d is None:
        return missing("speech_combine")
    order = ["encoder, clip length (the recipe)", "encoder, 30-s input", "encoder + CNN stages", "CNN stages alone"]
    names = {"encoder, clip length (the recipe)": "encoder on the clip's own length (the recipe)",
             "encoder, 30-s input": "encoder on 30-s input (padded, pooled over the clip's frames)",
             "encoder + CNN stages": "encoder + EfficientNet-Lite0 stages on log-mels",
             "CNN stages alone": "EfficientNet-Lite0 stages alone"}
    res = d["results"]
    keys = [k for k in order if k in res] + [k for k in res if k not in order]
    rows = [(names.get(k, k), f"{res[k]['dim']:,}", pm(res[k]["per_file"]), pm(res[k]["per_speaker"])) for k in keys]
    gain = cost = None
    if {"encoder, clip length (the recipe)", "encoder, 30-s input", "encoder + CNN stages"} <= set(res):
        base = mean_sd(res["encoder, clip length (the recipe)"]["per_file"])[0]
        gain = mean_sd(res["encoder, 30-s input"]["per_file"])[0] - base
        cost = base - mean_sd(res["encoder + CNN stages"]["per_file"])[0]
    text = f"""\
On the pipeline's own cached vectors (`python bench/speech_combine.py
--ravdess ... --weights ...`, same 6 folds, head fitted on training +
validation actors; `bench/results/speech_combine.json`):

{table(["variant", "dim", "per file", "per speaker"], rows)}"""
    if gain is not None:
        text += f"""
The 30-s input gains {gain:.1f} points per file (within the spread over folds)
at about twelve times the encoder time (411 s against 35 s for the 1,080
files), so the recipe runs on the clip's length; adding the CNN's stages
costs {cost:.1f} points: the ImageNet features add noise, not information.
"""
    return text


SPEECH_ONNX = """\
The encoder runs on ONNX Runtime when it is installed: exported the first
time a model is loaded (or a training pass starts), checked against PyTorch
on three input lengths, and cached under `$EMOVOX_CACHE/onnx/` by the
encoder's identity; `--engine torch` keeps PyTorch. On a 3.3-s RAVDESS clip
the encoder alone takes about 35 ms in PyTorch on the 2-core CPU (30-s
padded input: about ten times more) and about a quarter less on ONNX Runtime.
Training the speech recipe on TESS + RAVDESS + nEMO (5,841 files; the first
command above) with an empty cache takes 3 min 20 s on the 2-core CPU
(checking that every file decodes 9 s; the encoder pass on ONNX Runtime,
export included, 132 s; both heads 47 s); its
held-out RAVDESS actors 17–18 (120 files, two voices) score 68.3 % per file
and 68.3 % per speaker. With that model (`python bench/speech_speed.py
runs/speech/model --data ../shared/data/ravdess --files 1000`): a single 3-s
clip takes 28 ms (p50; p95 38 ms), and `emovox predict` over 1,000 files
(3,660 s of audio) takes 40.7 s as a whole process, start-up included: a
real-time factor of 0.011 (the encoder is 24 ms of the 30 ms per file;
decoding 2 ms, trimming 1 ms, Whisper's log-mel 2 ms).
"""

FUSION_INTRO = """\
## Other languages: Whisper base, and fusing encoders

```bash
bash ../shared/tools/whisper-base/fetch.sh ~/emovox-weights     # offline: Whisper base (MIT) as a transformers folder, ~15 s
ln -s "$PWD/../shared/models/whisper-tiny.en-encoder" ~/emovox-weights/
export EMOVOX_WEIGHTS=~/emovox-weights                          # online: leave it unset, the hub has openai/whisper-base
emovox train --recipe speech --encoders whisper_base ...                               # the bundled model's encoder
emovox train --recipe speech --encoders whisper_tiny_en,whisper_base --fusion average ...  # two encoders, one model
emovox benchmark --config bench/fusion.toml --out reports/fusion                       # the table below (bench/results/fusion.json)
```

`whisper_base` is OpenAI's multilingual Whisper base audio encoder (6 layers,
d_model 512, 20.6 M parameters, MIT), used like tiny.en (the clip's own
length, mean + std of its 8 hidden states: 8,192 numbers, ONNX Runtime). A
model may hold several encoders (`--encoders A,B`). `--fusion concat`, the
default, gives one head over their concatenated vectors. `--fusion average`
fits one logistic regression per encoder and averages their logits; it is
stored as one linear head over the concatenation, so nothing downstream
changes.

Speaker-grouped protocols (`bench/fusion.toml`), accuracy per file / per
speaker, speech recipe heads, mean ± std over folds
(`bench/results/fusion.json`):
"""

FUSION_OUTRO = """\
Whisper base is the better encoder for new voices: +3 points per file on
held-out RAVDESS actors when other corpora train too, +8 on Polish speakers
when Polish is in training, +3 across TESS's two voices. The bundled model
uses it alone. With no Polish at all in training it does not help (36–40 %
for every encoder), so a new language still needs some of its own data.
Fusing both encoders gains 2–3 points per file on RAVDESS alone and under a
point when other corpora train too, at 1.7 times the encoder cost, and loses
up to a point per speaker there; averaging per-encoder heads and one head
over both are within a point of each other everywhere. So the bundled model
uses base alone.
"""


def fusion() -> str:
    d = load("fusion")
    if d is None:
        return FUSION_INTRO + "\n" + missing("fusion") + "\n" + FUSION_OUTRO

    def column(method: str) -> str:
        both = "whisper_tiny_en+whisper_base" in method
        if both:
            return "tiny.en + base, average" if "(average)" in method else "tiny.en + base, concat"
        return "tiny.en" if method.startswith("whisper_tiny_en") else "base" if method.startswith("whisper_base") else method

    protocols = {("ravdess", "speaker-kfold"): ("RAVDESS, 6 folds over actors 01–18", ""),
                 ("tess", "cross-speaker"): ("TESS across its 2 voices (mean of both directions)", ""),
                 ("nemo", "loso"): ("nEMO (Polish), leave one of 4 speakers out", ""),
                 ("tess,ravdess,nemo", "speaker-kfold"):
                     ("TESS + nEMO + 12 RAVDESS actors → 3 other RAVDESS actors (6 folds, corpora balanced)", ""),
                 ("tess,ravdess,nemo", "cross-corpus"):
                     ("TESS + RAVDESS → nEMO (no Polish in training; argmax over nEMO's labels)", ", test labels")}
    cols = ["tiny.en", "base", "tiny.en + base, concat", "tiny.en + base, average"]
    cells: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    order: list[tuple[str, str]] = []
    for r in d["rows"]:
        key = (r["corpus"], r["protocol"])
        suffix = protocols.get(key, ("", ""))[1]
        if r["variant"] not in (f"per file{suffix}", f"per speaker{suffix}"):
            continue
        if key not in cells:
            cells[key] = {}
            order.append(key)
        col = column(r["method"])
        if col not in cols:
            cols.append(col)
        cells[key].setdefault(col, {})["file" if r["variant"].startswith("per file") else "speaker"] = \
            [f["accuracy"] for f in r["folds"]]
    rows = []
    for key in order:
        got = cells[key]
        best = {v: max((mean_sd(got[c][v])[0] for c in got if v in got[c]), default=None) for v in ("file", "speaker")}
        row: list[str] = [protocols.get(key, (f"{key[0]} · {key[1]}", ""))[0]]
        for c in cols:
            if c not in got or not {"file", "speaker"} <= set(got[c]):
                row.append("")
                continue
            parts = []
            for v in ("file", "speaker"):
                m = mean_sd(got[c][v])[0]
                parts.append(bold(pm(got[c][v], unit=""), round(m, 1) == round(best[v], 1)))
            row.append(" / ".join(parts))
        rows.append(row)
    return FUSION_INTRO + "\n" + table(["protocol"] + cols, rows) + "\n" + FUSION_OUTRO


def int8() -> str:
    d = load("int8")
    if d is None:
        return missing("int8")
    names = {"whisper_tiny_en": "Whisper tiny.en", "whisper_base": "Whisper base"}
    rows = []
    for enc, r in d.items():
        f32, i8 = (mean_sd(r["scores"]["per file"][k])[0] for k in ("fp32", "int8"))
        s32, s8 = (mean_sd(r["scores"]["per speaker"][k])[0] for k in ("fp32", "int8"))
        fps = r.get("files_per_s", {})
        adopted = "yes" if f32 - i8 <= 0.5 and s32 - s8 <= 0.5 else "no"
        rows.append((names.get(enc, enc), f"{f32:.1f} → {i8:.1f} % ({i8 - f32:+.1f})".replace("-", "−"),
                     f"{s32:.1f} → {s8:.1f} % ({s8 - s32:+.1f})".replace("-", "−"),
                     f"{num(fps.get('fp32'))} → {num(fps.get('int8'))}", adopted))
    return f"""\
Int8 weights for the speech encoders (`--engine onnx-int8`: ONNX Runtime's
dynamic quantisation of the encoder's export, made once and cached; `python
bench/int8.py --ravdess ...`, the same 6 RAVDESS folds, heads fitted on fp32
vectors and scored on int8 ones; `bench/results/int8.json`):

{table(["encoder", "per file fp32 → int8", "per speaker fp32 → int8", "encoder pass, files/s fp32 → int8", "adopted"], rows)}
An encoder is adopted in int8 only if it loses at most half a point per file and per speaker (speeds: 200 RAVDESS
files, 2 threads, measured while a benchmark shared the CPU); fp32 stays the
default and `--engine onnx-int8` is there for those who trade a point for a
smaller, somewhat faster encoder.
"""


def single_file() -> str:
    d = load("single_file")
    out = ["### More of what one file can tell: tried, not adopted\n"]
    if d is None:
        return "\n".join(out + [missing("single_file")])
    shift = d.get("shift", 1.5)
    out.append(f"""\
Speaker-grouped CV with Whisper base (RAVDESS 6 folds over actors 01–18; TESS both directions), per file /
per speaker (`python bench/single_file.py --ravdess ... --tess ... --weights DIR`, 45 min;
`bench/results/single_file.json`). Shifted copies: `librosa.effects.pitch_shift` by ±{shift:g} semitones (the
whole spectrum, formants included, scaled by 0.92 / 1.09: the range of vocal-tract-length perturbation).
""")
    variants = [("logreg", "logistic regression on mean + std (shipped)"),
                ("tta", "test-time augmentation (the file and its two shifted copies averaged)"),
                ("vtlp", 'shifted copies as training data (new "voices")'), ("vtlp+tta", "both")]
    res = d["results"]
    corpora = list(res)

    def cell(corpus: str, v: str) -> tuple[float | None, float | None]:
        r = res[corpus]
        return tuple(r[f"{v}/{h}"]["mean"] if f"{v}/{h}" in r else None for h in ("file", "speaker"))  # type: ignore[return-value]

    best = {c: [max(x for x in (cell(c, v)[h] for v, _ in variants) if x is not None) for h in (0, 1)] for c in corpora}
    rows = []
    for v, label in variants:
        row = [label]
        for c in corpora:
            f, s = cell(c, v)
            row.append(" / ".join(bold(pct_of(x) if i else num(x), x is not None and round(x, 1) == round(best[c][i], 1))
                                  for i, x in enumerate((f, s))))
        rows.append(row)
    att = res.get("ravdess", {}).get("attentive/file")
    if att:
        rows.append(["attentive-statistics pooling over the frames of every layer (learned layer mix, 15 epochs)",
                     f"{pct_of(att['mean'])} (fold 1 of 6; stopped)"] + ["–"] * (len(corpora) - 1))
    out.append(table(["variant"] + [CORPORA.get(c, c) for c in corpora], rows))
    if d.get("note"):
        out.append(f"({d['note']}.)\n")
    out.append("""\
None wins by a point on more than one corpus: a shifted voice is not a voice the heads know (test-time augmentation
loses 6–11 points), the extra "voices" gain on TESS's two speakers and lose on RAVDESS, and a small attentive head
on a few hundred files per fold overfits where logistic regression does not. Averaging per-encoder heads (the fusion
table above: +2.7 per file over base alone on RAVDESS, 6 folds; +0.4 from 3 corpora to RAVDESS; +4.0 from TESS +
RAVDESS to nEMO) does pass the rule (RAVDESS and nEMO), but costs a second encoder pass on every file and 16 MB
more in the wheel for 0.4–4 points; it is there for users (`emovox train --encoders whisper_tiny_en,whisper_base
--fusion average`), and the bundled model stays on base alone.
""")
    return "\n".join(out)


ROBUST = """\
## Unseen speakers: `--recipe robust`

```bash
emovox train --recipe robust --corpus tess,ravdess --data ../shared/data/tess,../shared/data/ravdess \\
    --split speaker --test-speakers 17,18 --val-speakers 15,16 --out runs/robust
emovox predict --model runs/robust/model clip.wav                      # one file: the per-file head
emovox predict --model runs/robust/model --same-speaker speaker_07/    # several files of ONE speaker
emovox evaluate runs/robust/model --corpus ravdess --data ../shared/data/ravdess --speaker-norm
```

The robust recipe keeps the CNN frozen and adds what the plain recipe lacks
on a new voice:

- **Acoustic functionals** beside the CNN embedding: the 6,373 ComParE 2016
  statistics of pitch, loudness, voice quality and spectral shape over the
  whole utterance (`opensmile` package, research license: see the licenses on
  the [home page](index.md#licenses); cached like the spectrograms;
  `--acoustic compare|egemaps|none`). They see the whole recording at its own
  length, where the CNN sees a fixed 3-second window.
- **Speaker normalisation** (`--normalize speaker`): every speaker's vectors
  are z-scored by that speaker's own statistics, which removes much of what
  makes voices differ while keeping how a voice changes with emotion. A single
  file has no speaker statistics, so the model has two heads: one for single
  files (`predict`), and one for recordings normalised together
  (`predict --same-speaker`, `evaluate --speaker-norm`, API
  `predict(files, same_speaker=True)`). Normalising together needs several
  recordings of the speaker in more than one emotion: a set in one emotion
  alone loses that emotion with the mean.
- **Pooled intermediate CNN stages** (`--backbone efficientnet_lite0_stages`):
  mean and max over time and frequency of stages 3–6 beside the final
  embedding (2,688 dimensions, same single frozen pass).
- **Two augmented copies of each training file** (`--augment 2`,
  `audiomentations`: noise at 10–30 dB SNR, gain ±6 dB, pitch ±3 semitones,
  tempo 0.85–1.15), seeded by file content so a copy is the same on every
  run and its features are cached; copies count as voices of their own for
  speaker normalisation and never enter validation or test parts.
- **An L2 logistic-regression head** (`--solver logreg`, scikit-learn
  L-BFGS, C = 0.01) instead of 10 Adam epochs: it fits the 9,061-dimensional
  vectors in seconds with nothing to tune on the test speakers. Both heads are
  calibrated by temperature on the validation speakers and stored as plain
  linear layers (safetensors).

Each step, measured (`emovox benchmark --config bench/robust.toml --out
reports/robust`, about 18 minutes on the 2-core CPU with features and augmented copies cached; RAVDESS: speaker-grouped 6-fold
over actors 01–18, validation speakers never in training; "per speaker" rows
normalise each test actor's recordings together):

| step | RAVDESS 6-fold, per file | RAVDESS 6-fold, per speaker | TESS OAF → YAF (per speaker) | TESS YAF → OAF (per speaker) |
|---|---|---|---|---|
| plain recipe (frozen Lite0, Adam) | 47.6 % ± 4.1 % | – | 49.7 % | 58.1 % |
| + logistic-regression head | 49.1 % ± 3.1 % | 54.3 % ± 2.9 % | 57.8 % | 59.6 % |
| + eGeMAPS functionals (88) | 52.2 % ± 3.4 % | 60.6 % ± 5.4 % | 60.6 % | 63.3 % |
| + ComParE functionals (6,373) instead | 57.2 % ± 2.2 % | 67.7 % ± 5.0 % | 61.4 % | 68.0 % |
| + pooled CNN stages | 58.8 % ± 3.0 % | 67.6 % ± 5.0 % | 63.9 % | 70.1 % |
| + one augmented copy of each training file | 59.7 % ± 4.2 % | 69.4 % ± 5.0 % | 67.3 % | 69.0 % |
| + a second augmented copy = **robust** | **60.2 % ± 4.0 %** | **70.4 % ± 5.3 %** (UAR 68.8 %) | **68.6 %** | **69.6 %** |

On TESS cross-speaker the robust per-file head scores 69.8 % (OAF → YAF)
and 65.7 % (YAF → OAF); calibration stays poor there, as with the plain
recipe, because two speakers leave no speaker-independent validation part.
The robust recipe elsewhere: TESS random split 100.0 %, held-out words
100.0 %; TESS + RAVDESS speaker-grouped 5-fold 56.5 % ± 4.1 % per file,
66.2 % ± 5.5 % per speaker (one augmented copy: 58.1 % / 66.3 %, the one
protocol where the second copy did not help); TESS → RAVDESS 18.3 % / 38.9 %
(per file / per speaker), RAVDESS → TESS 40.8 % / 48.5 %. Full table, UAR,
macro-F1, calibration and confusion matrices: `reports/robust/report.md`
after the benchmark command.

Training the robust recipe on TESS + RAVDESS (3,682 files, the first command
above) with an empty cache (`EMOVOX_CACHE=/tmp/empty`) takes 7 min 27 s on
the 2-core CPU: log-mels 21 s, one EfficientNet-Lite0 pass (ONNX Runtime)
and the ComParE functionals 90 s, the two augmented copies of the 3,442
training files (audio, log-mels, CNN pass, functionals) 281 s, fitting and
calibrating both heads 49 s. Its held-out actors 17–18 (120 files) score
60.8 % per file and 63.3 % per speaker.

Measured and not adopted:

- **Fine-tuning the CNN itself** on log-mels (`emovox benchmark --config
  bench/finetune.toml --out reports/finetune`, RAVDESS 6-fold as above, per
  file; run on one NVIDIA H200 GPU with `device = "auto"`, about 1.5 minutes
  per full fine-tuning cell there, hours on the 2-core CPU):

    | what trains | RAVDESS 6-fold, per file |
    |---|---|
    | last blocks, lr 3·10⁻⁴, 10 epochs | 45.5 % ± 2.7 % |
    | last blocks, CNN at 0.1× the head's lr 10⁻³, 1 warm-up epoch, cosine, 15 epochs | 44.3 % ± 3.2 % |
    | all layers, lr 10⁻⁴, 15 epochs | 51.0 % ± 3.0 % |
    | all layers, CNN at 0.1×, warm-up, cosine, 15 epochs | 49.4 % ± 2.1 % |
    | the same + SpecAugment (2 time, 2 frequency masks) | 53.2 % ± 2.0 % |

    The best of them stays 7 points below the frozen robust recipe (60.2 %).
    Averaging its test probabilities, fold by fold, with those of each head
    of the robust recipe with one augmented copy (equal weights) gives 61.3 %
    ± 4.0 % per file and 69.0 % ± 3.7 % per speaker (that recipe alone: 59.7 %
    and 69.4 %): 1.6 points per file, for a GPU training run and a second CNN
    pass at every prediction.

- **An Adam-trained head** on the fused vectors (30 epochs, best on
  validation; `bench/robust.toml`): 57.3 % per file, 66.7 % per speaker
  on RAVDESS 6-fold, below the logistic regression on the same vectors
  (58.8 % / 67.6 %).
- **Class-balanced weights** (`--balance`; `bench/robust.toml`): RAVDESS
  60.2 % / 70.6 %, TESS + RAVDESS 5-fold 57.0 % / 66.2 % (per file / per
  speaker), against 60.2 % / 70.4 % and 56.5 % / 66.2 % unweighted: within
  half a point.
- **Variable-length CNN input**: not built. The CNN reads a fixed 3-second
  window (clips are padded or cut, so every clip's 128 × 301 log-mel image
  is resized to 224 × 224 alike, and no clip is stretched relative to
  another); the ComParE functionals already describe the whole recording at
  its own length.

Against the targets: RAVDESS 6-fold reaches 70.4 % when each test actor's
recordings are normalised together, but 60.2 % for single files; TESS
cross-speaker stays at 68.6 % / 69.6 % (per speaker), short of 80 %; TESS
random and held-out words are at 100 %; training takes minutes, not an hour.
"""


def channels_table(result: dict) -> str:
    """The per-channel table of ``bench/channels.py --markdown`` (the same computation, without importing the
    benchmark): per channel and model, RAVDESS held-out actors' accuracy (share of clean kept), adapted accuracy,
    ECE, accuracy over every clip (TESS words too) and the share refused."""
    names = list(result["models"])
    rav = "ravdess held-out actors"
    head = ["channel"] + [f"{n}: {col}" for n in names for col in
                          ("RAVDESS (kept of clean)", "adapted", "ECE", "all clips", "refused")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cname, row in result["channels"].items():
        cells = [cname]
        for n in names:
            m = row[n]
            g = m["groups"].get(rav, {})
            kept = g.get("kept_of_clean")
            cells += [f"{g.get('accuracy', float('nan')):.1%}" + (f" ({kept:.0%})" if kept is not None and cname != "clean" else ""),
                      f"{g.get('adapted_accuracy', float('nan')):.1%}",
                      f"{g.get('ece', float('nan')):.3f}", f"{m['accuracy']:.1%}", f"{m['refused']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def channels() -> str:
    out = ["## Speech as people record it\n",
           "Held-out clips of the bundled model (RAVDESS actors 17–18, 120 clips; the 20 held-out TESS words, 280 "
           "clips) through simulated channels, the previous generation (v4) beside the bundled one (v5): "
           "`python bench/channels.py --model v4=DIR`, `bench/results/channels.json`. What the channels are, how "
           "the training copies are made and what the numbers mean: [Speech as people record it](channels.md).\n"]
    d = load("channels")
    if d is None:
        out.append(missing("channels"))
    else:
        out.append(channels_table(d))
        names = list(d["models"])
        rows = []
        for cname, row in d["channels"].items():
            cells = [cname, num(row.get("simulation_ms_per_clip"), 1)]
            for n in names:
                m = row[n]
                cells += [pct(m.get("uar")), pct(m.get("four_emotions_accuracy"))]
            rows.append(cells)
        out.append("Over all clips, per model: UAR, and accuracy with the argmax restricted to four emotions "
                   "(angry / calm / fear / happy); and what simulating the channel costs per clip:\n")
        out.append(table(["channel", "simulation ms per clip"] + [f"{n}: {c}" for n in names for c in ("UAR", "four emotions")],
                         rows))
        for name, gate in d.get("gate_tradeoff", {}).items():
            seen, rows = set(), []
            for r in gate["curve"]:
                key = (r["scale"], r["ceiling"])
                if key in seen:
                    continue
                seen.add(key)
                rows.append((f"{r['scale']:g}", f"{r['ceiling']:g}" + (" (no second opinion)" if r["ceiling"] == 1 else ""),
                             rate(r["real_speech_refused"]) if r["real_speech_refused"] in (0, 1) else f"{100 * r['real_speech_refused']:.2f} %",
                             f"{r['probes_labelled']} of {r['probes']}",
                             f"{r['channel_probes_labelled']} of {r['channel_probes']}"))
            out.append(f"The familiarity gate of {name}, its two knobs: the distance threshold (× the model's) and the "
                       f"speech ceiling of the second opinion (the model's own: {gate['speech_ceiling']:g}"
                       f"{', no second opinion' if gate['speech_ceiling'] == 1 else ''}); held-out "
                       f"speech through every channel refused, synthetic probes given an emotion, as they are and "
                       f"through the channels (those that pass the energy gate):\n")
            out.append(table(["distance threshold ×", "speech ceiling", "held-out speech refused (all channels)",
                              "probes given an emotion", "probes through channels"], rows))
    cv = load("channel_cv")
    out.append("How many channel copies to train on (`python bench/channel_cv.py --folds 3 --copies 0,1,2`, "
               "`bench/results/channel_cv.json`): the bundled model's recipe with 0, 1 or 2 channel copies of every "
               "training file, scored on the RAVDESS training actors 01–14 in actor-grouped folds (each fold's actors "
               "out of training, their cuts and copies too) through the benchmark channels:\n")
    if cv is None:
        out.append(missing("channel_cv"))
    else:
        chans = cv["channels"]
        out.append(table(["channel copies"] + chans + ["minutes"],
                         [[r["copies"]] + [pct(r["accuracy"][c]) for c in chans] + [num(r.get("seconds", 0) / 60, 1)]
                          for r in cv["runs"]]))
        out.append(f"({cv['folds']} folds over {len(cv['actors'])} actors; {len(cv['actors']) * 60} clips per channel.)\n")
    return "\n".join(out)


OOD_KINDS = {"tone": "sine tones", "chirp": "linear / log chirps", "wave": "square, sawtooth, triangle",
             "dtmf": "DTMF dialling", "whistle": "whistles with vibrato and glide", "chord": "synthetic music chords",
             "hum": "mains hum", "noise": "white, pink, brown, blue, violet noise"}


def ood() -> str:
    out = ["## Not speech I know: the familiarity gate\n",
           "The bundled model on synthetic non-speech (`emovox.audio.probes`) and on real speech it never heard "
           "(`python bench/ood.py`, `bench/results/ood.json`); how the gate works: "
           "[Predict › Not speech I know](predicting.md#not-speech-i-know).\n"]
    d = load("ood")
    if d is None:
        return "\n".join(out + [missing("ood")])
    fit = d.get("fit", {})
    if fit:
        out.append(f"The gate: {fit.get('components')} main directions of {fit.get('n_vectors', 0):,} training vectors "
                   f"({fit.get('classes')} classes); {rate(fit.get('unconfirmed_rate'))} of new speakers' held-out "
                   f"speech passes on its distance alone, and the speech ceiling of the second opinion is "
                   f"{fit.get('speech_ceiling', 1):.1f} times the threshold ({pct(fit.get('confirmed_rate'))} of the "
                   f"held-out speech of new speakers and of a new corpus lies under it; "
                   f"{fit.get('speaker_folds')} speaker folds, corpora {', '.join(fit.get('corpora', []))}).\n")
    groups: dict[str, list[dict]] = {}
    for p in d["probes"]:
        groups.setdefault(p["kind"], []).append(p)
    rows = []
    for kind, probes in groups.items():
        scores = [p["ood_score"] for p in probes if p.get("ood_score") is not None]
        rows.append((f"{OOD_KINDS.get(kind, kind)} ({len(probes)})",
                     sum(p["default"] == "speech gate" for p in probes),
                     sum(p["default"] == "familiarity" for p in probes),
                     sum(p["default"] not in ("speech gate", "familiarity") for p in probes),
                     f"{min(scores):.1f}–{max(scores):.1f}" if scores else "–",
                     sum(p.get("silero") in ("speech gate", "familiarity") for p in probes)))
    out.append(table(["kind (probes)", "refused by the energy gate", "by the familiarity gate", "given an emotion",
                      "ood_score", "`--speech-gate silero` refuses"], rows))
    held = d.get("held_out_speech", {})
    if held:
        conds = list(next(iter(held.values())))
        names = {"ravdess held-out actors": "RAVDESS actors 17–18 (never heard)",
                 "tess held-out words": "TESS held-out words (never heard)"}
        out.append("Real speech it never heard, as recorded and degraded (a sample of each set), share that passes "
                   "both gates:\n")
        out.append(table(["real speech", "n"] + [f"passes {c}" if c == "as recorded" else c for c in conds]
                         + ["highest ood_score"],
                         [[names.get(g, g), next(iter(r.values()))["n"]] + [rate(r[c]["pass_rate"]) for c in conds]
                          + [num(max(r[c]["max_ood"] for c in conds), 2)] for g, r in held.items()]))
    long = d.get("long_inputs", {})
    if long:
        parts = []
        for name, r in long.items():
            if "pass_rate" in r:
                parts.append(f"{name}: {r['n']} files, {rate(r['pass_rate'])} pass (highest score {r['max_ood']:.3f})")
            else:
                parts.append(f"{name}: {r.get('refused')} of {r['n']} refused")
        out.append("Long inputs (judged by their loudest 5 s): " + "; ".join(parts) + ".\n")
    cv = d.get("cross_validated", {})
    if cv:
        out.append("Cross-validated on the training speech (the gate refitted without each speaker fold, or without a "
                   "whole corpus; files and timeline cuts without their channel copies), share under the threshold "
                   "and under the speech ceiling:\n")
        out.append(table(["training speech", "n", "new speakers: under the threshold", "under the ceiling",
                          "a new corpus: under the threshold", "under the ceiling"],
                         [(name, f"{r['n']:,}", pct(r["new_speakers_pass"]), pct(r["new_speakers_under_ceiling"]),
                           pct(r["new_corpus_pass"]), pct(r["new_corpus_under_ceiling"])) for name, r in cv.items()]))
    cost = d.get("cost", {})
    if cost:
        out.append(f"Cost: {cost.get('ood_ms_per_file', 0):.2f} ms a file ({cost.get('ood_ms_per_file_batched', 0):.2f} ms "
                   f"batched), after the energy gate's {cost.get('energy_gate_ms_per_3s_file', 0):.1f} ms per 3-s file.\n")
    return "\n".join(out)


def speech_gate() -> str:
    out = ["## No speech: the speech gate\n",
           "Every real clip of the shared corpora and synthetic non-speech, 20 of each (`python bench/speech_gate.py "
           "--tess ... --ravdess ... --nemo ...`, `bench/results/speech_gate.json`), share rejected as *no speech*:\n"]
    d = load("speech_gate")
    if d is None:
        return "\n".join(out + [missing("speech_gate")])
    res = d["results"]
    sets = list(next(iter(res.values())))
    corpora = CORPORA
    head = ["gate"] + [f"{corpora[s]} ({res[next(iter(res))][s]['n']:,})" if s in corpora else s for s in sets] + ["ms per file"]
    rows = []
    for gate, r in res.items():
        ms = statistics.fmean(r[s]["ms_per_file"] for s in sets if s in corpora)
        rows.append([gate] + [rate(r[s]["rate"]) for s in sets] + [num(ms, 0)])
    out.append(table(head, rows))
    notes = []
    for gate, r in res.items():
        for s in sets:
            files = r[s].get("rejected_files") or []
            if s in corpora and files:
                folders = [Path(f).parent.name for f in files]
                by = ", ".join(f"{folders.count(x)} of {x}" for x in sorted(set(folders)))
                notes.append(f"{gate}: {len(files)} {corpora[s]} clips ({by})")
    if notes:
        out.append("Real clips rejected: " + "; ".join(notes) + f". A clip needs {d.get('min_speech_s', 0.25):g} s of "
                   "speech to pass.\n")
    return "\n".join(out)


def timelines() -> str:
    out = ["## Timelines\n",
           "Segments against whole files: speaker-grouped 6-fold CV on RAVDESS with Whisper base, heads trained on "
           "whole files, on the timeline's cuts or on both, tested on both (`python bench/window_match.py --ravdess "
           "... --weights DIR`, `bench/results/window_match.json`; see [Long recordings](long-audio.md)):\n"]
    d = load("window_match")
    if d is None:
        out.append(missing("window_match"))
    else:
        heads = {"file": "per file", "speaker": "per speaker"}
        trains = {"file": "files", "window": "cuts", "both": "both"}
        out.append(table(["head", "trained on", "tested on whole files", "tested on timeline cuts"],
                         [(heads.get(r["head"], r["head"]), trains.get(r["train"], r["train"]),
                           f"{r['test_file']:.1f} ± {r['test_file_std']:.1f} %",
                           f"{r['test_window']:.1f} ± {r['test_window_std']:.1f} %") for r in d["table"]]))
    d = load("timeline_adapt")
    out.append("Recordings built from every clip of a held-out RAVDESS actor (random order, 1 s pauses; `python "
               "bench/timeline_adapt.py --ravdess ... --model src/emovox/models/default --clips 10,60`, "
               "`bench/results/timeline_adapt.json`), the bundled model on actors 17–18; mean ± std over the "
               "recordings:\n")
    if d is None:
        out.append(missing("timeline_adapt"))
    else:
        rows = []
        for r in d["table"]:
            recs = [x for x in d.get("recordings", []) if x["clips"] == r["clips"]]

            def spread(key: str, mean: float, recs: list[dict] = recs) -> str:
                if len(recs) < 2:
                    return pct_of(mean)
                return "{:.1f} ± {:.1f} %".format(*mean_sd([x[key] for x in recs]))

            off, on = spread("accuracy_off", r["off"]), spread("accuracy_on", r["on"])
            rows.append((r["clips"], r["n"], num(r["segments"], 0), off, on, pct_of(r.get("files"))))
        out.append(table(["clips per recording", "recordings", "segments", "segment accuracy", "adapted to the speaker",
                          "the same clips as files"], rows))
    d = load("timeline_adapt_v2")
    out.append("The same with the second-generation model (Whisper tiny.en), 20 recordings of 6 fold models per "
               "length (`bench/results/timeline_adapt_v2.json`):\n")
    if d is None:
        out.append(missing("timeline_adapt_v2"))
    else:
        out.append(table(["clips per recording", "recordings", "segments", "segment accuracy", "adapted to the speaker",
                          "adaptation better"],
                         [(r["clips"], r["n"], num(r["segments"], 1), pct_of(r["off"]), pct_of(r["on"]),
                           f"{r['better']} of {r['n']}") for r in d["table"]]))
    return "\n".join(out)


def conversations() -> str:
    out = ["## Conversations\n",
           "Conversations built from real clips of 1, 2 or 3 speakers drawn across RAVDESS actors, TESS's two voices "
           "and nEMO's Polish actors (`python bench/conversations.py ...`, `bench/results/conversations.json`; see "
           "[Conversations](long-audio.md#conversations-who-felt-what)); the cut-off of `auto` is chosen on the "
           "conversations of one half of the speakers and scored on the other:\n"]
    d = load("conversations")
    if d is None:
        return "\n".join(out + [missing("conversations")])
    v = d["voices"]
    out.append(table(["speakers", "tuned on / tested on", "conversations", "cut-off", "attribution of segments, `auto`",
                      "number of speakers right", "attribution, number given"],
                     [(r["speakers"], f"{r['tuned_on']} / {r['tested_on']}", r["conversations"], f"{r['threshold']:g}",
                       pct_of(r["attribution_auto"]), pct_of(r["count_right"], 0), pct_of(r["attribution_known_n"]))
                      for r in v["cv"]]))
    out.append(f"Cut-off chosen on all speakers: {v.get('threshold_all', '–')}. Speaker embeddings: "
               f"{v.get('embed_seconds_per_audio_minute', 0):.2f} s per minute of audio.\n")
    rows = []
    for e in d.get("emotions", []):
        if "per_voice" in e:
            rows.append((", ".join(e["actors"]), e["speakers"], pct_of(e["off"]), pct_of(e["one"]), pct_of(e["per_voice"]),
                         f"{e.get('found_speakers')} found, {pct_of(e.get('attribution'))} attributed right"))
        elif "single_voice" in e:
            rows.append((", ".join(e["actors"]), e["speakers"], "", pct_of(e["single_voice"]), "", "one actor's recording"))
    if rows:
        out.append("Emotion per segment, bundled model, held-out actors:\n")
        out.append(table(["actors", "speakers", "no adaptation", "one adaptation for the whole", "adapted per voice",
                          "voices"], rows))
    return "\n".join(out)


def stream() -> str:
    out = ["## Live streams\n",
           "`emovox serve` with the bundled model in its own process, clients streaming a 60-s recording of RAVDESS "
           "actors 17–18 at real time in 20 ms messages (`python bench/stream.py --streams 1,4,8,16 --seconds 60 "
           "--long-minutes 30`, `bench/results/stream.json`; see [Live](live.md)); latency from sending the "
           "message that holds a window's last sample to receiving its event:\n"]
    d = load("stream")
    if d is None:
        return "\n".join(out + [missing("stream")])
    out.append(table(["concurrent real-time streams", "segments", "p50 latency", "p95", "max"],
                     [(r["streams"], r["segments"], f"{r['p50_ms']:.0f} ms", f"{r['p95_ms']:.0f} ms", f"{r['max_ms']:.0f} ms")
                      for r in d["latency"]]))
    eq = d.get("equality", {})
    if eq:
        out.append(f"Streamed windows and labels against the file timeline on the same audio ({eq.get('vad')} "
                   f"detector): {eq.get('same_labels')} of {eq.get('windows')} labels equal, windows "
                   f"{'the same' if eq.get('same_windows') else 'different'}. At most "
                   f"{d.get('max_streams_p95_under_1s')} streams were measured, all with p95 under 1 s.\n")
    mem = d.get("memory", [])
    if mem:
        out.append("One stream over 30 minutes of audio:\n")
        out.append(table(["audio minutes", "segments", "RSS MB", "audio held s", "wall s"],
                         [(num(r["audio_min"], 0), r["segments"], num(r["rss_mb"], 0), num(r["buffer_s"], 2),
                           num(r["wall_s"], 1)) for r in mem]))
    return "\n".join(out)


def batch() -> str:
    out = ["## Batch\n",
           "Bundled model, RAVDESS files repeated, the 2-core machine (`python bench/batch.py --data "
           "../shared/data/ravdess --counts 1000,10000`, `bench/results/batch.json`; see "
           "[Annotate an archive](batch.md)); each run a fresh process, timed from start to exit with model loading "
           "and, for Ray, starting a local Ray instance; memory is the peak summed PSS of the process and all its "
           "children:\n"]
    d = load("batch")
    if d is None:
        out.append(missing("batch"))
    else:
        out.append(table(["run", "files", "wall s", "files/s", "peak PSS MB (process tree)"],
                         [(f"`{r['run']}`", f"{r['files']:,}", num(r["wall_s"]), num(r["files_per_s"]), f"{r['peak_pss_mb']:,}")
                          for r in d["rows"]]))
    d = load("batch_resume")
    out.append("Interrupted and resumed (`python bench/batch.py --data ../shared/data/ravdess --interrupt 10000 "
               "--interrupt-after 120`, `bench/results/batch_resume.json`), then the same command again:\n")
    if d is None:
        out.append(missing("batch_resume"))
    else:
        out.append(table(["engine", "files", "stopped after", "by", "rows before the rerun", "rows after", "every input once"],
                         [(r["engine"], f"{r['files']:,}", f"{r['stopped_after_s']:.0f} s", r["signal"],
                           f"{r['rows_before_rerun']:,}", f"{r['rows']:,}", "yes" if r["every_input_once"] else "no")
                          for r in d["interrupted"]]))
    return "\n".join(out)


def speed() -> str:
    out = ["## Speed\n"]
    d = load("speed")
    out.append("`python bench/speed.py --limit 1000 --files 1000`, 2-core CPU (`bench/results/speed.json`). Training, "
               "frozen EfficientNet-Lite0, 10 epochs, 1,000 TESS files, random split; both start from the same "
               "spectrograms, split, seed, optimiser and head:\n")
    if d is None:
        out.append(missing("speed"))
    else:
        t = d["training"]
        out.append(table(["", "spectrograms s", "CNN s", f"{t['epochs']} epochs s", "total s", "test accuracy"], [
            ("plain recipe (frozen CNN run in every epoch, PyTorch)", num(t["features_s"]), "(in epochs)",
             num(t["plain_train_s"]), num(t["features_s"] + t["plain_train_s"]), pct(t["plain_accuracy"])),
            ("emovox (one CNN pass on ONNX Runtime, head on the embeddings)", num(t["features_s"]),
             num(t["emovox_backbone_pass_s"]), num(t["emovox_epochs_s"], 2),
             num(t["features_s"] + t["emovox_backbone_pass_s"] + t["emovox_epochs_s"]), pct(t["emovox_accuracy"]))]))
        out.append(f"{t['speedup_end_to_end']:.1f}× faster end to end ({t['speedup_training']:.1f}× after the "
                   "spectrograms).\n")
        backbones = {"efficientnet_lite0": "EfficientNet-Lite0 (first bundled model)", "vgg16": "VGG16"}
        engines = {"onnx": "ONNX Runtime", "torch": "PyTorch"}
        inf = sorted(d["inference"], key=lambda r: (list(backbones).index(r["backbone"]) if r["backbone"] in backbones else 9,
                                                     r["engine"] != "onnx", -r["cores"], r["files"]))
        out.append("Inference over TESS files (times include decoding and log-mels; every clip is analysed as 3 s; "
                   "the VGG16 rows use random weights, which time the same):\n")
        out.append(table(["backbone", "engine", "cores", "files", "files/s", "real-time factor", "single clip p50 / p95 ms",
                          "peak RSS MB"],
                         [(backbones.get(r["backbone"], r["backbone"]), engines.get(r["engine"], r["engine"]), r["cores"],
                           f"{r['files']:,}", num(r["files_per_s"]), num(r["rtf"], 4),
                           f"{r['latency_p50_ms']:.0f} / {r['latency_p95_ms']:.0f}", num(r["peak_rss_mb"], 0))
                          for r in inf]))
        i8 = d.get("int8")
        if i8:
            out.append(f"int8 dynamic quantisation of that model kept its accuracy on the held-out RAVDESS actors 17–18 "
                       f"({pct(i8['accuracy_fp32'])} fp32, {pct(i8['accuracy_int8'])} int8, n = {i8['n']}).\n")
    d = load("default_speed")
    out.append("### Speed of the bundled model\n")
    if d is None:
        out.append(missing("default_speed"))
    else:
        out.append("Measured with the bundled model of the second generation (Whisper tiny.en encoder on ONNX Runtime, "
                   "heads in PyTorch): "
                   f"`python bench/speech_speed.py src/emovox/models/default --data ../shared/data/ravdess --files "
                   f"{d['files']}` (`bench/results/default_speed.json`, {d['cores']} cores, engine {d['engine']}): "
                   f"`emovox predict` over {d['files']:,} RAVDESS files ({d['audio_s']:,.0f} s of audio) took "
                   f"{d['wall_s']:.1f} s as a whole process, start-up and model loading included: "
                   f"{d['files_per_s']:.1f} files/s, a real-time factor of {d['rtf']:.4f}; one 3-s clip took "
                   f"{d['single_p50_ms']:.0f} ms (p50; p95 {d['single_p95_ms']:.0f} ms). This machine's speed varies "
                   "from hour to hour, so read these as a range, and compare timings only within one run of a "
                   "benchmark.\n")
    d = load("speed_onnx")
    out.append("### The first bundled model's engines\n")
    if d is None:
        out.append(missing("speed_onnx"))
    else:
        out.append(f"`python bench/speed_onnx.py` (`bench/results/speed_onnx.json`): {d['backbone']} at "
                   f"{d['image_size']} × {d['image_size']}, batches of {d['batch']}, ONNX Runtime "
                   f"{d.get('versions', {}).get('onnxruntime', '?')}, PyTorch {d.get('versions', {}).get('torch', '?')}:\n")
        base = d["rows"][0]["images_per_s_batch32"] if d["rows"] else 1.0
        out.append(table(["engine", "images/s (batch 32)", "speed-up", "single-image latency p50 / p95 ms", "file MiB"],
                         [(r["engine"], num(r["images_per_s_batch32"]), f"{r['images_per_s_batch32'] / base:.2f}×",
                           f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f}", num(r["file_mib"]))
                          for r in d["rows"]]))
        agree = d.get("agreement", {})
        if agree:
            out.append("int8 against fp32 on random inputs: " + "; ".join(
                f"{name}: argmax agrees on {pct(r['int8_vs_fp32_argmax_agreement'])} of {r['n']}, largest probability "
                f"difference {r['int8_vs_fp32_max_prob_diff']:.2f}" for name, r in agree.items()) + ".\n")
    return "\n".join(out)


def others() -> str:
    """Every JSON in ``bench/results/`` that no section above renders: its file name and top-level numbers."""
    rest = sorted(p for p in RESULTS.glob("*.json") if p.stem not in used)
    if not rest:
        return ""
    out = ["## Other measurements\n"]
    for path in rest:
        try:
            d = json.loads(path.read_text())
        except ValueError as err:
            log.warning("gen_benchmarks: cannot read %s (%s)", path, err)
            continue
        scalars = [(k, v) for k, v in d.items() if isinstance(v, (int, float, str, bool))] if isinstance(d, dict) else []
        out.append(f"`bench/results/{path.name}`\n")
        if scalars:
            out.append(table(["field", "value"], [(f"`{k}`", num(v, 4) if isinstance(v, float) else v) for k, v in scalars]))
        else:
            out.append("(no top-level numbers; see the file)\n")
    return "\n".join(out)


def render() -> str:
    used.clear()
    parts = [INTRO, bundled_model(), tess_recipe(), PROTOCOLS, SPEECH_RECIPE, speech_finetune(), speech_combine(),
             SPEECH_ONNX, fusion(), int8(), single_file(), ROBUST, channels(), ood(), speech_gate(), timelines(),
             conversations(), stream(), batch(), speed(), others()]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


if __name__ == "__main__":
    print(render())
else:
    import mkdocs_gen_files

    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write(render())
    mkdocs_gen_files.set_edit_path(PAGE, "gen_benchmarks.py")
