"""Early exit: thresholds, batched against batch-1 inference, compaction; calibration and the oracle."""

import pytest
import torch
from transformers import BertConfig

from sledge.nn import (
    LayerwiseEncoder,
    MultiExitClassifier,
    check_threshold,
    early_exit,
    exits_at_threshold,
    expected_calibration_error,
    fit_temperature,
    oracle_exits,
)

LAYERS = [0, 1, 3, 5]


@pytest.fixture(scope="module", params=["cls", "mean"])
def model(request) -> MultiExitClassifier:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        num_hidden_layers=6)
    encoder = LayerwiseEncoder(config=config)
    model = MultiExitClassifier(encoder, LAYERS, num_labels=3, pooling=request.param).eval()
    for head in model.exits:  # spread the confidences so thresholds split the batch
        head.classifier.weight.data.mul_(8.0)
    model.temperatures.copy_(torch.tensor([1.0, 1.3, 0.8, 1.1]))
    return model


def mixed_batch(size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 20, (size,), generator=generator)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, 100, mask.shape, generator=generator) * mask
    types = torch.zeros_like(ids)
    return ids, mask, types


def all_confidences(model, ids, mask, types) -> torch.Tensor:
    """(N, exits) calibrated max probabilities from one full pass."""
    with torch.no_grad():
        logits = model(ids, mask, types)
    return torch.stack([torch.softmax(z / t, -1).max(-1)[0] for z, t in zip(logits, model.temperatures)], 1)


def test_threshold_0_takes_the_first_exit_and_1_the_last(model):
    ids, mask, types = mixed_batch()
    assert (early_exit(model, ids, mask, types, threshold=0.0).exit_index == 0).all()
    assert (early_exit(model, ids, mask, types, threshold=1.0).exit_index == len(LAYERS) - 1).all()


def test_batched_predictions_and_exits_equal_batch_1(model):
    ids, mask, types = mixed_batch(size=32)
    confidences = all_confidences(model, ids, mask, types)
    threshold = float(confidences[:, 0].median())  # about half leave at the first exit
    batched = early_exit(model, ids, mask, types, threshold=threshold)
    assert 0 < int((batched.exit_index == 0).sum()) < len(ids)
    assert len(set(batched.exit_index.tolist())) >= 3, "the batch should leave at several exits"
    near = (confidences - threshold).abs().min(dim=1)[0] < 1e-4
    for row in range(len(ids)):
        length = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :length], mask[row : row + 1, :length],
                         types[row : row + 1, :length], threshold=threshold)
        if near[row]:
            continue
        assert int(one.exit_index) == int(batched.exit_index[row])
        torch.testing.assert_close(one.probs[0], batched.probs[row], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(one.logits[0], batched.logits[row], atol=1e-5, rtol=1e-4)


def test_rows_that_left_are_not_computed_further(model):
    ids, mask, types = mixed_batch(size=32)
    threshold = float(all_confidences(model, ids, mask, types)[:, 0].median())
    shapes = []
    hooks = [layer.register_forward_hook(lambda _m, args, _o: shapes.append(tuple(args[0].shape[:2])))
             for layer in model.encoder.layer_modules()]
    try:
        result = early_exit(model, ids, mask, types, threshold=threshold)
    finally:
        for hook in hooks:
            hook.remove()
    still_running = [int((result.exit_index >= position).sum()) for position in range(len(LAYERS))]
    # Layer l runs on the rows that have not left at an exit before l.
    expected_rows = [still_running[sum(layer > k for k in LAYERS)] for layer in range(6)]
    assert [rows for rows, _ in shapes] == expected_rows
    # Padding that no running row needs is cut.
    for (_, width), layer in zip(shapes, range(6)):
        running = result.exit_index >= sum(layer > k for k in LAYERS)
        assert width == int(mask[running].sum(1).max())


def test_the_runner_agrees_with_exits_computed_from_all_confidences(model):
    ids, mask, types = mixed_batch(size=32, seed=1)
    confidences = all_confidences(model, ids, mask, types)
    for threshold in (0.0, 0.4, 0.6, 0.8, 0.95, 1.0):
        expected = exits_at_threshold(confidences, threshold)
        assert torch.equal(early_exit(model, ids, mask, types, threshold=threshold).exit_index, expected)


def test_the_average_exit_layer_never_decreases_as_the_threshold_rises(model):
    ids, mask, types = mixed_batch(size=64, seed=2)
    confidences = all_confidences(model, ids, mask, types)
    layers = torch.tensor(LAYERS, dtype=torch.float)
    # Thresholds spread over the observed confidences, plus the ends.
    quantiles = torch.quantile(confidences.flatten(), torch.linspace(0, 1, 41)).tolist()
    thresholds = sorted({0.0, 1.0, *quantiles})
    averages = [float(layers[exits_at_threshold(confidences, t)].mean()) for t in thresholds]
    assert averages == sorted(averages)
    assert averages[0] == 0.0 and averages[-1] == 5.0 and len(set(averages)) > 3


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


def test_calibration_recovers_a_known_temperature_and_keeps_every_argmax():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20000, 4, generator=generator)
    true_temperature = 2.5
    labels = torch.multinomial(torch.softmax(logits / true_temperature, -1), 1, generator=generator)[:, 0]
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    assert torch.equal((logits / fitted).argmax(-1), logits.argmax(-1))


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
