"""Exit policies and regression through AllenNLP's command line: train, evaluate, predict, sweep."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, TEST, allennlp, build_tiny_bert, predict_lines
from sledge.errors import SledgeError

STSB_TRAIN, STSB_TEST = FIXTURES / "e2e" / "stsb.train", FIXTURES / "e2e" / "stsb.test"


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory) -> dict:
    """The STS-B MiniLM config (regression, LTE on) trained on 48 real pairs with a tiny random BERT."""
    work = tmp_path_factory.mktemp("stsb")
    backbone = build_tiny_bert(work / "tiny-bert", num_layers=6)
    overrides = {
        "dataset_reader.transformer_model": str(backbone),
        "model.transformer_model": str(backbone),
        "train_data_path": str(STSB_TRAIN),
        "validation_data_path": str(STSB_TEST),
        "test_data_path": str(STSB_TEST),
        "trainer.num_epochs": 2,
        "trainer.optimizer.lr": 1e-3,
        "data_loader.batch_sampler.batch_size": 8,
    }
    run = work / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp(
            "train",
            str(ROOT / "training_config" / "stsb_minilm.jsonnet"),
            "-s",
            str(run),
            "--include-package",
            "sledge",
            "-o",
            json.dumps(overrides),
        )
    shutil.rmtree(backbone)
    return {"work": work, "run": run, "archive": run / "model.tar.gz"}


def pairs(path: Path) -> list[dict]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [{"premise": row[5], "hypothesis": row[6]} for row in rows]


predict = predict_lines


def test_a_regression_model_reports_pearson_and_spearman_of_every_exit(stsb_run):
    metrics = json.loads((stsb_run["run"] / "metrics.json").read_text())
    for layer in (0, 1, 3, 5):
        assert -1.0 <= metrics[f"test_pearson_layer_{layer}"] <= 1.0
        assert -1.0 <= metrics[f"test_spearman_layer_{layer}"] <= 1.0
    assert metrics["test_pearson"] == metrics["test_pearson_layer_5"]  # threshold 1: the deepest exit
    assert "best_validation_pearson" in metrics and "test_accuracy" not in metrics


@pytest.mark.parametrize(
    "policy",
    [
        {"type": "learned", "threshold": 0.5},
        {"type": "patience", "patience": 1, "tolerance": 0.3},
    ],
)
def test_each_regression_policy_gives_the_same_exits_at_batch_1_and_32(stsb_run, tmp_path, policy):
    override = json.dumps({"model.exit_policy": policy})
    one = predict(stsb_run["archive"], pairs(STSB_TEST), tmp_path / "one.jsonl", "-o", override)
    many = predict(
        stsb_run["archive"], pairs(STSB_TEST), tmp_path / "many.jsonl", "-o", override, "--batch-size", "32"
    )
    assert [row["exit_layer"] for row in one] == [row["exit_layer"] for row in many]
    assert [row["score"] for row in one] == pytest.approx([row["score"] for row in many], abs=1e-4)
    assert set(one[0]) == {"score", "exit_layer", "exit_index", "certainty"}
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
    metrics = json.loads((stsb_run["run"] / "metrics.json").read_text())
    by_value = {(row["policy"], row["value"]): row for row in rows}
    assert by_value["learned", 1.0]["pearson"] == pytest.approx(metrics["test_pearson_layer_5"], abs=1e-6)
    assert by_value["learned", 0.0]["pearson"] == pytest.approx(metrics["test_pearson_layer_0"], abs=1e-6)
    assert by_value["patience (tolerance 0.3)", 0]["average_exit_layer"] == 0.0
    assert by_value["patience (tolerance 0.3)", 3]["average_exit_layer"] == 5.0
    assert not any(row["kind"] == "oracle" for row in report["rows"])
    assert (output / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "pearson,spearman" in (output / "sweep.csv").read_text().splitlines()[0]


def test_a_classification_sweep_overlays_several_policies(trained_run, tmp_path):
    output = tmp_path / "sweep"
    allennlp(
        "sweep",
        str(trained_run["archive"]),
        str(TEST),
        "--output-dir",
        str(output),
        "--policy",
        "confidence:0,0.6,1",
        "--policy",
        '{"type": "confidence", "calibrated": false, "values": [0.6]}',
        "--policy",
        "entropy:1,0.5,0",
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
    by_name = {row["name"]: row for row in rows}
    assert by_name["entropy@1"]["average_exit_layer"] == by_name["confidence@0"]["average_exit_layer"] == 0.0
    assert by_name["entropy@1"]["accuracy"] == by_name["confidence@0"]["accuracy"]
    assert by_name["patience@3"]["accuracy"] == by_name["confidence@1"]["accuracy"]
    # The trained model's temperatures are 1 (not calibrated): both confidence curves are the same.
    assert by_name["confidence (uncalibrated)@0.6"]["accuracy"] == by_name["confidence@0.6"]["accuracy"]


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
    sentences = [{"sentence": line.split(" ", 1)[1]} for line in TEST.read_text().splitlines()]
    for policy in ({"type": "entropy", "threshold": 0.9}, {"type": "patience", "patience": 1}):
        override = json.dumps({"model.exit_policy": policy})
        one = predict(trained_run["archive"], sentences, tmp_path / "one.jsonl", "-o", override)
        many = predict(
            trained_run["archive"], sentences, tmp_path / "many.jsonl", "-o", override, "--batch-size", "32"
        )
        assert [row["exit_layer"] for row in one] == [row["exit_layer"] for row in many]
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
