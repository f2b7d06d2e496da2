"""Exit policies and regression through AllenNLP's command line: train, evaluate, predict, sweep."""

import json
from pathlib import Path

import pytest
import torch
from scipy import stats

from conftest import (
    FIXTURES,
    ROOT,
    SENTENCES,
    TEST,
    allennlp,
    alone,
    archive_pass,
    observed,
    predict_lines,
    rule_exits,
    statistic,
    train_tiny,
)
from sledge.commands.common import inputs_of, load_sledge_archive, read_labelled, tensor_batches
from sledge.errors import SledgeError
from sledge.nn import POLICIES, ConfidencePolicy, EntropyPolicy, LearnedPolicy, PatiencePolicy

# in the STS Benchmark's format
STSB_TRAIN, STSB_TEST = FIXTURES / "e2e" / "opinions.train", FIXTURES / "e2e" / "opinions.test"


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory) -> dict:
    """The STS-B MiniLM config (regression, LTE on) trained by `train_tiny` on pairs scored by their
    opinion words (fixtures/e2e/make_fixtures.py)."""
    work = tmp_path_factory.mktemp("stsb")
    data = {"train_data_path": str(STSB_TRAIN), "validation_data_path": str(STSB_TEST),
            "test_data_path": str(STSB_TEST)}
    run = train_tiny(work, "stsb_minilm", **data)
    return {"work": work, "run": run, "archive": run / "model.tar.gz"}


def pairs(path: Path) -> list[dict]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [{"premise": row[5], "hypothesis": row[6]} for row in rows]


predict = predict_lines


def test_a_regression_model_reports_pearson_and_spearman_of_every_exit(stsb_run):
    metrics = json.loads((stsb_run["run"] / "metrics.json").read_text())
    full = archive_pass(stsb_run["archive"], STSB_TEST)
    gold = full["labels"].double().numpy()
    for position, layer in enumerate((0, 1, 3, 5)):  # scipy's, on each exit's scores
        scores = full["logits"][position, :, 0].double().numpy()
        assert metrics[f"test_pearson_layer_{layer}"] == pytest.approx(stats.pearsonr(scores, gold)[0],
            abs=1e-5)
        assert metrics[f"test_spearman_layer_{layer}"] == pytest.approx(stats.spearmanr(scores, gold)[0],
            abs=1e-5)
    assert metrics["test_pearson"] == metrics["test_pearson_layer_5"]  # threshold 1: the deepest exit
    assert "best_validation_pearson" in metrics and "test_accuracy" not in metrics


def regression_settings(archive) -> list[dict]:
    """Learned thresholds equal to observed first-exit certainties, and patience 1 with tolerances equal
    to observed differences between the first two exits' scores (of pairs whose values are the same to
    the last bit batched and alone: see `conftest.observed`)."""
    loaded = load_sledge_archive(str(archive))
    instances = read_labelled(loaded, str(STSB_TEST))
    inputs = inputs_of(tensor_batches(instances, loaded, 64, torch.device("cpu"))[0])
    core = loaded.model.core
    with torch.no_grad():
        logits, certainties = (torch.stack(values) for values in core.forward_all(*inputs))
    alone_logits, alone_certainties = alone(core, *inputs)
    steps = (logits[1, :, 0] - logits[0, :, 0]).abs()
    alone_steps = (alone_logits[1, :, 0] - alone_logits[0, :, 0]).abs()
    learned = observed(certainties[0], (0.3, 0.7), among=certainties[0] == alone_certainties[0])
    tolerances = observed(steps, (0.3, 0.7), among=steps == alone_steps)
    return ([{"type": "learned", "threshold": value} for value in learned]
            + [{"type": "patience", "patience": 1, "tolerance": value} for value in tolerances])


def test_each_regression_policy_gives_the_same_exits_at_batch_1_and_32(stsb_run, tmp_path):
    full = archive_pass(stsb_run["archive"], STSB_TEST)
    for spec in regression_settings(stsb_run["archive"]):
        override = json.dumps({"model.exit_policy": spec})
        one = predict(stsb_run["archive"], pairs(STSB_TEST), tmp_path / "one.jsonl", "-o", override)
        many = predict(
            stsb_run["archive"], pairs(STSB_TEST), tmp_path / "many.jsonl", "-o", override,
                "--batch-size", "32"
        )
        policy = POLICIES[spec["type"]](**{k: v for k, v in spec.items() if k != "type"})
        expected = rule_exits(policy, full["logits"], full["temperatures"], full["certainties"],
            regression=True)
        assert [row["exit_index"] for row in one] == expected == [row["exit_index"] for row in many], spec
        assert len(set(expected)) >= 2, f"{spec} sends every pair to one exit"
        assert [row["score"] for row in one] == pytest.approx([row["score"] for row in many], abs=1e-5)
        assert set(one[0]) == {"score", "exit_layer", "exit_index", "certainty", "truncated"}
    output = tmp_path / "metrics.json"
    allennlp(
        "evaluate",
        str(stsb_run["archive"]),
        str(STSB_TEST),
        "--include-package",
        "sledge",
        "--output-file",
        str(output),
        "-o",
        override,
    )
    metrics = json.loads(output.read_text())
    layers = [row["exit_layer"] for row in one]
    assert metrics["average_exit_layer"] == pytest.approx(sum(layers) / len(layers))
    scores = [row["score"] for row in one]
    gold = full["labels"].double().numpy()
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(scores, gold)[0], abs=1e-5)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(scores, gold)[0], abs=1e-5)


@pytest.mark.parametrize(
    "policy,message",
    [
        ({"type": "confidence", "threshold": 0.9}, "'confidence' cannot apply to a regression model"),
        ({"type": "entropy", "threshold": 0.3}, "'entropy' cannot apply to a regression model"),
    ],
)
def test_a_policy_that_cannot_apply_is_an_error_at_load_time(stsb_run, tmp_path, policy, message):
    with pytest.raises(SledgeError, match=message):
        predict(
            stsb_run["archive"],
            pairs(STSB_TEST)[:1],
            tmp_path / "x.jsonl",
            "-o",
            json.dumps({"model.exit_policy": policy}),
        )


def test_calibrate_says_temperature_scaling_does_not_apply_to_regression(stsb_run, tmp_path):
    with pytest.raises(SledgeError, match="is a regression model: temperature scaling calibrates class"):
        allennlp(
            "calibrate", str(stsb_run["archive"]), str(STSB_TEST), "--output-file", str(tmp_path / "c.tar.gz")
        )
    assert not (tmp_path / "c.tar.gz").exists()


def test_a_regression_sweep_overlays_learned_and_patience_on_pearson(stsb_run, tmp_path):
    output = tmp_path / "sweep"
    allennlp(
        "sweep",
        str(stsb_run["archive"]),
        str(STSB_TEST),
        "--output-dir",
        str(output),
        "--policy",
        "learned:0,0.5,1",
        "--policy",
        '{"type": "patience", "tolerance": 0.3}',
        "--repeats",
        "1",
        "--batch-size",
        "8",
    )
    report = json.loads((output / "sweep.json").read_text())
    assert report["info"]["metric"] == "pearson"
    rows = [row for row in report["rows"] if row["kind"] == "sledge"]
    assert [(row["policy"], row["value"]) for row in rows] == [
        ("learned", 0.0),
        ("learned", 0.5),
        ("learned", 1.0),
        ("patience (tolerance 0.3)", 0),
        ("patience (tolerance 0.3)", 1),
        ("patience (tolerance 0.3)", 2),
        ("patience (tolerance 0.3)", 3),
    ]
    assert all(row["exit_agreement"] == 1.0 for row in rows)
    full = archive_pass(stsb_run["archive"], STSB_TEST)
    for row in rows:
        learned = row["policy"] == "learned"
        policy = LearnedPolicy(row["value"]) if learned else PatiencePolicy(row["value"], 0.3)
        assert_row(row, expected_row(full, policy, regression=True))
    metrics = json.loads((stsb_run["run"] / "metrics.json").read_text())
    by_value = {(row["policy"], row["value"]): row for row in rows}
    assert by_value["learned", 1.0]["pearson"] == pytest.approx(metrics["test_pearson_layer_5"], abs=1e-6)
    assert by_value["learned", 0.0]["pearson"] == pytest.approx(metrics["test_pearson_layer_0"], abs=1e-6)
    assert by_value["patience (tolerance 0.3)", 0]["average_exit_layer"] == 0.0
    assert by_value["patience (tolerance 0.3)", 3]["average_exit_layer"] == 5.0
    assert not any(row["kind"] == "oracle" for row in report["rows"])
    assert (output / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "pearson,spearman" in (output / "sweep.csv").read_text().splitlines()[0]


def expected_row(full: dict, policy, regression: bool = False) -> dict:
    """A sweep row's metric, average exit layer and exit shares, from one full pass and the rule."""
    exits = rule_exits(policy, full["logits"], full["temperatures"], full["certainties"], regression)
    taken = full["logits"][torch.tensor(exits), torch.arange(len(exits))]
    if regression:
        scores, gold = taken[:, 0].double().numpy(), full["labels"].double().numpy()
        metric = {"pearson": stats.pearsonr(scores, gold)[0], "spearman": stats.spearmanr(scores, gold)[0]}
    else:
        metric = {"accuracy": float((taken.argmax(-1) == full["labels"]).double().mean())}
    layers = full["layers"]
    return {**metric, "average_exit_layer": sum(layers[j] for j in exits) / len(exits),
            "exit_shares": {str(layer): exits.count(j) / len(exits) for j, layer in enumerate(layers)}}


def assert_row(row: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert row[key] == (pytest.approx(value,
            abs=1e-6) if key != "exit_shares" else pytest.approx(value)), (
            f"{row['name']}: {key}")


def test_a_classification_sweep_overlays_several_policies(trained_run, tmp_path):
    calibrated = tmp_path / "calibrated.tar.gz"  # temperatures other than 1: the two confidences differ
    allennlp("calibrate", str(trained_run["archive"]), str(TEST), "--output-file", str(calibrated))
    output = tmp_path / "sweep"
    allennlp(
        "sweep",
        str(calibrated),
        str(TEST),
        "--output-dir",
        str(output),
        "--policy",
        "confidence:0,0.6,0.8,1",
        "--policy",
        '{"type": "confidence", "calibrated": false, "values": [0.6, 0.8]}',
        "--policy",
        "entropy:1,0.8,0.5,0",
        "--policy",
        "patience",
        "--repeats",
        "1",
        "--batch-size",
        "4",
    )
    report = json.loads((output / "sweep.json").read_text())
    rows = [row for row in report["rows"] if row["kind"] == "sledge"]
    assert sorted({row["policy"] for row in rows}) == [
        "confidence",
        "confidence (uncalibrated)",
        "entropy",
        "patience",
    ]
    assert all(row["exit_agreement"] == 1.0 for row in rows)
    full = archive_pass(calibrated)
    assert not torch.allclose(full["temperatures"], torch.ones(4), atol=0.05)
    policies = {"confidence": ConfidencePolicy(),
        "confidence (uncalibrated)": ConfidencePolicy(calibrated=False),
                "entropy": EntropyPolicy(), "patience": PatiencePolicy()}
    for row in rows:
        assert_row(row, expected_row(full, policies[row["policy"]].with_setting(row["value"])))
    by_name = {row["name"]: row for row in rows}
    assert by_name["entropy@1"]["average_exit_layer"] == by_name["confidence@0"]["average_exit_layer"] == 0.0
    assert by_name["patience@3"]["accuracy"] == by_name["confidence@1"]["accuracy"]
    assert len({row["average_exit_layer"] for row in rows}) >= 5  # the settings spread the exits


@pytest.mark.parametrize(
    "spec,message",
    [
        ("learned", "'learned' cannot apply: the model was trained without the learning-to-exit module"),
        ("speed", "unknown policy 'speed'; choose from confidence, entropy, patience, learned"),
        ("confidence:0.5,x", "the values after ':' must be numbers"),
        ("confidence:1.5", r"exit_policy.threshold must be a number in \[0, 1\], got 1.5"),
        ('{"type": "patience", "patience": 1, "speed": 2}', "unexpected keyword argument 'speed'"),
        ('{"type": "entropy"', "not valid JSON"),
    ],
)
def test_a_bad_policy_spec_is_refused_naming_it(trained_run, tmp_path, spec, message):
    with pytest.raises(SledgeError, match=message):
        allennlp(
            "sweep",
            str(trained_run["archive"]),
            str(TEST),
            "--output-dir",
            str(tmp_path / "s"),
            "--policy",
            spec,
        )
    assert not (tmp_path / "s").exists()


def test_policies_set_with_overrides_give_the_same_exits_batched(trained_run, tmp_path):
    sentences = SENTENCES
    full = archive_pass(trained_run["archive"])
    # entropy at observed first-exit entropies (of sentences whose value is the same at batch 1 and 32)
    first = {size: predict(trained_run["archive"], sentences, tmp_path / f"first-{size}.jsonl",
        "--batch-size",
                           size, "-o", json.dumps({"model.exit_policy": {"type": "entropy", "threshold": 1}}))
             for size in ("1", "32")}
    entropy = {size: statistic(EntropyPolicy(), torch.tensor([[row["probs"] for row in rows]]),
        torch.ones(1))[0]
               for size, rows in first.items()}
    settings = [{"type": "entropy", "threshold": value}
                for value in observed(entropy["1"], (0.3, 0.7), among=entropy["1"] == entropy["32"])]
    for spec in [*settings, {"type": "patience", "patience": 1}]:
        override = json.dumps({"model.exit_policy": spec})
        one = predict(trained_run["archive"], sentences, tmp_path / "one.jsonl", "-o", override)
        many = predict(
            trained_run["archive"], sentences, tmp_path / "many.jsonl", "-o", override, "--batch-size", "32"
        )
        policy = POLICIES[spec["type"]](**{k: v for k, v in spec.items() if k != "type"})
        expected = rule_exits(policy, full["logits"], full["temperatures"])
        assert [row["exit_index"] for row in one] == expected == [row["exit_index"] for row in many], spec
        assert len(set(expected)) >= 2, f"{spec} sends every sentence to one exit"
        assert [row["label"] for row in one] == [row["label"] for row in many]
    with pytest.raises(SledgeError, match="give the threshold inside model.exit_policy"):
        predict(
            trained_run["archive"],
            sentences[:1],
            tmp_path / "x.jsonl",
            "-o",
            json.dumps(
                {
                    "model.exit_policy": {"type": "entropy", "threshold": 0.5},
                    "model.confidence_threshold": 0.9,
                }
            ),
        )


def test_a_sweep_measures_other_models_curves_in_the_same_run(trained_run, tmp_path):
    output = tmp_path / "sweep"
    allennlp(
        "sweep",
        str(trained_run["archive"]),
        str(TEST),
        "--output-dir",
        str(output),
        "--name",
        "first",
        "--also",
        f"second={trained_run['run']}",
        "--thresholds",
        "0",
        "0.7",
        "1",
        "--repeats",
        "1",
    )
    report = json.loads((output / "sweep.json").read_text())
    rows = [row for row in report["rows"] if row["kind"] == "sledge"]
    assert [(row["model"], row["policy"], row["value"]) for row in rows] == [
        (model, f"{model}, confidence", value) for model in ("first", "second") for value in (0.0, 0.7, 1.0)
    ]
    for a, b in zip(rows[:3], rows[3:]):  # the same model twice: the same exits and accuracy
        assert a["accuracy"] == b["accuracy"] and a["exit_shares"] == b["exit_shares"]
    models = {"first": str(trained_run["archive"]), "second": str(trained_run["run"])}
    assert report["info"]["models"] == models
    assert [row["model"] for row in report["rows"] if row["kind"] == "oracle"] == ["first"]
    with pytest.raises(SledgeError, match="'first' is the name of the swept model"):
        allennlp(
            "sweep",
            str(trained_run["archive"]),
            str(TEST),
            "--output-dir",
            str(output),
            "--name",
            "first",
            "--also",
            f"first={trained_run['run']}",
        )
