"""Self-distillation against a hand-worked example; every exit head type on the one runner."""

import math

import pytest
import torch

from conftest import alone, assert_as_alone, mixed_batch, observed, rule_exits, statistic, tiny_multi_exit
from sledge.nn import (
    EXIT_HEADS,
    ConfidencePolicy,
    LearnedPolicy,
    early_exit,
)
from sledge.training import DistilledStrategy


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_the_distillation_loss_by_hand():
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    gold = torch.tensor([1])
    t, w = 2.0, 0.5
    last = -math.log(softmax([0.0, 2.0])[1])  # the teacher's own cross-entropy: ln(1 + e^-2)
    student_gold = -math.log(softmax([1.0, 0.0])[1])  # ln(1 + e)
    p_teacher, p_student = softmax([0.0, 2.0 / t]), softmax([1.0 / t, 0.0])
    kl = sum(p * math.log(p / q) for p, q in zip(p_teacher, p_student))
    expected = last + w * student_gold + (1 - w) * t * t * kl
    assert expected == pytest.approx(1.298365, abs=1e-6)  # 0.126928 + 0.5 * 1.313262 + 0.5 * 4 * 0.257403
    strategy = DistilledStrategy(temperature=t, gold_weight=w)
    loss = strategy.loss([student, teacher], gold, [0, 5], training=True)
    assert loss.item() == pytest.approx(expected)
    # Teacher alone (FastBERT) and gold alone are the two ends of the mix.
    fastbert = DistilledStrategy(temperature=t, gold_weight=0.0).loss([student, teacher], gold, [0, 5], True)
    assert fastbert.item() == pytest.approx(last + t * t * kl)
    assert DistilledStrategy(gold_weight=1.0).loss(
        [student, teacher], gold, [0, 5], True
    ).item() == pytest.approx(last + student_gold)
    # Evaluation: the plain sum of the gold losses.
    assert DistilledStrategy().loss([student, teacher], gold, [0, 5], False).item() == pytest.approx(
        last + student_gold
    )


def test_no_gradient_of_the_students_reaches_the_teacher():
    student = torch.tensor([[1.0, 0.0], [0.3, -0.2]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0], [1.0, 0.5]], requires_grad=True)
    gold = torch.tensor([1, 0])
    DistilledStrategy(gold_weight=0.0).loss([student, teacher], gold, [0, 5], True).backward()
    own = teacher.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(own, gold).backward()
    torch.testing.assert_close(teacher.grad, own.grad)  # the teacher's gradient is its own loss's alone
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_regression_distils_the_last_exits_score_with_the_squared_error():
    student, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [2.5]])
    gold = torch.tensor([2.0, 2.0])
    last = ((3 - 2) ** 2 + 0.5**2) / 2
    gold_part = ((1 - 2) ** 2 + 0) / 2
    soft_part = ((1 - 3) ** 2 + (2 - 2.5) ** 2) / 2
    loss = DistilledStrategy(gold_weight=0.25).loss([student, teacher], gold, [0, 5], True)
    assert loss.item() == pytest.approx(last + 0.25 * gold_part + 0.75 * soft_part)


def test_bad_distillation_settings_are_named():
    with pytest.raises(ValueError, match="training_strategy.temperature must be > 0"):
        DistilledStrategy(temperature=0)
    with pytest.raises(ValueError, match=r"training_strategy.gold_weight must lie in \[0, 1\]"):
        DistilledStrategy(gold_weight=1.5)


@pytest.mark.parametrize("head", sorted(EXIT_HEADS))
def test_each_head_type_gives_the_same_exits_batched_and_at_batch_1(head):
    model = tiny_multi_exit(head=head, lte=True)
    ids, mask, types = mixed_batch(seed=4)
    with torch.no_grad():
        logits, certainties = (torch.stack(values) for values in model.forward_all(ids, mask, types))
    alone_logits, alone_certainties = alone(model, ids, mask, types)
    rows = torch.arange(len(ids))
    for policy in (ConfidencePolicy(), LearnedPolicy()):
        batched_statistic = statistic(policy, logits, model.temperatures, certainties)[0]
        single_statistic = statistic(policy, alone_logits, model.temperatures, alone_certainties)[0]
        values = [0.6, 0.7, 0.8, *observed(batched_statistic, among=batched_statistic == single_statistic)]
        for value in values:
            setting = policy.with_setting(value)
            batched = early_exit(model, ids, mask, types, policy=setting)
            expected = rule_exits(setting, logits, model.temperatures, certainties)
            assert batched.exit_index.tolist() == expected, f"{setting!r}"
            assert rule_exits(setting, alone_logits, model.temperatures, alone_certainties) == expected
            assert len(set(expected)) >= 2, f"{setting!r} sends every row to one exit"
            torch.testing.assert_close(batched.logits, logits[batched.exit_index, rows], atol=1e-5, rtol=1e-4)
            assert_as_alone(batched, model, ids, mask, types, policy=setting)


def test_the_attention_head_reads_only_real_tokens():
    model = tiny_multi_exit(head="attention")
    ids = torch.randint(5, 100, (1, 6))
    mask = torch.ones_like(ids)
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        for a, b in zip(model(ids, mask), model(padded_ids, padded_mask)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
