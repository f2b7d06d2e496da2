"""
Every user error of issue 27, on every command it applies to (train, evaluate, predict, calibrate,
sweep, cascade, serve): one `SledgeError` line naming the option, key or file and saying what to do,
raised before a model is loaded where the check does not need one. A few run as real `allennlp`
processes to show what the user sees: that line alone, no traceback.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

import sledge  # noqa: F401
from conftest import ROOT, TEST, allennlp, build_tiny_bert, serve_args
from sledge import patches
from sledge.commands.serve import load
from sledge.errors import SledgeError
from sledge.nn import encoder

ALLENNLP = str(Path(sys.executable).parent / "allennlp")


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fails the test if a backbone is built: the check under test must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(encoder.LayerwiseEncoder, "__init__", refuse)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def repacked(archive: Path, target: Path, change) -> Path:
    """A copy of `archive` with `change(folder)` applied to its extracted files."""
    folder = target.with_suffix(".d")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    change(folder)
    with tarfile.open(target, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    return target


@pytest.fixture(scope="module")
def broken(trained_run, tmp_path_factory) -> dict[str, Path]:
    """Archives a user gets wrong: a folder without config.json, an unknown model type, and a label
    vocabulary of 3 labels beside weights trained on 2."""
    work = tmp_path_factory.mktemp("broken")
    folder = work / "folder"
    folder.mkdir()
    (folder / "weights.th").write_bytes(b"")

    def unknown_type(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        config["model"]["type"] = "sledge_nope"
        (path / "config.json").write_text(json.dumps(config))

    def three_labels(path: Path) -> None:
        (path / "vocabulary" / "labels.txt").write_text("0\n1\n2\n")

    archive = trained_run["archive"]
    return {
        "folder": folder,
        "unknown": repacked(archive, work / "unknown.tar.gz", unknown_type),
        "mismatch": repacked(archive, work / "mismatch.tar.gz", three_labels),
    }


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------------
# -o overrides (train, evaluate, predict): invalid JSON, NaN, "0.9", 1e309

OVERRIDES = {
    "invalid-json": ('{"model.confidence_threshold": 0.9',
                     "-o: not valid JSON: Expecting ',' delimiter (column 35)"),
    "nan": ('{"model.confidence_threshold": NaN}',
            "-o: model.confidence_threshold is NaN, which is not a finite number"),
    "string": ('{"model.confidence_threshold": "0.9"}',
               "-o: model.confidence_threshold must be a number in [0, 1], got '0.9'; write 0.9 without "
               "quotes"),
    "overflow": ('{"model.confidence_threshold": 1e309}',
                 "-o: model.confidence_threshold is 1e309, which is not a finite number"),
}


def command(name: str, archive: Path, tmp_path: Path, *extra: str) -> list[str]:
    """The command line of `name` on `archive` (predict, evaluate, calibrate, sweep, cascade)."""
    return {
        "train": ["train", "training_config/sst2_minilm.jsonnet", "-s", str(tmp_path / "run")],
        "evaluate": ["evaluate", str(archive), str(TEST)],
        "predict": ["predict", str(archive), str(TEST)],
        "calibrate": ["calibrate", str(archive), str(TEST), "--output-file", str(tmp_path / "c.tar.gz")],
        "sweep": ["sweep", str(archive), str(TEST), "--output-dir", str(tmp_path / "sweep")],
        "cascade": ["cascade", str(archive), str(archive), "--output-file", str(tmp_path / "x.tar.gz")],
    }[name] + ["--include-package", "sledge", *extra]


@pytest.mark.parametrize("case", OVERRIDES)
@pytest.mark.parametrize("name", ["train", "evaluate", "predict"])
def test_bad_overrides_are_one_line_before_anything_loads(name, case, trained_run, tmp_path, no_model_loads):
    text, expected = OVERRIDES[case]
    with pytest.raises(SledgeError) as error:
        allennlp(*command(name, trained_run["archive"], tmp_path, "-o", text))
    assert one_line(error.value).startswith(expected)


def test_jsonnet_overrides_that_are_not_json_still_work():
    from sledge.commands.checks import overrides_dict

    jsonnet = "{model: {confidence_threshold: 0.5 + 0.4}}"
    assert overrides_dict(jsonnet) == {"model": {"confidence_threshold": 0.9}}


def test_a_string_where_a_number_belongs_elsewhere_in_the_config_names_the_parameter(tiny_bert, tmp_path):
    overrides = {"dataset_reader.transformer_model": tiny_bert, "model.transformer_model": tiny_bert,
                 "train_data_path": str(TEST), "validation_data_path": str(TEST), "test_data_path": str(TEST),
                 "model.dropout": "0.1"}
    with pytest.raises(SledgeError) as error:
        allennlp(*command("train", Path(), tmp_path, "-o", json.dumps(overrides)))
    assert one_line(error.value) == (
        "dropout (of SledgeClassifier) must be a number, got '0.1' (str) in the config or -o; write 0.1 "
        "without quotes"
    )


# ---------------------------------------------------------------------------------------------------
# --cuda-device 0 on a machine without CUDA: checked first

CUDA_LINE = "--cuda-device 0: this machine has no CUDA device (torch.cuda.is_available() is False)"


@pytest.mark.parametrize("name", ["evaluate", "predict", "calibrate", "sweep"])
def test_a_cuda_device_without_cuda_is_one_line_before_the_model_loads(
    name, trained_run, tmp_path, no_cuda, no_model_loads
):
    with pytest.raises(SledgeError) as error:
        allennlp(*command(name, trained_run["archive"], tmp_path, "--cuda-device", "0"))
    assert one_line(error.value).startswith(CUDA_LINE)


def test_train_on_a_cuda_device_without_cuda_is_one_line_before_anything_loads(
    tmp_path, no_cuda, no_model_loads
):
    with pytest.raises(SledgeError) as error:
        allennlp(*command("train", Path(), tmp_path, "-o", '{"trainer.cuda_device": 0}'))
    assert one_line(error.value).startswith("trainer.cuda_device 0: this machine has no CUDA device")


# ---------------------------------------------------------------------------------------------------
# Archives: a folder without config.json, an unknown model type, a vocabulary that does not fit

ARCHIVE_COMMANDS = ["evaluate", "predict", "calibrate", "sweep", "cascade"]


@pytest.mark.parametrize("name", ARCHIVE_COMMANDS)
def test_a_folder_without_config_is_one_line_before_anything_loads(name, broken, tmp_path, no_model_loads):
    with pytest.raises(SledgeError) as error:
        allennlp(*command(name, broken["folder"], tmp_path))
    assert one_line(error.value).endswith(
        f"{broken['folder']} is a folder without config.json; give a model.tar.gz, or the serialization "
        "folder of a training run (-s)"
    )


@pytest.mark.parametrize("name", ARCHIVE_COMMANDS)
def test_an_unknown_model_type_is_one_line_before_anything_loads(name, broken, tmp_path, no_model_loads):
    with pytest.raises(SledgeError) as error:
        allennlp(*command(name, broken["unknown"], tmp_path))
    assert one_line(error.value).startswith(
        f"{broken['unknown']}: its config.json names the model type 'sledge_nope', which is not registered"
    )


@pytest.mark.parametrize("name", ARCHIVE_COMMANDS)
def test_a_vocabulary_that_does_not_fit_the_weights_is_one_line(name, broken, tmp_path):
    with pytest.raises(SledgeError) as error:
        allennlp(*command(name, broken["mismatch"], tmp_path))
    message = one_line(error.value)
    assert message.startswith(f"{broken['mismatch']} (member weights.th): the weights do not fit the model")
    assert "core.exits.0.classifier.weight has shape [2, " in message
    assert "(vocabulary/labels.txt has 3 labels)" in message


def test_serve_checks_the_archive_before_it_starts(broken, no_model_loads):
    from sledge.commands.serve import serve_from_args

    for case, expected in (("folder", "is a folder without config.json"),
                           ("unknown", "names the model type 'sledge_nope', which is not registered")):
        with pytest.raises(SledgeError, match=expected):
            serve_from_args(serve_args(broken[case], host="127.0.0.1", port=1))


def test_serve_loading_weights_that_do_not_fit_is_one_line(broken):
    with pytest.raises(SledgeError) as error:
        load(serve_args(broken["mismatch"]))
    assert "the weights do not fit the model" in one_line(error.value)


# ---------------------------------------------------------------------------------------------------
# train: a backbone that cannot be loaded, a local data path that does not exist


def test_a_hubless_paper_config_names_the_backbone_and_the_config_that_works_offline(
    tmp_path, monkeypatch, no_model_loads
):
    monkeypatch.setattr(encoder, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(SledgeError) as error:
        allennlp("train", "training_config/agnews.jsonnet", "-s", str(tmp_path / "run"), "--include-package",
                 "sledge")
    assert one_line(error.value) == (
        "backbone 'bert-large-uncased' (dataset_reader.transformer_model of training_config/agnews.jsonnet) "
        "could not be loaded: it is not a local folder, not in the HuggingFace cache, and the hub "
        "(https://huggingface.co) cannot be reached; training_config/agnews_minilm.jsonnet is the CPU-sized "
        "config that works offline (all-MiniLM-L6-v2, which ships with sledge)"
    )


def test_an_unknown_backbone_name_on_a_reachable_hub_is_one_line(monkeypatch):
    def unknown(name, **kwargs):
        raise OSError(f"{name} is not a local folder and is not a valid model identifier listed on "
                      "'https://huggingface.co/models'\nIf this is a private repository, ...")

    monkeypatch.setattr(encoder, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(encoder.AutoConfig, "from_pretrained", unknown)
    with pytest.raises(SledgeError) as error:
        encoder.resolve_backbone("no-such-org/no-such-model")
    assert one_line(error.value).startswith(
        "backbone 'no-such-org/no-such-model' could not be loaded (no-such-org/no-such-model is not a local "
        "folder and is not a valid model identifier"
    )
    assert "training_config/*_minilm.jsonnet" in str(error.value)


def test_a_local_data_path_that_does_not_exist_names_the_dataset_the_config_and_the_release(
    tmp_path, no_model_loads
):
    overrides = {"train_data_path": "data/ag_news/train.csv#train"}
    with pytest.raises(SledgeError) as error:
        allennlp("train", "training_config/agnews_minilm.jsonnet", "-s", str(tmp_path / "run"),
                 "--include-package", "sledge", "-o", json.dumps(overrides))
    assert one_line(error.value) == (
        "train_data_path data/ag_news/train.csv#train (AG News, training_config/agnews_minilm.jsonnet) does "
        "not exist; the config's default, https://drive.google.com/uc?export=download&id="
        "0Bz8a_Dbh9QhbUDNpeUdjb0wxRms, is the public release (leave the -o out)"
    )


def test_the_excepthook_prints_one_line_for_sledge_and_configuration_errors(capsys, monkeypatch):
    from allennlp.common.checks import ConfigurationError

    shown = []
    hook = patches._excepthook(lambda *args: shown.append(args))
    monkeypatch.setattr(sys, "argv", ["allennlp", "train", "x.jsonnet"])
    monkeypatch.delenv("SLEDGE_TRACEBACK", raising=False)
    hook(ConfigurationError, ConfigurationError("'sledgee' is not a registered name\nfor 'Model'."), None)
    expected = "allennlp train: error: 'sledgee' is not a registered name for 'Model'.\n"
    assert capsys.readouterr().err == expected
    hook(KeyError, KeyError("a bug"), None)
    assert shown and shown[0][0] is KeyError  # anything else keeps its traceback
    monkeypatch.setenv("SLEDGE_TRACEBACK", "1")
    hook(SledgeError, SledgeError("x"), None)
    assert len(shown) == 2


# ---------------------------------------------------------------------------------------------------
# What the user sees, in real processes: the one line, no traceback, exit status 1


def run_allennlp(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ALLENNLP, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def the_error(result: subprocess.CompletedProcess, name: str) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"allennlp {name}: error:")]
    assert len(errors) == 1
    return errors[0]


def test_a_hubless_allennlp_train_of_the_paper_config_ends_in_one_line(tmp_path):
    result = run_allennlp("train", "training_config/agnews.jsonnet", "-s", str(tmp_path / "ag"),
                          "--include-package", "sledge", env={"HF_HUB_OFFLINE": "1"})
    line = the_error(result, "train")
    assert ("backbone 'bert-large-uncased' (dataset_reader.transformer_model of "
            "training_config/agnews.jsonnet) could not be loaded") in line
    assert "training_config/agnews_minilm.jsonnet is the CPU-sized config that works offline" in line
    assert not (tmp_path / "ag").exists()


def test_allennlp_predict_with_nan_in_the_overrides_ends_in_one_line(trained_run):
    result = run_allennlp("predict", str(trained_run["archive"]), str(TEST), "--include-package", "sledge",
                          "-o", '{"model.confidence_threshold": NaN}')
    assert "is NaN, which is not a finite number" in the_error(result, "predict")


def test_allennlp_serve_of_an_archive_whose_weights_do_not_fit_exits_with_one_line(broken):
    result = run_allennlp("serve", str(broken["mismatch"]), "--port", "0")
    line = the_error(result, "serve")
    assert "the weights do not fit the model" in line
    assert result.stderr.strip().splitlines()[-1] == line, "the error is the last line, after uvicorn's"


def test_tiny_bert_is_still_built_without_the_hub(tmp_path):
    """The tests' own backbones are local folders: resolving them never asks the hub."""
    path = build_tiny_bert(tmp_path / "tiny")
    assert encoder.resolve_backbone(str(path)) == str(path)
    with pytest.raises(SledgeError, match="a folder without config.json"):
        encoder.resolve_backbone(str(tmp_path))
