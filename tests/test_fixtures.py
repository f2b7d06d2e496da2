"""The shared fixtures are non-degenerate: the tests built on them could fail (see conftest's docstring)."""

import json

import pytest
import torch

from conftest import (
    GOLD,
    SENTENCES,
    SWEEP_GRID,
    TEST,
    TRAIN,
    mixed_batch,
    predict_lines,
    tiny_config,
    tiny_multi_exit,
)
from sledge.nn import early_exit

FAMILIES = ["bert", "roberta", "albert", "distilbert", "mpnet"]


@pytest.mark.parametrize("head", ["linear", "mlp", "attention"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_tiny_models_exits_disagree_and_every_sweep_threshold_splits_a_batch(family, head):
    config = tiny_config(family)
    model = tiny_multi_exit(config=config, head=head, lte=True)
    ids, mask, types = mixed_batch(32, seed=1, config=config)  # other rows than spread_exits set it on
    with torch.no_grad():
        logits, certainties = model.forward_all(ids, mask, types)
    predictions = [exit_logits.argmax(dim=-1) for exit_logits in logits]
    confidence = torch.stack([torch.softmax(z / t, -1).max(-1)[0] for z, t in zip(logits,
        model.temperatures)])
    for j, exit_predictions in enumerate(predictions):
        assert set(exit_predictions.tolist()) == {0, 1, 2}, f"exit {j} predicts only some classes"
    assert (confidence.min(dim=1)[0] < 0.6).all() and (confidence.max(dim=1)[0] > 0.8).all()
    medians = confidence.median(dim=1)[0]
    assert medians[0] < medians[-1]  # deeper exits are surer
    for j in range(len(predictions) - 1):
        agree = float((predictions[j] == predictions[j + 1]).float().mean())
        assert 0.0 < agree < 1.0, f"exits {j} and {j + 1} agree on {agree:.0%} of the rows"
    for threshold in SWEEP_GRID[1:-1]:  # 0.55 .. 0.95: rows leave at two exits or more
        exits = early_exit(model, ids, mask, types, threshold=threshold).exit_index
        assert len(set(exits.tolist())) >= 2, f"threshold {threshold} sends every row to one exit"
    certainty = torch.stack(certainties)
    assert float(certainty.min()) < 0.3 and float(certainty.max()) > 0.7


def test_the_tiny_regression_model_scores_vary_and_its_exits_disagree():
    model = tiny_multi_exit(regression=True, lte=True)
    ids, mask, types = mixed_batch(32, seed=1)
    with torch.no_grad():
        scores = torch.stack(model(ids, mask, types))[..., 0]  # (exits, rows)
    assert (scores.std(dim=1) > 0.5).all()
    steps = (scores[1:] - scores[:-1]).abs()
    assert float((steps <= 0.5).float().mean()) > 0.1 and float((steps > 0.5).float().mean()) > 0.1


def test_the_sentiment_fixture_is_balanced_and_mixes_easy_and_hard_sentences():
    for path in (TRAIN, TEST):
        lines = path.read_text().splitlines()
        labels = [line.split(" ", 1)[0] for line in lines]
        assert 0.4 < labels.count("1") / len(labels) < 0.6
        assert any(" not " in line for line in lines) and any(" but " in line for line in lines)
    assert len(SENTENCES) == 32


def test_the_shared_trained_model_is_not_constant(trained_run, tmp_path):
    """Its exits predict both labels, their confidences spread, and the first exit sometimes disagrees
    with the last, so that thresholds of the sweep's grid and patience split the test sentences."""
    first = predict_lines(trained_run["archive"], SENTENCES, tmp_path / "first.jsonl",
                          "-o", '{"model.confidence_threshold": 0}')
    last = predict_lines(trained_run["archive"], SENTENCES, tmp_path / "last.jsonl")
    for rows in (first, last):
        assert {row["label"] for row in rows} == {"0", "1"}
    assert any(a["label"] != b["label"] for a, b in zip(first, last))
    confidence = sorted(row["confidence"] for row in first)
    assert confidence[0] < 0.65 and confidence[-1] > 0.8
    split = [t for t in SWEEP_GRID if 0 < sum(c >= t for c in confidence) < len(confidence)]
    assert len(split) >= 4, f"only thresholds {split} split the sentences at the first exit"
    metrics = json.loads((trained_run["run"] / "metrics.json").read_text())
    assert metrics["training_accuracy"] > 0.75  # it learned the opinion words
    accuracy = sum(row["label"] == gold for row, gold in zip(last, GOLD)) / len(GOLD)
    assert accuracy == pytest.approx(metrics["test_accuracy"])
