"""Early exit: thresholds, batched against batch-1 inference, compaction; ECE and the oracle."""

import pytest
import torch

from conftest import SWEEP_GRID, alone, assert_as_alone, mixed_batch, observed, tiny_multi_exit
from sledge.nn import (
    MultiExitClassifier,
    check_threshold,
    early_exit,
    exits_at_threshold,
    expected_calibration_error,
    oracle_exits,
)

LAYERS = [0, 1, 3, 5]


@pytest.fixture(scope="module", params=["cls", "mean"])
def model(request) -> MultiExitClassifier:
    return tiny_multi_exit(pooling=request.param)


def all_confidences(model, ids, mask, types) -> torch.Tensor:
    """(N, exits) calibrated max probabilities from one full pass."""
    with torch.no_grad():
        logits = model(ids, mask, types)
    return torch.stack([torch.softmax(z / t, -1).max(-1)[0] for z, t in zip(logits, model.temperatures)], 1)


def first_confident(confidences: torch.Tensor, threshold: float) -> list[int]:
    """The README's rule, written here without sledge's code: the first exit whose confidence is >= the
    threshold; never before the last at threshold 1; else the last."""
    exits = []
    for row in confidences.tolist():
        leave = [j for j, value in enumerate(row[:-1]) if value >= threshold and threshold < 1.0]
        exits.append(leave[0] if leave else len(row) - 1)
    return exits


def thresholds_of(model, ids, mask, types) -> list[float]:
    """The sweep's grid, and values equal to observed first-exit confidences (of rows whose confidence
    is the same to the last bit batched and alone: see `conftest.observed`)."""
    batched = all_confidences(model, ids, mask, types)[:, 0]
    logits = alone(model, ids, mask, types)[0][0]
    single = torch.softmax(logits / model.temperatures[0], -1).max(-1)[0]
    return SWEEP_GRID + observed(batched, (0.1, 0.3, 0.5, 0.7, 0.9), among=batched == single)


def test_threshold_0_takes_the_first_exit_and_1_the_last(model):
    ids, mask, types = mixed_batch()
    assert (early_exit(model, ids, mask, types, threshold=0.0).exit_index == 0).all()
    assert (early_exit(model, ids, mask, types, threshold=1.0).exit_index == len(LAYERS) - 1).all()


def test_batched_predictions_and_exits_equal_batch_1_and_the_rule(model):
    ids, mask, types = mixed_batch(size=32)
    with torch.no_grad():
        full = model(ids, mask, types)
    confidences = all_confidences(model, ids, mask, types)
    split = 0
    for threshold in thresholds_of(model, ids, mask, types):
        batched = early_exit(model, ids, mask, types, threshold=threshold)
        assert batched.exit_index.tolist() == first_confident(confidences, threshold), threshold
        split += len(set(batched.exit_index.tolist())) >= 2
        assert_as_alone(batched, model, ids, mask, types, threshold=threshold)
        # the outputs are the exit's own: its logits from the full pass, softmax(logits / its temperature)
        taken = batched.exit_index
        expected = torch.stack([full[int(j)][row] for row, j in enumerate(taken)])
        torch.testing.assert_close(batched.logits, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched.probs, torch.softmax(expected / model.temperatures[taken,
            None], -1),
                                   atol=1e-6, rtol=1e-5)
    assert split >= len(SWEEP_GRID) - 2  # every threshold but 0 and 1 (and maybe one more) splits the rows


def test_rows_that_left_are_not_computed_further(model):
    ids, mask, types = mixed_batch(size=32)
    confidences = all_confidences(model, ids, mask, types)
    # The median confidence at the first exit, and the least among the longest rows (they all leave
    # there, so the rest of the batch runs with its padding cut).
    longest = mask.sum(1) == mask.sum(1).max()
    cut = False
    for threshold in (float(confidences[:, 0].median()), float(confidences[longest, 0].min())):
        shapes = []

        def record(_module, args, _output, shapes=shapes):
            shapes.append(tuple(args[0].shape[:2]))

        hooks = [layer.register_forward_hook(record) for layer in model.encoder.layer_modules()]
        try:
            result = early_exit(model, ids, mask, types, threshold=threshold)
        finally:
            for hook in hooks:
                hook.remove()
        still_running = [int((result.exit_index >= position).sum()) for position in range(len(LAYERS))]
        assert still_running[0] > still_running[1] > 0  # some rows leave at the first exit, some go on
        # Layer l runs on the rows that have not left at an exit before l (none once every row has left).
        expected_rows = [still_running[sum(layer > k for k in LAYERS)] for layer in range(6)]
        assert [rows for rows, _ in shapes] == [rows for rows in expected_rows if rows]
        # Padding that no running row needs is cut.
        for (_, width), layer in zip(shapes, range(6)):
            running = result.exit_index >= sum(layer > k for k in LAYERS)
            assert width == int(mask[running].sum(1).max())
        cut |= any(width < ids.size(1) for _, width in shapes)
    assert cut, "the padding was never cut"


def test_the_runner_agrees_with_exits_computed_from_all_confidences(model):
    ids, mask, types = mixed_batch(size=32, seed=1)
    confidences = all_confidences(model, ids, mask, types)
    compacted = 0
    for threshold in thresholds_of(model, ids, mask, types):
        expected = exits_at_threshold(confidences, threshold)
        assert expected.tolist() == first_confident(confidences, threshold)
        got = early_exit(model, ids, mask, types, threshold=threshold).exit_index
        assert torch.equal(got, expected)
        compacted += 0 < int((got == 0).sum()) < len(ids)  # some rows left at the first exit, some went on
    assert compacted >= len(SWEEP_GRID) - 3


def test_the_average_exit_layer_never_decreases_as_the_threshold_rises(model):
    ids, mask, types = mixed_batch(size=64, seed=2)
    confidences = all_confidences(model, ids, mask, types)
    layers = torch.tensor(LAYERS, dtype=torch.float)
    # Thresholds at the observed confidences, plus the ends.
    quantiles = torch.quantile(confidences.flatten(), torch.linspace(0, 1, 41)).tolist()
    thresholds = sorted({0.0, 1.0, *quantiles})
    averages = [float(layers[exits_at_threshold(confidences, t)].mean()) for t in thresholds]
    assert averages == sorted(averages)
    assert averages[0] == 0.0 and averages[-1] == 5.0 and len(set(averages)) > 10


def test_exits_at_threshold_on_a_constructed_case():
    confidences = torch.tensor([[0.9, 0.95, 0.99], [0.5, 0.8, 0.7], [0.6, 0.6, 0.6]])
    assert exits_at_threshold(confidences, 0.85).tolist() == [0, 2, 2]
    assert exits_at_threshold(confidences, 0.8).tolist() == [0, 1, 2]
    assert exits_at_threshold(confidences, 0.6).tolist() == [0, 1, 0]


def test_a_threshold_outside_0_1_is_rejected(model):
    with pytest.raises(ValueError, match=r"confidence_threshold must lie in \[0, 1\], got 1.5"):
        check_threshold(1.5)
    ids, mask, types = mixed_batch(size=2)
    with pytest.raises(ValueError, match="got -0.1"):
        early_exit(model, ids, mask, types, threshold=-0.1)


def test_expected_calibration_error_on_a_constructed_case():
    # Bin (0.6, 0.667]: two instances at 0.65, one right: |0.5 - 0.65| = 0.15, weight 1/2.
    # Bin (0.933, 1]: two instances at 0.95, both right: |1 - 0.95| = 0.05, weight 1/2.
    probs = torch.tensor([[0.65, 0.35], [0.35, 0.65], [0.95, 0.05], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels, num_bins=15) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def test_the_oracle_takes_the_first_correct_exit_else_the_first():
    correct = torch.tensor(
        [[True, True, True], [False, True, True], [False, False, True], [False, False, False]]
    )
    assert oracle_exits(correct).tolist() == [0, 1, 2, 0]
