"""Input files under hostile or careless hands: text no tokenizer can take (a lone surrogate) refused with
the other line checks before any work, and errors of `allennlp train` printed as one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TEST, allennlp
from sledge.commands.checks import check_training_config
from sledge.dataset_readers import JsonlReader
from sledge.errors import InvalidTextError, SledgeError, text_problem
from sledge.models.sledge_classifier import SledgeClassifier
from sledge.predictors import SledgePredictor

SENTENCES = [line.split(" ", 1)[1] for line in TEST.read_text().splitlines()]


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # AllenNLP finds the plugin subcommands through ./.allennlp_plugins


def test_a_lone_surrogate_is_named_with_its_position_and_a_real_pair_is_text():
    assert text_problem("good \ud800 film") == (
        "holds a lone surrogate (\\ud800 at character 6): half of a UTF-16 pair, not text"
    )
    assert text_problem("\udfff") is not None
    for fine in ("good film", "😀 an emoji (a pair in UTF-16, one character here)", "naïve café", "a\x00b"):
        assert text_problem(fine) is None
    assert "\ud83d\ude00" != "😀" and text_problem("\ud83d\ude00") is not None  # two halves, unjoined


@pytest.mark.parametrize("batch_size", ["1", "8"])
def test_predict_names_the_line_and_predicts_nothing(trained_run, tmp_path, batch_size):
    """The original failure: `{"sentence": "good \\ud800 film"}` passed the line check, then the tokenizer
    failed with a 45-line traceback and nothing was predicted."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"sentence": SENTENCES[0]}) + "\n" + '{"sentence": "good \\ud800 film"}\n'
                      + json.dumps({"sentence": "😀 " + SENTENCES[1]}) + "\n")
    output = tmp_path / "out.jsonl"
    output.write_text("earlier results\n")
    with pytest.raises(SledgeError) as caught:
        allennlp("predict", str(trained_run["archive"]), str(source), "--include-package", "sledge",
                 "--silent", "--output-file", str(output), "--batch-size", batch_size)
    assert str(caught.value) == (
        f"{source}, line 2: key 'sentence' holds a lone surrogate (\\ud800 at character 6): half of a UTF-16 "
        "pair, not text (nothing was predicted)"
    )
    assert output.read_text() == "earlier results\n"


def test_evaluate_names_the_line_before_the_model_runs(trained_run, tmp_path, monkeypatch):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"sentence": text, "label": "1"}) + "\n" for text in SENTENCES[:3])
                    + '{"sentence": "fine", "label": "0"}\n{"sentence": "bad \\udc00", "label": "0"}\n')
    calls = []
    forward = SledgeClassifier.forward

    def counted(model, **inputs):
        calls.append(1)
        return forward(model, **inputs)

    monkeypatch.setattr(SledgeClassifier, "forward", counted)
    with pytest.raises(SledgeError, match=f"^{data}, line 5: the text holds a lone surrogate "
                                          r"\(\\udc00 at character 5\)"):
        allennlp("evaluate", str(trained_run["archive"]), str(data), "--include-package", "sledge",
                 "-o", json.dumps({"dataset_reader.type": "jsonl"}))
    assert calls == []


def test_the_reader_and_the_predictor_check_both_texts_of_a_pair(tiny_bert, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"premise": "a", "hypothesis": "b \\ud800", "label": "x"}\n')
    reader = JsonlReader(transformer_model=tiny_bert, text_field="premise", text_pair_field="hypothesis")
    with pytest.raises(SledgeError, match=r"line 1: the second text holds a lone surrogate"):
        list(reader.read(str(data)))
    predictor = SledgePredictor.__new__(SledgePredictor)
    predictor._dataset_reader = reader
    with pytest.raises(InvalidTextError, match="key 'hypothesis' holds a lone surrogate"):
        predictor.check_json({"premise": "a", "hypothesis": "b \ud800"})
    assert predictor.check_json({"premise": "a", "hypothesis": "b 😀"}) == ("a", "b 😀")


def test_a_training_file_of_one_label_is_refused_before_training(tmp_path):
    """SST-2 lines all labelled 1 (as a slice of a sorted file would be): refused by name before anything
    is built, where training used to go on (the vocabulary took both labels from the validation data)
    and gave a model that says 1 whatever the input; the same file with one line of the other label
    passes the check."""
    positive = [line for line in TEST.read_text().splitlines() if line.startswith("1 ")][:20]
    data = tmp_path / "train.txt"
    data.write_text("\n".join(positive) + "\n")
    overrides = {"train_data_path": str(data), "validation_data_path": str(TEST)}
    with pytest.raises(SledgeError) as error:
        check_training_config("training_config/sst2_minilm.jsonnet", json.dumps(overrides))
    assert str(error.value) == (
        f"train_data_path {data}: every instance has the label '1'; a classifier needs at least two labels "
        "to learn from (is it the right file, or a slice of a sorted one?)"
    )
    negative = next(line for line in TEST.read_text().splitlines() if line.startswith("0 "))
    data.write_text("\n".join([*positive, negative]) + "\n")
    check_training_config("training_config/sst2_minilm.jsonnet", json.dumps(overrides))


@pytest.mark.parametrize("problem", ["empty", "missing"])
def test_a_training_error_is_one_line_although_allennlp_train_installs_its_own_hook(tmp_path, problem):
    """`allennlp train` sets up its logging with an exception hook that prints every error with a
    traceback (as it did for an empty or a missing training file); sledge's is put back on top of it."""
    data = tmp_path / "train.txt"
    if "empty" in problem:
        data.write_text("")
    overrides = {"train_data_path": str(data), "validation_data_path": str(TEST), "test_data_path": str(TEST)}
    train = subprocess.run(
        [str(Path(sys.executable).parent / "allennlp"), "train", "training_config/sst2_minilm.jsonnet", "-s",
         str(tmp_path / "run"), "--include-package", "sledge", "-o", json.dumps(overrides)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert train.returncode == 1 and "Traceback" not in train.stderr
    expected = {  # the empty file is found by the reader, during training; the missing one before it starts
        "empty": f"{data}: no instances in it (the file is empty)",
        "missing": f"train_data_path {data} (SST-2 (sentence level), training_config/sst2_minilm.jsonnet) "
        "does not exist; where to get it: docs/datasets.md",
    }[problem]
    assert train.stderr.strip().splitlines()[-1] == f"allennlp train: error: {expected}"
    assert not (tmp_path / "run").exists(), "a run that failed before any checkpoint leaves no folder"
