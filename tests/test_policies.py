"""Exit policies on constructed outputs and on the one runner; LTE; regression."""

import math

import pytest
import torch
from scipy import stats

from conftest import (
    SWEEP_GRID,
    alone,
    assert_as_alone,
    mixed_batch,
    observed,
    rule_exits,
    statistic,
    tiny_multi_exit,
)
from sledge.errors import SledgeError
from sledge.models.correlation import Correlation
from sledge.nn import (
    ConfidencePolicy,
    EntropyPolicy,
    ExitView,
    LearnedPolicy,
    MultiExitClassifier,
    PatiencePolicy,
    early_exit,
    full_pass_views,
    lte_loss,
    lte_targets,
    simulate_exits,
)
from sledge.nn.exit_policies import normalised_entropy


def views_of(predictions: list[list[float]], regression: bool = False, num_labels: int = 3) -> list[ExitView]:
    """Views whose argmax (or score) at exit j is predictions[row][j]: one-hot-ish logits."""
    table = torch.tensor(predictions, dtype=torch.float)  # (rows, exits)
    views = []
    for j in range(table.size(1)):
        if regression:
            logits = table[:, j : j + 1]
        else:
            logits = torch.nn.functional.one_hot(table[:, j].long(), num_labels).float() * 4.0
        views.append(ExitView(j, logits, torch.tensor(1.0), None, regression))
    return views


# ---------------------------------------------------------------------------------------------------
# Each rule on constructed outputs


def test_confidence_uses_the_calibrated_distribution_unless_told_not_to():
    logits = torch.tensor([[2.0, 0.0], [0.5, 0.0]])
    view = ExitView(0, logits, torch.tensor(2.0), None, False)
    # Calibrated: softmax([1, 0]) = 0.7311, softmax([0.25, 0]) = 0.5622; raw: 0.8808, 0.6225.
    assert ConfidencePolicy(0.7).leaves(view, {}).tolist() == [True, False]
    assert ConfidencePolicy(0.75).leaves(view, {}).tolist() == [False, False]
    assert ConfidencePolicy(0.75, calibrated=False).leaves(view, {}).tolist() == [True, False]
    assert ConfidencePolicy(0.6, calibrated=False).leaves(view, {}).tolist() == [True, True]
    assert ConfidencePolicy(1.0).leaves(view, {}).tolist() == [False, False]
    assert ConfidencePolicy(0.0).leaves(view, {}).tolist() == [True, True]


def test_entropy_is_normalised_by_the_log_of_the_number_of_classes():
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [1.0, 0.0]])
    expected = [-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2), 1.0, 0.0]
    torch.testing.assert_close(normalised_entropy(probs), torch.tensor(expected))
    three = torch.tensor([[0.7, 0.2, 0.1]])
    by_hand = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)) / math.log(3)
    assert float(normalised_entropy(three)) == pytest.approx(by_hand)
    view = ExitView(0, torch.log(probs.clamp_min(1e-30)), torch.tensor(1.0), None, False)
    assert EntropyPolicy(0.47).leaves(view, {}).tolist() == [True, False, True]  # 0.4690 <= 0.47
    assert EntropyPolicy(0.46).leaves(view, {}).tolist() == [False, False, True]
    assert EntropyPolicy(1.0).leaves(view, {}).tolist() == [True, True, True]


def test_patience_counts_consecutive_agreements_per_row():
    predictions = [
        [1, 1, 1, 1],  # agrees all along
        [0, 1, 1, 0],  # disagrees at exit 1, agrees at 2, disagrees at 3
        [2, 2, 0, 0],
        [0, 1, 2, 0],  # never agrees
    ]
    views = views_of(predictions)
    assert simulate_exits(PatiencePolicy(0), views).tolist() == [0, 0, 0, 0]
    assert simulate_exits(PatiencePolicy(1), views).tolist() == [1, 2, 1, 3]
    assert simulate_exits(PatiencePolicy(2), views).tolist() == [2, 3, 3, 3]
    assert simulate_exits(PatiencePolicy(3), views).tolist() == [3, 3, 3, 3]
    state = PatiencePolicy(1).start(4, torch.device("cpu"))
    for view in views[:3]:
        PatiencePolicy(1).leaves(view, state)
    assert state["count"].tolist() == [2, 1, 0, 0]


def test_patience_on_scores_agrees_within_the_tolerance():
    views = views_of([[1.0, 1.05, 1.5, 1.52], [2.0, 2.5, 3.0, 3.5], [0.0, 0.1, 0.15, 0.1]], regression=True)
    assert simulate_exits(PatiencePolicy(1, tolerance=0.1), views).tolist() == [1, 3, 1]
    assert simulate_exits(PatiencePolicy(2, tolerance=0.1), views).tolist() == [3, 3, 2]
    assert simulate_exits(PatiencePolicy(1, tolerance=0.6), views).tolist() == [1, 1, 1]


def test_learned_leaves_at_the_first_certain_enough_exit():
    certainties = [torch.tensor([0.2, 0.9]), torch.tensor([0.7, 0.1]), torch.tensor([0.95, 0.1])]
    views = [ExitView(j, torch.zeros(2, 2), torch.tensor(1.0), c, False) for j, c in enumerate(certainties)]
    assert simulate_exits(LearnedPolicy(0.7), views).tolist() == [1, 0]
    assert simulate_exits(LearnedPolicy(0.96), views).tolist() == [2, 2]
    assert simulate_exits(LearnedPolicy(1.0), views).tolist() == [2, 2]


def test_lte_targets_and_loss_by_hand():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    labels = torch.tensor([0, 0, 1])
    assert lte_targets(logits, labels).tolist() == [1.0, 0.0, 0.0]
    scores, gold = torch.tensor([[2.0], [3.5]]), torch.tensor([3.0, 3.5])
    torch.testing.assert_close(lte_targets(scores, gold), torch.tensor([1 - math.tanh(1.0), 1.0]))
    certainties = [torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1.0, 0.0, 0.2])]
    second = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # wrong, right, right: targets 0, 1, 1
    by_hand = ((0.5 - 1) ** 2 + 0.5**2 + 0.5**2) / 3 + ((1.0 - 0) ** 2 + (0.0 - 1) ** 2 + (0.2 - 1) ** 2) / 3
    loss = lte_loss(certainties, [logits, second], torch.tensor([0, 0, 1]))
    assert float(loss) == pytest.approx(by_hand)
    # The targets are constants: the LTE loss trains the certainty, never the exit through its target.
    for outputs, targets in ((logits, labels), (scores, gold)):
        outputs = outputs.clone().requires_grad_(True)
        certainty = torch.full((len(targets),), 0.3, requires_grad=True)
        lte_loss([certainty], [outputs], targets).backward()
        assert outputs.grad is None and certainty.grad is not None


def test_the_regression_loss_is_the_sum_of_the_exits_squared_errors():
    all_logits = [torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [2.5]])]
    gold = torch.tensor([2.0, 2.0])
    by_hand = ((1 - 2) ** 2 + 0) / 2 + ((3 - 2) ** 2 + 0.5**2) / 2
    assert float(MultiExitClassifier.loss(all_logits, gold)) == pytest.approx(by_hand)


def test_the_correlation_metric_matches_scipy_over_batches():
    generator = torch.Generator().manual_seed(3)
    predictions, gold = torch.rand(50, generator=generator), torch.rand(50, generator=generator)
    metric = Correlation()
    for start in range(0, 50, 16):
        metric(predictions[start : start + 16], gold[start : start + 16])
    value = metric.get_metric(reset=True)
    assert value["pearson"] == pytest.approx(stats.pearsonr(predictions.numpy(), gold.numpy())[0])
    assert value["spearman"] == pytest.approx(stats.spearmanr(predictions.numpy(), gold.numpy())[0])
    assert metric.get_metric() == {"pearson": 0.0, "spearman": 0.0}


def test_policies_that_cannot_apply_say_why():
    with pytest.raises(SledgeError, match="'confidence' cannot apply to a regression model"):
        ConfidencePolicy(0.9).check(regression=True, has_lte=True)
    with pytest.raises(SledgeError, match="'entropy' cannot apply to a regression model"):
        EntropyPolicy(0.3).check(regression=True, has_lte=False)
    with pytest.raises(SledgeError, match="'learned' cannot apply: the model was trained without"):
        LearnedPolicy(0.5).check(regression=False, has_lte=False)
    with pytest.raises(SledgeError, match=r"exit_policy.threshold must be a number in \[0, 1\], got 2"):
        EntropyPolicy(2)
    with pytest.raises(SledgeError, match="exit_policy.patience must be an integer >= 0, got -1"):
        PatiencePolicy(-1)
    assert PatiencePolicy(2, tolerance=0.3).with_setting(1).__dict__ == {"patience": 1, "tolerance": 0.3}
    assert ConfidencePolicy(0.5, calibrated=False).with_setting(0.9).describe() == "confidence (uncalibrated)"
    # a sweep draws one curve per label: two tolerances of patience are two curves
    assert PatiencePolicy(2).describe() == "patience"
    assert PatiencePolicy(2, tolerance=0.25).with_setting(1).describe() == "patience (tolerance 0.25)"


# ---------------------------------------------------------------------------------------------------
# The runner: batched == batch 1 == simulated from one full pass == the rule, for every policy


ENTROPY_GRID = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0]  # the sweep's entropy thresholds


def settings_of(policy, logits, certainties, temperatures, alone_logits, alone_certainties) -> list[float]:
    """The sweep's grid of the policy, and values equal to observed statistics at the first exit (of rows
    whose statistic is the same to the last bit batched and alone: see `conftest.observed`)."""
    if isinstance(policy, PatiencePolicy):
        return [0, 1, 2, 3]
    grid = ENTROPY_GRID if isinstance(policy, EntropyPolicy) else SWEEP_GRID
    batched = statistic(policy, logits, temperatures, certainties)[0]
    single = statistic(policy, alone_logits, temperatures, alone_certainties)[0]
    return grid + observed(batched, (0.2, 0.5, 0.8), among=batched == single)


CASES = [
    ("classification", False, False, ConfidencePolicy()),
    ("classification", False, False, ConfidencePolicy(calibrated=False)),
    ("classification", False, False, EntropyPolicy()),
    ("classification", False, False, PatiencePolicy()),
    ("classification-lte", False, True, LearnedPolicy()),
    ("regression-lte", True, True, LearnedPolicy()),
    ("regression-lte", True, True, PatiencePolicy(1, tolerance=0.5)),
]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("kind,regression,lte,policy", CASES, ids=[f"{c[0]}-{c[3]!r}" for c in CASES])
def test_batched_exits_equal_batch_1_the_simulation_and_the_rule(kind, regression, lte, policy, pooling):
    model = tiny_multi_exit(regression=regression, lte=lte, pooling=pooling)
    ids, mask, types = mixed_batch()
    with torch.no_grad():
        logits, certainties = model.forward_all(ids, mask, types)
    logits = torch.stack(logits)
    certainties = None if certainties is None else torch.stack(certainties)
    alone_logits, alone_certainties = alone(model, ids, mask, types)
    views = full_pass_views(model, logits, certainties)
    temperatures = model.temperatures
    settings = settings_of(policy, logits, certainties, temperatures, alone_logits, alone_certainties)
    split = 0
    for value in settings:
        setting = policy.with_setting(value)
        batched = early_exit(model, ids, mask, types, policy=setting)
        expected = rule_exits(setting, logits, temperatures, certainties, regression)
        assert batched.exit_index.tolist() == expected, f"{setting!r}"
        assert torch.equal(simulate_exits(setting, views), batched.exit_index)
        # batch 1: each row's own exit by the rule, on its own numbers, and the batched runner's
        single = rule_exits(setting, alone_logits, temperatures, alone_certainties, regression)
        assert single == expected, f"{setting!r}"
        split += len(set(expected)) >= 2
        taken = batched.exit_index
        torch.testing.assert_close(batched.logits, logits[taken, torch.arange(len(ids))], atol=1e-5,
            rtol=1e-4)
        if lte:
            torch.testing.assert_close(batched.certainty, certainties[taken, torch.arange(len(ids))],
                                       atol=1e-5, rtol=1e-4)
        assert (batched.probs is None) == regression
    assert split >= len(settings) // 2, "too few settings split the rows between exits"
    # The runner at batch 1, at the settings equal to observed statistics (and patience 1)
    for value in settings[-3:]:
        setting = policy.with_setting(value)
        batched = early_exit(model, ids, mask, types, policy=setting)
        assert_as_alone(batched, model, ids, mask, types, policy=setting)


def test_a_policy_that_never_leaves_early_skips_the_earlier_exits():
    model = tiny_multi_exit()
    ids, mask, types = mixed_batch(size=8)
    called = []
    hooks = [head.classifier.register_forward_hook(lambda *_: called.append(1)) for head in model.exits]
    try:
        for policy in (ConfidencePolicy(1.0), PatiencePolicy(3)):
            called.clear()
            result = early_exit(model, ids, mask, types, policy=policy)
            assert (result.exit_index == 3).all() and len(called) == 1
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("policy", [ConfidencePolicy(), EntropyPolicy(), PatiencePolicy(1)], ids=repr)
def test_each_row_may_run_at_its_own_setting(policy):
    model = tiny_multi_exit()
    ids, mask, types = mixed_batch()
    with torch.no_grad():
        logits = torch.stack(model(ids, mask, types))
    if isinstance(policy, PatiencePolicy):
        grid = [0, 1, 2, 3]
    else:
        grid = ENTROPY_GRID if isinstance(policy, EntropyPolicy) else SWEEP_GRID
    settings = torch.tensor([grid[row % len(grid)] for row in range(len(ids))], dtype=torch.float)
    batched = early_exit(model, ids, mask, types, policy=policy, row_settings=settings)
    for row in range(len(ids)):
        own = policy.with_setting(settings[row].item())
        expected = rule_exits(own, logits[:, row : row + 1], model.temperatures)
        assert int(batched.exit_index[row]) == expected[0]
        n = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :n], mask[row : row + 1, :n], types[row : row + 1, :n],
                         policy=own)
        assert int(one.exit_index) == int(batched.exit_index[row])
    assert len(set(batched.exit_index.tolist())) >= 3
    never = torch.ones(len(ids)) if not isinstance(policy, PatiencePolicy) else torch.full((len(ids),), 3.0)
    if not isinstance(policy, EntropyPolicy):  # entropy 1 always leaves; its "never" is no setting
        assert (early_exit(model, ids, mask, types, policy=policy, row_settings=never).exit_index == 3).all()
