"""Layer-level continuous batching: whatever the arrival order and timing, every row equals batch 1."""

import random

import pytest
import torch
from transformers import BertConfig

from conftest import rule_exits, tiny_multi_exit
from sledge.nn import (
    ConfidencePolicy,
    EntropyPolicy,
    LayerBatcher,
    LayerwiseEncoder,
    LearnedPolicy,
    MultiExitClassifier,
    PatiencePolicy,
    early_exit,
)


def requests(count: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 20, (count,), generator=generator).tolist()
    return [torch.randint(5, 100, (length,), generator=generator) for length in lengths]


def padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


# A policy, the settings some requests bring instead of its own, and the exit head type.
CASES = [
    (ConfidencePolicy(0.7), [0.55, 0.9, 1.0], "linear"),
    (EntropyPolicy(0.5), [0.0, 0.3, 1.0], "linear"),
    (PatiencePolicy(1), [0, 2, 3], "linear"),
    (LearnedPolicy(0.5), [0.3, 0.8, 1.0], "linear"),
    (ConfidencePolicy(0.7), [0.55, 0.9, 1.0], "attention"),
]


@pytest.mark.parametrize("policy,choices,head", CASES, ids=[f"{c[0]!r}-{c[2]}" for c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_rows_leave_as_at_batch_1_whatever_the_arrivals(policy, choices, head, seed):
    model = tiny_multi_exit(head=head, lte=True)
    rng = random.Random(seed)
    inputs = requests(40, seed)
    settings = [None if rng.random() < 0.5 else rng.choice(choices) for _ in inputs]
    batcher = LayerBatcher(model, policy, max_rows=rng.choice([4, 8, 32]))
    results, next_row, sizes = {}, 0, []
    while next_row < len(inputs) or len(batcher):
        if next_row < len(inputs) and (not len(batcher) or rng.random() < 0.4):
            count = rng.randint(1, 5)  # a request of several rows arrives
            chunk = list(range(next_row, min(next_row + count, len(inputs))))
            ids, mask = padded([inputs[i] for i in chunk])
            batcher.add(chunk, ids, mask, settings=[settings[i] for i in chunk])
            next_row = chunk[-1] + 1
        sizes.append(len(batcher))
        for finished in batcher.step():
            assert finished.key not in results
            results[finished.key] = finished
    assert sorted(results) == list(range(len(inputs)))
    exits = set()
    for i, row in enumerate(inputs):
        own = policy if settings[i] is None else policy.with_setting(settings[i])
        one = early_exit(model, row[None], torch.ones(1, len(row), dtype=torch.long), policy=own)
        with torch.no_grad():
            logits, certainties = (torch.stack(v) for v in model.forward_all(row[None],
                torch.ones_like(row)[None]))
        assert results[i].exit_index == int(one.exit_index) == rule_exits(own, logits, model.temperatures,
            certainties)[0]
        torch.testing.assert_close(results[i].logits, one.logits[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(results[i].certainty, one.certainty[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(results[i].probs, one.probs[0], atol=1e-5, rtol=1e-4)
        exits.add(results[i].exit_index)
    assert len(exits) >= 2 and max(sizes) > 1


def layer_calls(model, layer_index: int) -> tuple[list[int], object]:
    """The batch size of every call of one layer, and the hook that records them."""
    calls: list[int] = []
    layer = model.encoder.layer_modules()[layer_index]
    return calls, layer.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))


def test_rows_catch_up_and_share_a_deep_layer_call():
    model = tiny_multi_exit(lte=True)  # 6 layers, exits after layers 0, 1, 3, 5
    batcher = LayerBatcher(model, ConfidencePolicy(1.0), max_rows=32, clock=lambda: 0.0)  # nobody late
    calls, hook = layer_calls(model, 3)
    try:
        ids, mask = padded(requests(3, 5))
        batcher.add(["a0", "a1", "a2"], ids, mask)
        for _ in range(2):  # the first request reaches layer 2
            batcher.step()
        ids, mask = padded(requests(4, 6))
        batcher.add(["b0", "b1", "b2", "b3"], ids, mask)  # more rows arrive: they catch up first
        finished = []
        while len(batcher):
            finished += batcher.step()
    finally:
        hook.remove()
    assert sorted(item.key for item in finished) == ["a0", "a1", "a2", "b0", "b1", "b2", "b3"]
    assert calls == [7]  # layer 3 ran once, for the rows of both requests


def test_a_full_call_takes_the_oldest_row_and_those_nearest_its_length():
    model = tiny_multi_exit(lte=True)
    batcher = LayerBatcher(model, ConfidencePolicy(0.0), max_rows=2, clock=lambda: 0.0)  # all leave at 0
    shapes: list[tuple[int, int]] = []
    hook = model.encoder.layer_modules()[0].register_forward_hook(
        lambda _m, args, _o: shapes.append(tuple(args[0].shape[:2]))
    )
    try:
        ids, mask = padded([torch.arange(5, 5 + n) for n in (5, 19, 6, 18)])
        batcher.add(["a", "b", "c", "d"], ids, mask)
        ids, mask = padded([torch.arange(5, 12)])
        batcher.add(["e"], ids, mask)  # a later request, 7 tokens
        order = [[item.key for item in batcher.step()] for _ in range(3)]
    finally:
        hook.remove()
    # "a" (5 tokens) is the oldest row: it runs with "c" (6), not with its neighbour "b" (19) nor
    # with "e" (7, further from 5); then "b" (19) is the oldest, with "d" (18); "e" last, alone.
    assert order == [["a", "c"], ["b", "d"], ["e"]]
    assert shapes == [(2, 6), (2, 19), (1, 7)]  # each call as wide as its longest row only


def test_a_group_passed_over_max_skips_times_runs_next():
    model = tiny_multi_exit(lte=True)
    batcher = LayerBatcher(model, ConfidencePolicy(0.0), max_rows=32, max_skips=2, clock=lambda: 0.0)
    calls, hook = layer_calls(model, 1)
    try:
        ids, mask = padded(requests(1, 7))
        batcher.add(["lone"], ids, mask, settings=[1.0])  # it runs to the last exit
        batcher.step()  # now before layer 1
        waiting = []
        for step in range(3):  # bigger requests keep arriving; they leave at exit 0
            ids, mask = padded(requests(4, 10 + step))
            batcher.add([f"r{step}.{i}" for i in range(4)], ids, mask)
            waiting.append(len(batcher) - 1)
            batcher.step()
    finally:
        hook.remove()
    assert waiting == [4, 4, 4]  # before layer 0: more rows than the lone row each time...
    assert calls == [1]  # ...but after being passed over twice, it ran next, alone
    assert len(batcher) == 5  # and the last request's rows still wait for layer 0


@pytest.mark.parametrize(
    "deadline_ms,max_rows,lone_ran_at", [(100.0, 32, [2]), (0.0, 32, []), (100.0, 4, [])]
)
def test_late_groups_are_served_first_under_light_load(deadline_ms, max_rows, lone_ran_at):
    model = tiny_multi_exit(lte=True)
    now = [0.0]
    batcher = LayerBatcher(model, ConfidencePolicy(0.0), max_rows=max_rows, max_skips=100,
                           deadline_ms=deadline_ms, clock=lambda: now[0])
    calls, hook = layer_calls(model, 1)
    try:
        ids, mask = padded(requests(1, 7))
        batcher.add(["lone"], ids, mask, settings=[1.0])  # at t=0; it runs to the last exit
        batcher.step()  # now before layer 1
        ran_at = []
        for step, arrival in enumerate([0.05, 0.12, 0.19]):  # 4 rows arrive each time, leave at exit 0
            now[0] = arrival
            ids, mask = padded(requests(4, 10 + step))
            batcher.add([f"r{step}.{i}" for i in range(4)], ids, mask)
            before = len(calls)
            batcher.step()
            if len(calls) > before:
                ran_at.append(step + 1)
    finally:
        hook.remove()
    # 100 ms: at t=0.05 the 4 new rows go first (nobody late); at t=0.12 the lone row has been in
    # flight 120 ms, so its layer runs although 4 rows wait for layer 0 (the new ones are not late).
    # 0 ms (the default): every group is always late, so the plain rule (most rows) keeps running layer 0.
    # 100 ms with calls of 4 rows: 5 rows are in flight, more than one call takes, so the plain rule holds.
    assert ran_at == lone_ran_at
    assert calls == [1] * len(lone_ran_at)  # alone


def test_a_cascade_is_refused():
    from sledge.nn import Cascade

    config = BertConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        num_hidden_layers=2)
    members = [MultiExitClassifier(LayerwiseEncoder(config=config), [1], 2) for _ in range(2)]
    with pytest.raises(ValueError, match="not a cascade"):
        LayerBatcher(Cascade(members), ConfidencePolicy(0.5))
