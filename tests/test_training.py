"""Training strategies: each loss against one worked out independently, and through the Model."""

import math

import pytest
import torch
from allennlp.common import Params
from allennlp.data import Vocabulary
from allennlp.models import Model

import sledge  # noqa: F401  (registers the components)
from sledge.training import (
    AlternatingStrategy,
    DetachedStrategy,
    JointStrategy,
    TrainingStrategy,
    WeightedStrategy,
)

LAYERS = [0, 1, 5]
# Three exits, two instances, two classes: every cross-entropy is worked out by hand below.
LOGITS = [torch.tensor([[0.0, 0.0], [0.0, 0.0]]),  # ln 2 for each instance
          torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]),  # -ln(3/4) and ln 2
          torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])]  # -ln(1/5) and ln 2
LABELS = torch.tensor([0, 1])
CE = [math.log(2), (-math.log(0.75) + math.log(2)) / 2, (math.log(5) + math.log(2)) / 2]


def test_joint_is_the_sum_of_the_exits_cross_entropies():
    assert JointStrategy().loss(LOGITS, LABELS, LAYERS, training=True).item() == pytest.approx(sum(CE))


def test_weighted_weighs_each_exit_by_its_1_based_layer_number():
    expected = (1 * CE[0] + 2 * CE[1] + 6 * CE[2]) / 9
    assert WeightedStrategy().loss(LOGITS, LABELS, LAYERS, training=True).item() == pytest.approx(expected)
    given = WeightedStrategy([1.0, 1.0, 2.0]).loss(LOGITS, LABELS, LAYERS, training=True).item()
    assert given == pytest.approx((CE[0] + CE[1] + 2 * CE[2]) / 4)
    assert WeightedStrategy().loss(LOGITS, LABELS, LAYERS, training=False).item() == pytest.approx(sum(CE))


def test_weighted_rejects_bad_weights_by_name():
    with pytest.raises(ValueError, match="training_strategy.weights must be positive"):
        WeightedStrategy([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 entries for 3 exits"):
        WeightedStrategy([1.0, 2.0]).loss(LOGITS, LABELS, LAYERS, training=True)


def test_alternating_trains_the_last_exit_alone_on_odd_steps_and_all_exits_on_even_steps():
    strategy = AlternatingStrategy()
    losses = [strategy.loss(LOGITS, LABELS, LAYERS, training=True).item() for _ in range(4)]
    assert losses == pytest.approx([CE[2], sum(CE), CE[2], sum(CE)])
    # Evaluation neither counts as a step nor alternates.
    assert strategy.loss(LOGITS, LABELS, LAYERS, training=False).item() == pytest.approx(sum(CE))
    assert strategy.loss(LOGITS, LABELS, LAYERS, training=True).item() == pytest.approx(CE[2])


def test_the_model_builds_its_strategy_from_params_and_joint_is_the_default(tiny_bert):
    vocab = Vocabulary(tokens_to_add={"labels": ["a", "b"]})
    base = {"type": "sledge", "transformer_model": tiny_bert, "layer_indices": [0, 1, 3]}
    default = Model.from_params(vocab=vocab, params=Params(dict(base)))
    assert isinstance(default.training_strategy, JointStrategy)
    params = Params({**base, "training_strategy": {"type": "alternating"}})
    chosen = Model.from_params(vocab=vocab, params=params)
    assert isinstance(chosen.training_strategy, AlternatingStrategy)
    assert set(TrainingStrategy.list_available()) >= {"joint", "weighted", "alternating", "detached"}


def test_an_alternating_first_step_leaves_the_early_exits_without_gradient(tiny_bert):
    vocab = Vocabulary(tokens_to_add={"labels": ["a", "b"]})
    model = Model.from_params(vocab=vocab, params=Params({
        "type": "sledge", "transformer_model": tiny_bert, "layer_indices": [0, 1, 3],
        "training_strategy": {"type": "alternating"}}))
    model.train()
    ids = torch.randint(5, 90, (4, 7))
    batch = {"tokens": {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)},
             "label": torch.tensor([0, 1, 1, 0])}
    model(**batch)["loss"].backward()
    heads = model.core.exits
    assert heads[0].classifier.weight.grad is None and heads[1].classifier.weight.grad is None
    assert heads[2].classifier.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model(**batch)["loss"].backward()  # the second step trains every exit
    assert all(head.classifier.weight.grad.abs().sum() > 0 for head in heads)


def test_detached_sums_every_exit_and_cuts_their_gradient_into_the_encoder_by_default():
    assert DetachedStrategy().loss(LOGITS, LABELS, LAYERS, training=True).item() == pytest.approx(sum(CE))
    assert DetachedStrategy().early_exit_gradient == 0.0
    assert DetachedStrategy(0.25).early_exit_gradient == 0.25
    assert JointStrategy().early_exit_gradient == 1.0
    with pytest.raises(ValueError, match="backbone_gradient must lie in \\[0, 1\\], got 2"):
        DetachedStrategy(2.0)


def test_a_detached_model_trains_its_encoder_from_the_last_exit_alone(tiny_bert):
    vocab = Vocabulary(tokens_to_add={"labels": ["a", "b"]})
    model = Model.from_params(vocab=vocab, params=Params({
        "type": "sledge", "transformer_model": tiny_bert, "layer_indices": [0, 1, 3], "dropout": 0.0,
        "training_strategy": {"type": "detached"}}))
    model.train()
    ids = torch.randint(5, 90, (4, 7))
    tokens = {"tokens": {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}}
    labels = torch.tensor([0, 1, 1, 0])
    torch.manual_seed(1)  # the same dropout masks in both passes
    model(**tokens, label=labels)["loss"].backward()
    got = {name: p.grad.clone() for name, p in model.core.encoder.named_parameters() if p.grad is not None}
    # the early exits are trained (their heads get gradients from their own losses) ...
    assert all(head.classifier.weight.grad.abs().sum() > 0 for head in model.core.exits[:-1])
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    last_logits = model.core(ids, tokens["tokens"]["attention_mask"])[-1]
    torch.nn.functional.cross_entropy(last_logits, labels).backward()
    alone = {name: p.grad for name, p in model.core.encoder.named_parameters() if p.grad is not None}
    # ... but the encoder's gradient is the last exit's alone: the same parameters, the same values
    assert got.keys() == alone.keys() and any(grad.abs().sum() > 0 for grad in alone.values())
    for name, grad in alone.items():
        torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-4)


def test_sledge_adamw_gives_the_earlier_exits_their_own_rate_and_leaves_a_single_exit_alone(tiny_bert):
    from allennlp.training.optimizers import Optimizer

    vocab = Vocabulary(tokens_to_add={"labels": ["a", "b"]})

    def groups(layers: list[int]) -> list[tuple[float, set[str]]]:
        model = Model.from_params(vocab=vocab, params=Params(
            {"type": "sledge", "transformer_model": tiny_bert, "layer_indices": layers}))
        names = {id(p): name for name, p in model.named_parameters()}
        optimizer = Optimizer.from_params(model_parameters=list(model.named_parameters()), params=Params(
            {"type": "sledge_adamw", "lr": 5e-5, "early_exit_lr": 1e-3, "weight_decay": 0.01}))
        return [(group["lr"], {names[id(p)] for p in group["params"]}) for group in optimizer.param_groups]

    (early_lr, early), (lr, rest) = groups([0, 1, 3])
    assert (early_lr, lr) == (1e-3, 5e-5)
    assert early == {f"core.exits.{i}.{part}" for i in (0, 1)
                     for part in ("mix.weights", "mix.gamma", "classifier.weight", "classifier.bias")}
    assert "core.exits.2.classifier.weight" in rest
    assert [lr for lr, _ in groups([3])] == [5e-5]  # a single exit is the last: the encoder's rate
