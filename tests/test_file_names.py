"""File names that are not valid UTF-8 (old archives copied between systems): read, reported and written back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone

#: a Latin-1 name (é) and a byte no encoding gives a character (0xff)
RAW = b"caf\xe9 \xff.wav"


@pytest.fixture()
def odd(tmp_path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    try:
        fd = os.open(os.path.join(os.fsencode(folder), RAW), os.O_WRONLY | os.O_CREAT)
    except OSError:
        pytest.skip("this filesystem refuses non-UTF-8 names")
    os.close(fd)
    name = folder / os.fsdecode(RAW)
    sf.write(os.fsencode(name), tone(220, 4.0, seconds=1.5), 16000)
    return name


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "emovox", *args], capture_output=True, env=env, timeout=600)


def test_cli_reads_and_reports_the_name_as_it_is(odd, tmp_path):
    from helpers_models import random_model

    model = str(random_model(tmp_path))
    table = run("predict", "--model", model, "--ood-gate", "off", str(odd.parent))
    assert table.returncode == 0, table.stderr.decode(errors="replace")
    assert RAW in table.stdout  # the same bytes back
    rows = run("predict", "--model", model, "--format", "csv", str(odd))
    assert rows.returncode == 0 and RAW in rows.stdout
    js = run("predict", "--model", model, "--format", "json", str(odd))
    assert js.returncode == 0
    record = json.loads(js.stdout.decode("ascii").strip().splitlines()[-1])  # JSON escapes it: ASCII only
    assert os.fsencode(record["source"]).endswith(RAW) and record["label"]


def test_batch_rows_name_it_and_a_rerun_skips_it(odd, tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.dataset as ds
    from helpers_models import random_model

    model, out = str(random_model(tmp_path)), str(tmp_path / "out")
    first = run("batch", "--model", model, str(odd.parent), "--out", out)
    assert first.returncode == 0, first.stderr.decode(errors="replace")
    rows = ds.dataset(out, format="parquet").to_table(columns=["path", "label", "error"]).to_pylist()
    assert len(rows) == 1 and rows[0]["error"] is None and rows[0]["path"].endswith("caf\\xe9 \\xff.wav")
    again = run("batch", "--model", model, str(odd.parent), "--out", out)
    assert again.returncode == 0 and b"1 already in" in again.stderr + again.stdout


def test_api_reads_it(odd, tmp_path):
    from helpers_models import random_model

    from emovox.inference import EmotionRecognizer

    rec = EmotionRecognizer.load(random_model(tmp_path), ood_gate=False)
    pred = rec.predict(odd)
    assert pred.source == str(odd) and np.isclose(sum(pred.probabilities.values()), 1.0, atol=1e-5)
    tl = rec.timeline(odd, vad="energy")
    assert tl.source.endswith(os.fsdecode(RAW))
