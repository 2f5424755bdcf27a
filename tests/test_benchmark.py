import json

import pytest

from emovox.training.benchmark import expand_cells, load_config
from emovox.cli import main
from emovox.errors import EmovoxError


def test_matrix_expansion_and_bad_settings(tmp_path):
    (tmp_path / "b.toml").write_text(
        '[defaults]\nepochs = 3\n[[cell]]\ncorpus = "x"\nprotocol = "random"\nfinetune = ["none", "last"]\nbackbone = ["vgg16", "efficientnet_lite0"]\n'
    )
    cells = expand_cells(load_config(tmp_path / "b.toml"))
    assert len(cells) == 4 and {c["epochs"] for c in cells} == {3}
    assert {(c["backbone"], c["finetune"]) for c in cells} == {("vgg16", "none"), ("vgg16", "last"), ("efficientnet_lite0", "none"), ("efficientnet_lite0", "last")}
    (tmp_path / "bad.toml").write_text('[[cell]]\ncorpus = "x"\nprotocol = "random"\nepochz = 3\n')
    with pytest.raises(EmovoxError, match="epochz"):
        expand_cells(load_config(tmp_path / "bad.toml"))
    with pytest.raises(EmovoxError, match="not found"):
        load_config(tmp_path / "none.toml")


def test_benchmark_cli_writes_report_and_reuses_cache(tone_corpus, cache_dir, tmp_path, capsys):
    cfg = tmp_path / "protocols.toml"
    cfg.write_text(f'''
[data]
folder = "{tone_corpus}"

[defaults]
epochs = 6
lr = 0.003
duration = 1.0
image_size = 96

[[cell]]
corpus = "folder"
protocol = "speaker-kfold"
folds = 4

[[cell]]
corpus = "folder"
protocol = "cross-speaker"
''')
    args = ["benchmark", "--config", str(cfg), "--out", str(tmp_path / "rep"), "--cache-dir", str(cache_dir), "--quiet"]
    assert main(args) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    rows = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert rows[0]["folds"] == 4 and rows[0]["n"] == 36  # every utterance tested once
    assert min(rows[0]["accuracy"]) > 0.6  # 3 classes: chance 33 %
    assert len(rows) == 1 + 4  # one row per cross-speaker direction
    assert "± " in report and "speaker-kfold" in report
    for r in rows:
        assert (tmp_path / "rep" / r["confusion_png"]).is_file()
    assert main(args) == 2  # refuses to overwrite
    assert "already holds a report" in capsys.readouterr().err
    embeddings = list((cache_dir / "vectors").rglob("*.npy"))
    assert len(embeddings) >= 36
    # a rerun (cached features, other state in the process) gives the same numbers: every head starts from the seed
    assert main([*args[:4], str(tmp_path / "rep2"), *args[5:]]) == 0
    again = json.loads((tmp_path / "rep2" / "results.json").read_text())
    assert [(r["accuracy"], r["nll_before"]) for r in again] == [(r["accuracy"], r["nll_before"]) for r in rows]
