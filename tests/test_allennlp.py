"""End to end through AllenNLP's command line: train, evaluate, predict, calibrate, sweep."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from scipy import stats

from conftest import (
    GOLD,
    ROOT,
    SENTENCES,
    SWEEP_GRID,
    TEST,
    allennlp,
    archive_pass,
    predict_lines,
    rule_exits,
)
from sledge.nn import ConfidencePolicy


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
    full = archive_pass(trained["archive"])
    for position, layer in enumerate((0, 1, 3, 5)):  # each exit's own accuracy, from its argmax
        right = (full["logits"][position].argmax(-1) == full["labels"]).double().mean()
        assert metrics[f"test_accuracy_layer_{layer}"] == pytest.approx(float(right))
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


@pytest.mark.parametrize("threshold", [0.0, 0.8])
def test_evaluate_reports_exits_shares_and_time(trained, threshold):
    output = trained["work"] / f"evaluate-{threshold}.json"
    override = json.dumps({"model.confidence_threshold": threshold})
    allennlp("evaluate", str(trained["archive"]), str(TEST), "--include-package", "sledge",
             "--output-file", str(output), "-o", override)
    metrics = json.loads(output.read_text())
    # the same numbers computed from `allennlp predict` at that threshold, and the gold labels
    rows = predict(trained["archive"], SENTENCES, trained["work"] / f"evaluated-{threshold}.jsonl", "-o",
        override)
    layers = [row["exit_layer"] for row in rows]
    assert metrics["average_exit_layer"] == pytest.approx(sum(layers) / len(layers))
    for layer in (0, 1, 3, 5):
        assert metrics[f"exit_share_layer_{layer}"] == pytest.approx(layers.count(layer) / len(layers))
    assert metrics["accuracy"] == pytest.approx(sum(r["label"] == g for r, g in zip(rows, GOLD)) / len(GOLD))
    if threshold == 0.0:
        assert metrics["accuracy"] == metrics["accuracy_layer_0"]  # everyone left at the first exit
    else:
        assert len(set(layers)) >= 2
    assert metrics["seconds_per_instance"] > 0
    assert set(metrics) >= {f"accuracy_layer_{k}" for k in (0, 1, 3, 5)}


def test_sweep_writes_its_table_and_plot(trained):
    output = trained["work"] / "sweep"
    allennlp("sweep", str(trained["archive"]), str(TEST), "--output-dir", str(output), "--repeats", "2",
             "--batch-size", "4", "--timing-instances", "6", "--baseline", f"standard={trained['archive']}")
    report = json.loads((output / "sweep.json").read_text())
    rows = report["rows"]
    curve = [row for row in rows if row["kind"] == "sledge"]
    assert [row["threshold"] for row in curve] == pytest.approx(SWEEP_GRID)
    layers = [row["average_exit_layer"] for row in curve]
    assert layers == sorted(layers) and layers[0] == 0.0 and layers[-1] == 5.0
    assert all(row["exit_agreement"] == 1.0 for row in curve)
    # Each setting's accuracy, average exit layer and shares, from the full pass and the rule
    full = archive_pass(trained["archive"])
    for row in curve:
        exits = rule_exits(ConfidencePolicy(row["threshold"]), full["logits"], full["temperatures"])
        taken = torch.tensor(exits)
        predicted = full["logits"][taken, torch.arange(len(exits))].argmax(-1)
        assert row["accuracy"] == pytest.approx(float((predicted == full["labels"]).double().mean()))
        assert row["average_exit_layer"] == pytest.approx(sum(full["layers"][j] for j in exits) / len(exits))
        assert row["exit_shares"] == pytest.approx({str(layer): exits.count(j) / len(exits)
                                                    for j, layer in enumerate(full["layers"])})
    assert len({row["average_exit_layer"] for row in curve}) >= 4
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
    # Spearman's rho of each exit's confidence against length and against consistency, with scipy
    full = archive_pass(trained["archive"])
    confidence = torch.softmax(full["logits"], -1).max(-1)[0].numpy()
    predictions = full["logits"].argmax(-1)
    consistent = (predictions == predictions[0]).all(dim=0).numpy()
    assert report["consistent_share"] == pytest.approx(float(consistent.mean()))
    for j in range(4):
        assert report["rho_length"][j] == pytest.approx(stats.spearmanr(confidence[j], full["lengths"])[0])
        assert report["rho_consistency"][j] == pytest.approx(stats.spearmanr(confidence[j], consistent)[0])
    # The last exit's per-label F1 against one computed from `allennlp predict` at threshold 1.
    rows = predict(trained["archive"], SENTENCES, trained["work"] / "f1.jsonl")
    gold = [line.split(" ", 1)[0] for line in TEST.read_text().splitlines()]
    for label, f1 in zip(report["labels"], report["f1"][-1]):
        tp = sum(p["label"] == label and g == label for p, g in zip(rows, gold))
        wrong = sum((p["label"] == label) != (g == label) for p, g in zip(rows, gold))
        assert f1 == pytest.approx(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    for name in ("difficulty.md", "high_confidence.png", "confidence_vs_f1.png"):
        assert (output / name).stat().st_size > 0
