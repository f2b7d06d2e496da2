"""`allennlp predict` like `allennlp serve`: `truncated` in every output and a count at the end, and an
instance's own `confidence_threshold` honoured (or refused with the line and key), batched or not."""

import json

import pytest
from allennlp.models.archival import load_archive

from conftest import ROOT, SENTENCES, predict_lines
from sledge.errors import SledgeError
from sledge.serving.engine import Engine


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


LONG = " ".join(["good"] * 300)  # far past max_length (128 tokens)


@pytest.mark.parametrize("batch_size", ["1", "4"])
def test_truncated_texts_are_flagged_and_counted_at_the_end(trained_run, tmp_path, capsys, batch_size):
    lines = [SENTENCES[0], {"sentence": LONG}, SENTENCES[1], {"sentence": LONG + " bad"}]
    rows = predict_lines(trained_run["archive"], lines, tmp_path / "out.jsonl", "--batch-size", batch_size)
    assert [row["truncated"] for row in rows] == [False, True, False, True]
    reader = load_archive(str(trained_run["archive"])).validation_dataset_reader
    for line, row in zip(lines, rows):  # the flag is the reader's own length test
        assert row["truncated"] == (len(reader.tokenizer(line["sentence"])["input_ids"]) > reader.max_length)
    assert ("allennlp predict: 4 input(s) predicted; 2 of them longer than max_length (128 tokens) and cut "
            'to it ("truncated": true)') in capsys.readouterr().err


def test_an_instance_threshold_is_honoured_as_serve_honours_it(trained_run, tmp_path):
    archive = trained_run["archive"]
    own = [0.0, 1.0, None, 0.6, 0.9, None]
    lines = [{**SENTENCES[i], **({} if t is None else {"confidence_threshold": t})}
             for i, t in enumerate(own)]
    batched = predict_lines(archive, lines, tmp_path / "b.jsonl", "--batch-size", "6",
                            "-o", json.dumps({"model.confidence_threshold": 0.7}))
    alone = predict_lines(archive, lines, tmp_path / "a.jsonl", "--batch-size", "1",
                          "-o", json.dumps({"model.confidence_threshold": 0.7}))
    assert [row["exit_layer"] for row in batched] == [row["exit_layer"] for row in alone]
    assert batched[0]["exit_layer"] == 0 and batched[1]["exit_layer"] == 5  # thresholds 0 and 1
    # serve's engine, given the same rows and settings (None: the model's 0.7), answers the same
    loaded = load_archive(str(archive), overrides=json.dumps({"model.confidence_threshold": 0.7}))
    engine = Engine(loaded)
    rows = [engine.encode({"sentence": line["sentence"]}) for line in lines]
    result = engine.run(rows, own)
    served = [engine.output(int(result.exit_index[i]), result.logits[i], result.probs[i], None,
                            rows[i].truncated) for i in range(len(rows))]
    for mine, theirs in zip(batched, served):
        assert mine["exit_layer"] == theirs["exit_layer"] and mine["label"] == theirs["label"]
        assert mine["probs"] == pytest.approx(theirs["probs"], abs=1e-5)
        assert mine["truncated"] == theirs["truncated"]
    # and each instance equals predicting it alone at its own threshold
    for line, row in zip(lines, batched):
        threshold = line.get("confidence_threshold", 0.7)
        [single] = predict_lines(archive, [{"sentence": line["sentence"]}], tmp_path / "s.jsonl",
                                 "-o", json.dumps({"model.confidence_threshold": threshold}))
        assert single["exit_layer"] == row["exit_layer"]


@pytest.mark.parametrize("value,message", [
    (1.5, "must be a number in [0, 1], got 1.5"),
    ("0.9", "must be a number in [0, 1], got '0.9'"),
    (True, "must be a number in [0, 1], got True"),
])
def test_a_bad_instance_threshold_names_the_line_and_key_and_nothing_is_predicted(
    trained_run, tmp_path, value, message
):
    lines = [SENTENCES[0], {**SENTENCES[1], "confidence_threshold": value}]
    with pytest.raises(SledgeError) as error:
        predict_lines(trained_run["archive"], lines, tmp_path / "out.jsonl")
    assert f"line 2: key 'confidence_threshold' {message} (nothing was predicted)" in str(error.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_an_instance_threshold_with_a_policy_without_one_is_refused(trained_run, tmp_path):
    lines = [{**SENTENCES[0], "confidence_threshold": 0.5}]
    refused = "key 'confidence_threshold': the model's exit policy 'patience' has no threshold"
    with pytest.raises(SledgeError, match=refused):
        predict_lines(trained_run["archive"], lines, tmp_path / "out.jsonl",
                      "-o", json.dumps({"model.exit_policy": {"type": "patience", "patience": 1}}))
