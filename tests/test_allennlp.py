"""End to end through AllenNLP's command line: train, evaluate, predict, calibrate, sweep."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SENTENCES, TEST, allennlp, predict_lines


@pytest.fixture(scope="module")
def trained(trained_run, monkeypatch_module) -> dict:
    """The shared trained run (see conftest), with room for what this module's tests add."""
    return dict(trained_run)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # AllenNLP finds the plugin subcommands through ./.allennlp_plugins
        yield patch


def test_training_reports_every_exits_accuracy_and_archives_the_backbone(trained):
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    for layer in (0, 1, 3, 5):
        assert 0.0 <= metrics[f"test_accuracy_layer_{layer}"] <= 1.0
        assert f"best_validation_accuracy_layer_{layer}" in metrics
    assert metrics["test_accuracy"] == metrics["test_accuracy_layer_5"]  # threshold 1: the deepest exit
    with tarfile.open(trained["archive"]) as tar:
        names = tar.getnames()
    assert {"backbone/config.json", "backbone/vocab.txt", "weights.th", "config.json"} <= set(names)


predict = predict_lines


@pytest.mark.parametrize("threshold,expected_layer", [(0.0, 0), (1.0, 5)])
def test_predict_takes_the_first_exit_at_threshold_0_and_the_last_at_1(trained, threshold, expected_layer):
    output = trained["work"] / f"predict-{threshold}.jsonl"
    rows = predict(trained["archive"], SENTENCES, output, "--batch-size", "5",
                   "-o", json.dumps({"model.confidence_threshold": threshold}))
    assert len(rows) == len(SENTENCES)
    for row in rows:
        assert set(row) == {"label", "probs", "exit_layer", "exit_index", "confidence", "truncated"}
        assert row["exit_layer"] == expected_layer
        assert row["exit_index"] == [0, 1, 3, 5].index(expected_layer)
        assert row["label"] in {"0", "1"}
        assert row["confidence"] == pytest.approx(max(row["probs"]))


def test_a_threshold_outside_0_1_is_a_clear_error(trained):
    with pytest.raises(ValueError, match=r"model.confidence_threshold must lie in \[0, 1\], got 1.5"):
        predict(trained["archive"], SENTENCES[:1], trained["work"] / "bad.jsonl",
                "-o", json.dumps({"model.confidence_threshold": 1.5}))


def test_evaluate_reports_exits_shares_and_time(trained):
    output = trained["work"] / "evaluate.json"
    allennlp("evaluate", str(trained["archive"]), str(TEST), "--include-package", "sledge",
             "--output-file", str(output), "-o", json.dumps({"model.confidence_threshold": 0.0}))
    metrics = json.loads(output.read_text())
    assert metrics["average_exit_layer"] == 0.0
    assert metrics["exit_share_layer_0"] == 1.0
    assert metrics["accuracy"] == metrics["accuracy_layer_0"]  # everyone left at the first exit
    assert metrics["seconds_per_instance"] > 0
    assert set(metrics) >= {f"accuracy_layer_{k}" for k in (0, 1, 3, 5)}


def test_calibrate_writes_a_new_archive_and_keeps_every_prediction(trained):
    calibrated = trained["work"] / "calibrated.tar.gz"
    allennlp("calibrate", str(trained["archive"]), str(TEST), "--output-file", str(calibrated))
    weights = {}
    for archive in (trained["archive"], calibrated):
        with tarfile.open(archive) as tar:
            weights[archive] = torch.load(tar.extractfile("weights.th"), map_location="cpu")
    temperatures = weights[calibrated]["core.temperatures"]
    assert torch.equal(weights[trained["archive"]]["core.temperatures"], torch.ones(4))
    assert not torch.equal(temperatures, torch.ones(4)) and (temperatures > 0).all()
    before = predict(trained["archive"], SENTENCES, trained["work"] / "before.jsonl")
    after = predict(calibrated, SENTENCES, trained["work"] / "after.jsonl")
    assert [row["label"] for row in before] == [row["label"] for row in after]
    trained["calibrated"] = calibrated


def test_sweep_writes_its_table_and_plot(trained):
    calibrated = trained.get("calibrated", trained["archive"])
    output = trained["work"] / "sweep"
    allennlp("sweep", str(calibrated), str(TEST), "--output-dir", str(output), "--repeats", "2",
             "--batch-size", "4", "--timing-instances", "6", "--baseline", f"standard={trained['archive']}")
    report = json.loads((output / "sweep.json").read_text())
    rows = report["rows"]
    curve = [row for row in rows if row["kind"] == "sledge"]
    assert [row["threshold"] for row in curve] == pytest.approx([0.0] + [0.55 + 0.05 * i for i in range(10)])
    layers = [row["average_exit_layer"] for row in curve]
    assert layers == sorted(layers) and layers[0] == 0.0 and layers[-1] == 5.0
    assert all(row["exit_agreement"] == 1.0 for row in curve)
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert curve[-1]["accuracy"] == pytest.approx(metrics["test_accuracy_layer_5"])
    assert curve[0]["accuracy"] == pytest.approx(metrics["test_accuracy_layer_0"])
    baseline = next(row for row in rows if row["kind"] == "baseline")
    assert baseline["relative_time"] == 1.0 and baseline["accuracy"] == curve[-1]["accuracy"]
    assert (output / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    header = (output / "sweep.csv").read_text().splitlines()[0]
    assert header.startswith("kind,name,policy,setting,value,threshold,accuracy,average_exit_layer")


def test_the_plugin_subcommands_are_found_from_the_command_line():
    result = subprocess.run([str(Path(sys.executable).parent / "allennlp"), "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "calibrate" in result.stdout and "sweep" in result.stdout


def test_difficulty_writes_tables_and_plots(trained):
    output = trained["work"] / "difficulty"
    allennlp("difficulty", str(trained["archive"]), str(TEST), "--output-dir", str(output))
    report = json.loads((output / "difficulty.json").read_text())
    assert report["instances"] == len(SENTENCES) and report["exit_layers"] == [0, 1, 3, 5]
    assert sorted(report["labels"]) == ["0", "1"]
    assert all(-1.0 <= rho <= 1.0 for rho in report["rho_length"] if rho == rho)
    # The last exit's per-label F1 against one computed from `allennlp predict` at threshold 1.
    rows = predict(trained["archive"], SENTENCES, trained["work"] / "f1.jsonl")
    gold = [line.split(" ", 1)[0] for line in TEST.read_text().splitlines()]
    for label, f1 in zip(report["labels"], report["f1"][-1]):
        tp = sum(p["label"] == label and g == label for p, g in zip(rows, gold))
        wrong = sum((p["label"] == label) != (g == label) for p, g in zip(rows, gold))
        assert f1 == pytest.approx(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    for name in ("difficulty.md", "high_confidence.png", "confidence_vs_f1.png"):
        assert (output / name).stat().st_size > 0
