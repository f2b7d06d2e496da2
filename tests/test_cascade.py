"""Cascades of complete models: batched == batch 1 == each member's full pass; the archive and commands."""

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

from conftest import (
    ROOT,
    SENTENCES,
    SWEEP_GRID,
    TEST,
    allennlp,
    alone,
    assert_as_alone,
    independent_temperature,
    mixed_batch,
    nll,
    observed,
    predict_lines,
    rule_exits,
    serve_args,
    statistic,
    tiny_config,
    tiny_multi_exit,
)
from sledge.commands.common import exit_logits, load_sledge_archive, read_labelled, tensor_batches
from sledge.errors import SledgeError
from sledge.nn import (
    Cascade,
    ConfidencePolicy,
    EntropyPolicy,
    LayerwiseEncoder,
    MultiExitClassifier,
    PatiencePolicy,
    full_pass_views,
    simulate_exits,
)


def tiny_cascade() -> Cascade:
    """Members of 2 and 4 layers (see `conftest.tiny_multi_exit`): the first less sure, calibrated at 1.5."""
    members = [
        tiny_multi_exit(config=tiny_config(num_layers=depth), layers=(depth - 1,), seed=depth,
                        temperatures=[temperature], medians=[median])
        for depth, temperature, median in ((2, 1.5, 0.65), (4, 1.0, 0.85))
    ]
    return Cascade(members)


def batch(size: int = 32):
    ids, mask, _ = mixed_batch(size, seed=5)
    return ids, mask, mask.sum(dim=1)


def test_layers_count_every_member_run_and_temperatures_come_from_the_members():
    cascade = tiny_cascade()
    assert cascade.layer_indices == [1, 5]  # 2 layers, then 2 + 4
    assert cascade.temperatures.tolist() == [1.5, 1.0]


@pytest.mark.parametrize("policy", [ConfidencePolicy(), EntropyPolicy(), PatiencePolicy(0)], ids=repr)
def test_batched_cascade_equals_batch_1_the_members_full_passes_and_the_rule(policy):
    cascade = tiny_cascade()
    ids, mask, _ = batch()
    with torch.no_grad():
        logits = torch.stack(cascade.forward_all(ids, mask)[0])
    alone_logits, _ = alone(cascade, ids, mask)
    if isinstance(policy, PatiencePolicy):
        settings = [0, 1]
    else:
        grid = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0] if isinstance(policy,
            EntropyPolicy) else SWEEP_GRID
        batched_statistic = statistic(policy, logits, cascade.temperatures)[0]
        single_statistic = statistic(policy, alone_logits, cascade.temperatures)[0]
        settings = grid + observed(batched_statistic, among=batched_statistic == single_statistic)
    both = 0
    for value in settings:
        setting = policy.with_setting(value)
        batched = cascade.early_exit(ids, mask, None, setting)
        expected = rule_exits(setting, logits, cascade.temperatures)
        assert batched.exit_index.tolist() == expected, f"{setting!r}"
        assert rule_exits(setting, alone_logits, cascade.temperatures) == expected
        assert torch.equal(simulate_exits(setting, full_pass_views(cascade, logits, None)),
            batched.exit_index)
        both += set(expected) == {0, 1}
        assert_as_alone(batched, cascade, ids, mask, policy=setting)
        for row in range(len(ids)):
            full = logits[int(batched.exit_index[row])][row]
            torch.testing.assert_close(batched.logits[row], full, atol=1e-5, rtol=1e-4)
    if not isinstance(policy, PatiencePolicy):  # (two members: patience 0 takes the first, 1 the last)
        assert both >= len(settings) // 2, "too few settings let both members answer"
    assert (cascade.early_exit(ids, mask, None, ConfidencePolicy(0.0)).exit_index == 0).all()
    assert (cascade.early_exit(ids, mask, None, ConfidencePolicy(1.0)).exit_index == 1).all()


def test_only_the_rows_left_run_the_next_member():
    cascade = tiny_cascade()
    ids, mask, _ = batch()
    seen = []
    hook = (
        cascade.members[1]
        .encoder.layer_modules()[0]
        .register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    )
    try:
        with torch.no_grad():
            confidence = torch.softmax(cascade.forward_all(ids, mask)[0][0] / 1.5, -1).max(-1)[0]
        seen.clear()
        threshold = float(confidence.median())
        result = cascade.early_exit(ids, mask, None, ConfidencePolicy(threshold))
        assert seen == [int((result.exit_index == 1).sum())] == [int((confidence < threshold).sum())]
        seen.clear()
        cascade.early_exit(ids, mask, None, ConfidencePolicy(1.0))  # the last member runs everything
        assert seen == [len(ids)]
    finally:
        hook.remove()


def test_a_member_with_several_exits_is_refused():
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=4
    )
    multi = MultiExitClassifier(LayerwiseEncoder(config=config), [1, 3], 3)
    single = MultiExitClassifier(LayerwiseEncoder(config=config), [3], 3)
    with pytest.raises(ValueError, match=r"cascade member 0 has exits on layers \[1, 3\]"):
        Cascade([multi, single])


# ---------------------------------------------------------------------------------------------------
# allennlp cascade / calibrate / evaluate / predict / sweep


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def cascade_archive(single_exit_runs, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("cascade") / "cascade.tar.gz"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp("cascade", str(single_exit_runs[1]), str(single_exit_runs[5]), "--output-file", str(output))
    return output


def predict(archive, output: Path, *options: str) -> list[dict]:
    return predict_lines(archive, SENTENCES, output, *options)


def test_the_cascade_archive_is_self_contained(cascade_archive):
    with tarfile.open(cascade_archive) as tar:
        names = set(tar.getnames())
        config = json.load(tar.extractfile("config.json"))
    assert {
        "config.json",
        "weights.th",
        "vocabulary/labels.txt",
        "backbone/vocab.txt",
        "backbone-0/config.json",
        "backbone-1/config.json",
    } <= names
    assert config["model"]["type"] == "sledge_cascade"
    assert [member["layer_indices"] for member in config["model"]["members"]] == [[1], [5]]


def test_predict_with_a_cascade_gives_the_same_answers_at_batch_1_and_32_with_both_members_answering(
    cascade_archive, single_exit_runs, tmp_path
):
    first = {size: predict(cascade_archive, tmp_path / f"first-{size}.jsonl", "--batch-size", size,
                           "-o", json.dumps({"model.confidence_threshold": 0.0})) for size in ("1", "32")}
    confidence = torch.tensor([row["confidence"] for row in first["1"]])  # the first member's, calibrated
    same = torch.tensor([a["confidence"] == b["confidence"] for a, b in zip(first["1"], first["32"])])
    members = [predict(single_exit_runs[layer], tmp_path / f"member-{layer}.jsonl") for layer in (1, 5)]
    for threshold in (0.9, *observed(confidence, among=same)):
        override = json.dumps({"model.confidence_threshold": threshold})
        one = predict(cascade_archive, tmp_path / "one.jsonl", "-o", override)
        many = predict(cascade_archive, tmp_path / "many.jsonl", "-o", override, "--batch-size", "32")
        expected = [0 if value >= threshold else 1 for value in confidence.tolist()]
        assert set(expected) == {0, 1}, f"threshold {threshold}: one member answers everything"
        assert [row["exit_model"] for row in one] == expected == [row["exit_model"] for row in many]
        assert [row["label"] for row in one] == [row["label"] for row in many]
        for a, b in zip(one, many):
            assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)
        for index, (row, member) in enumerate(zip(one, expected)):  # the member that answered, as alone
            assert row["exit_layer"] == [1, 7][member]  # 2 layers, or 2 + 6
            assert row["label"] == members[member][index]["label"]


def test_the_cascade_answers_as_its_members_do(cascade_archive, single_exit_runs, tmp_path):
    for threshold, layer in ((0.0, 1), (1.0, 5)):
        member = predict(single_exit_runs[layer], tmp_path / f"member-{layer}.jsonl")
        cascade = predict(
            cascade_archive,
            tmp_path / f"cascade-{threshold}.jsonl",
            "-o",
            json.dumps({"model.confidence_threshold": threshold}),
        )
        assert [row["label"] for row in member] == [row["label"] for row in cascade]
        for a, b in zip(member, cascade):
            assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)


def test_calibrate_evaluate_and_sweep_take_a_cascade(cascade_archive, single_exit_runs, tmp_path):
    calibrated = tmp_path / "calibrated.tar.gz"
    allennlp("calibrate", str(cascade_archive), str(TEST), "--output-file", str(calibrated))
    with tarfile.open(calibrated) as tar:
        temperatures = torch.load(tar.extractfile("weights.th"), weights_only=True)["core.temperatures"]
    for position, layer in enumerate((1, 5)):  # each member's own temperature, fitted independently
        member = load_sledge_archive(str(single_exit_runs[layer]))
        instances = read_labelled(member, str(TEST))
        logits, labels = exit_logits(member.model, tensor_batches(instances, member, 64, torch.device("cpu")))
        best, temperature = independent_temperature(logits[0], labels), float(temperatures[position])
        assert nll(logits[0], labels, temperature) <= nll(logits[0], labels, best) + 1e-6
        assert temperature == pytest.approx(best, rel=1e-2)
        assert nll(logits[0], labels, temperature) <= nll(logits[0], labels)
    metrics_file = tmp_path / "metrics.json"
    allennlp(
        "evaluate",
        str(calibrated),
        str(TEST),
        "--include-package",
        "sledge",
        "--output-file",
        str(metrics_file),
        "-o",
        json.dumps({"model.confidence_threshold": 0.0}),
    )
    metrics = json.loads(metrics_file.read_text())
    assert metrics["average_exit_layer"] == 1.0 and metrics["accuracy"] == metrics["accuracy_layer_1"]
    allennlp(
        "sweep",
        str(calibrated),
        str(TEST),
        "--output-dir",
        str(tmp_path / "sweep"),
        "--repeats",
        "1",
        "--thresholds",
        "0",
        "0.9",
        "1",
        "--batch-size",
        "4",
    )
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rows"]
    curve = [row for row in rows if row["kind"] == "sledge"]
    assert [row["average_exit_layer"] for row in (curve[0], curve[-1])] == [1.0, 7.0]
    assert all(row["exit_agreement"] == 1.0 for row in curve)


def rewrite(archive: Path, target: Path, change) -> Path:
    """A copy of `archive` whose members `change(name, data)` may replace."""
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as tar:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None
            if data is not None:
                data = change(member.name, data)
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


def test_members_with_labels_in_another_order_are_aligned(single_exit_runs, tmp_path):
    def reverse(name: str, data: bytes) -> bytes:
        if name == "vocabulary/labels.txt":
            return b"\n".join(reversed(data.strip().split(b"\n"))) + b"\n"
        if name == "weights.th":
            state = torch.load(io.BytesIO(data), weights_only=True)
            for key in ("core.exits.0.classifier.weight", "core.exits.0.classifier.bias"):
                state[key] = state[key].flip(0)
            buffer = io.BytesIO()
            torch.save(state, buffer)
            return buffer.getvalue()
        return data

    flipped = rewrite(single_exit_runs[5], tmp_path / "flipped.tar.gz", reverse)
    original = predict(single_exit_runs[5], tmp_path / "s.jsonl")
    labels = [row["label"] for row in original]
    assert [row["label"] for row in predict(flipped, tmp_path / "f.jsonl")] == labels
    allennlp("cascade", str(single_exit_runs[1]), str(flipped), "--output-file", str(tmp_path / "c.tar.gz"))
    cascade = predict(tmp_path / "c.tar.gz", tmp_path / "c.jsonl")
    member = predict(single_exit_runs[5], tmp_path / "m.jsonl")
    assert [row["label"] for row in cascade] == [row["label"] for row in member]


def test_a_cascade_of_disagreeing_members_is_refused_naming_them(single_exit_runs, trained_run, tmp_path):
    def other_labels(name: str, data: bytes) -> bytes:
        return b"neg\npos\n" if name == "vocabulary/labels.txt" else data

    def other_tokenizer(name: str, data: bytes) -> bytes:
        if name not in ("backbone/vocab.txt", "backbone/tokenizer.json"):
            return data
        if name.endswith(".txt"):
            return data + b"zebra\n"
        tokenizer = json.loads(data)
        tokenizer["model"]["vocab"]["zebra"] = len(tokenizer["model"]["vocab"])
        return json.dumps(tokenizer).encode()

    output = str(tmp_path / "c.tar.gz")
    relabelled = rewrite(single_exit_runs[5], tmp_path / "relabelled.tar.gz", other_labels)
    with pytest.raises(SledgeError, match=rf"the labels of {relabelled} \(neg, pos\) differ from those of"):
        allennlp("cascade", str(single_exit_runs[1]), str(relabelled), "--output-file", output)
    retokenized = rewrite(single_exit_runs[5], tmp_path / "retokenized.tar.gz", other_tokenizer)
    with pytest.raises(SledgeError, match=rf"the tokenizer of {retokenized} differs from that of"):
        allennlp("cascade", str(single_exit_runs[1]), str(retokenized), "--output-file", output)
    with pytest.raises(SledgeError, match=r"has exits on layers \[0, 1, 3, 5\]; a cascade member is a"):
        allennlp("cascade", str(single_exit_runs[1]), str(trained_run["archive"]), "--output-file", output)
    with pytest.raises(SledgeError, match="a cascade needs at least 2 archives"):
        allennlp("cascade", str(single_exit_runs[1]), "--output-file", output)
    assert not Path(output).exists()


def test_serve_takes_dynamic_batching_for_a_cascade_by_default_and_refuses_continuous(cascade_archive):
    from sledge.commands.serve import load
    from sledge.serving.dynamic import DynamicScheduler

    _, scheduler, _ = load(serve_args(cascade_archive))
    scheduler.stop()
    assert type(scheduler) is DynamicScheduler
    with pytest.raises(SledgeError, match="cascade.tar.gz: a cascade is served with --scheduler dynamic"):
        load(serve_args(cascade_archive, scheduler="continuous"))
