"""Bad inputs of every command: safe archives, nothing lost, and errors that name the file, line and key."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from allennlp.models.archival import load_archive

import sledge.commands.common
from conftest import FIXTURES, ROOT, TEST, TRAIN, allennlp, build_tiny_bert
from sledge.dataset_readers import AgNewsReader, RteReader, SstSentenceReader
from sledge.errors import ArchiveError, SledgeError
from sledge.files import check_output_dir, check_output_file, write_atomically
from sledge.models.sledge_classifier import save_backbone
from sledge.nn.encoder import LayerwiseEncoder
from sledge.predictors import SledgePredictor

SENTENCES = [{"sentence": line.split(" ", 1)[1]} for line in TEST.read_text().splitlines()]


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # AllenNLP finds the plugin subcommands through ./.allennlp_plugins


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def predict(archive, source: Path, output: Path, *options: str) -> list[dict]:
    allennlp("predict", str(archive), str(source), "--include-package", "sledge", "--silent",
             "--output-file", str(output), *options)
    return [json.loads(line) for line in output.read_text().splitlines()]


def rebuilt(archive: Path, target: Path, add: list[tarfile.TarInfo] = (), data: dict | None = None,
            replace: dict[str, bytes] | None = None) -> Path:
    """A copy of `archive` with members replaced and extra (possibly unsafe) members added."""
    replace = replace or {}
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as tar:
        for member in source.getmembers():
            if member.name in replace:
                member.size = len(replace[member.name])
                tar.addfile(member, io.BytesIO(replace[member.name]))
            else:
                tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for member in add:
            tar.addfile(member, io.BytesIO((data or {}).get(member.name, b"")) if member.isfile() else None)
    return target


def file_member(name: str, size: int = 5) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size = size
    return member


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


# ---------------------------------------------------------------------------------------------------
# Security: archives


@pytest.mark.parametrize(
    "member,why",
    [
        (file_member("../escaped.txt"), "outside the folder"),
        (file_member("backbone/../../escaped.txt"), "outside the folder"),
        (file_member("/tmp/sledge-absolute-escape.txt"), "outside the folder"),
        (link_member("vocabulary/evil", "/etc/passwd", tarfile.SYMTYPE), "is a link"),
        (link_member("hard", "/etc/passwd", tarfile.LNKTYPE), "is a link"),
        (link_member("fifo", "", tarfile.FIFOTYPE), "not a file or a folder"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo"],
)
def test_an_unsafe_member_is_refused_before_anything_is_written_outside(
    trained_run, tmp_path, temp_dir, member, why
):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    archive = rebuilt(trained_run["archive"], work / "evil.tar.gz", add=[member],
                      data={member.name: b"owned"})
    source = write_lines(tmp_path / "in.jsonl", SENTENCES[:2])
    with pytest.raises(ArchiveError, match=why) as caught:
        predict(archive, source, tmp_path / "out.jsonl")
    assert str(archive) in str(caught.value)
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/sledge-absolute-escape.txt").exists()
    assert not (tmp_path / "out.jsonl").exists()
    assert list(temp_dir.iterdir()) == []  # the partly extracted folder is gone


class Payload:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_in_the_weights_never_runs_even_with_the_environment_override(
    trained_run, tmp_path, temp_dir, monkeypatch
):
    marker = tmp_path / "the-payload-ran"
    buffer = io.BytesIO()
    torch.save({"core.temperatures": Payload(marker)}, buffer)
    archive = rebuilt(trained_run["archive"], tmp_path / "pickled.tar.gz",
                      replace={"weights.th": buffer.getvalue()})
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ArchiveError, match="refused to load the weights") as caught:
        load_archive(str(archive))
    assert f"{archive} (member weights.th)" in str(caught.value)
    assert not marker.exists()
    with pytest.raises(ArchiveError, match="refused to load the weights"):
        predict(archive, write_lines(tmp_path / "in.jsonl", SENTENCES[:1]), tmp_path / "out.jsonl")
    assert not marker.exists()
    assert list(temp_dir.iterdir()) == []
    # The payload is real: a plain torch.load under that environment (AllenNLP's own call) runs it.
    with tarfile.open(archive) as tar:
        tar.extract("weights.th", tmp_path, filter="data")
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"):
        torch.load(tmp_path / "weights.th")
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "not-gzip", "no-config"])
def test_a_corrupt_archive_is_an_error_naming_it_and_leaves_no_temporary_folder(
    trained_run, tmp_path, temp_dir, damage
):
    archive = tmp_path / f"{damage}.tar.gz"
    data = trained_run["archive"].read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "not-gzip":
        archive.write_bytes(b"this is not an archive\n" * 100)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.addfile(file_member("weights.th", 5), io.BytesIO(b"12345"))
    expected = "no config.json" if damage == "no-config" else "not a readable model archive"
    for command in (["predict", str(archive), str(TEST)],
                    ["evaluate", str(archive), str(TEST)],
                    ["calibrate", str(archive), str(TEST), "--output-file", str(tmp_path / "c.tar.gz")],
                    ["sweep", str(archive), str(TEST), "--output-dir", str(tmp_path / "sweep")]):
        with pytest.raises(ArchiveError, match=expected) as caught:
            allennlp(*command, "--include-package", "sledge")
        assert str(archive) in str(caught.value)
        assert list(temp_dir.iterdir()) == []
    assert not (tmp_path / "c.tar.gz").exists() and not (tmp_path / "sweep").exists()


def test_a_missing_archive_is_an_error_before_anything_is_read(tmp_path):
    with pytest.raises(SledgeError, match=r"archive_file: .*nowhere.tar.gz does not exist"):
        allennlp("predict", str(tmp_path / "nowhere.tar.gz"), str(TEST), "--include-package", "sledge")


# ---------------------------------------------------------------------------------------------------
# predict: nothing lost, every bad line named


BAD_LINES = [
    ('{"sentence": "a good film" ', r"line 3: not valid JSON: Expecting ',' delimiter \(column 28\)"),
    (b'{"sentence": "caf\xe9"}', r"line 3: not UTF-8 text \(byte 18 of the line\)"),
    ({"sentence": 123}, r"line 3: key 'sentence' must be a string, found int"),
    ({"sentence": None}, r"line 3: key 'sentence' must be a string, found null"),
    ({"sentence": "   "}, r"line 3: key 'sentence' is empty"),
    (["a"], r"line 3: expected a JSON object, found a list"),
    ({"text": "a good film"}, r"line 3: a sledge input needs the key 'sentence'.*got keys \['text'\]"),
    ({"premise": "a", "hypothesis": "b"}, r"line 3: key 'premise': this model reads single texts"),
    ({"sentence": "a", "premise": "b"}, r"line 3: give either 'sentence', or 'premise' and 'hypothesis'"),
]


@pytest.mark.parametrize("bad,message", BAD_LINES, ids=[f"bad{i}" for i in range(len(BAD_LINES))])
@pytest.mark.parametrize("batch_size", ["1", "8"])
def test_a_bad_input_line_is_named_and_nothing_is_predicted_or_lost(
    trained_run, tmp_path, bad, message, batch_size
):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(line).encode() for line in SENTENCES[:2]] + [
        bad if isinstance(bad, bytes) else (bad if isinstance(bad, str) else json.dumps(bad)).encode()
    ] + [json.dumps(line).encode() for line in SENTENCES[2:5]]
    source.write_bytes(b"\n".join(lines) + b"\n")
    output = tmp_path / "out.jsonl"
    output.write_text("earlier results\n")
    with pytest.raises(SledgeError, match=f"^{source}, {message}"):
        predict(trained_run["archive"], source, output, "--batch-size", batch_size)
    assert output.read_text() == "earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_every_bad_line_is_listed_in_one_error(trained_run, tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [SENTENCES[0], {"sentence": 1}, SENTENCES[1], "{", "", ["x"]])
    with pytest.raises(SledgeError) as caught:
        predict(trained_run["archive"], source, tmp_path / "out.jsonl", "--batch-size", "8")
    text = str(caught.value)
    assert text.startswith(f"{source}: 3 bad lines, nothing was predicted:")
    for expected in ("line 2: key 'sentence'", "line 4: not valid JSON", "line 6: expected a JSON object"):
        assert expected in text
    assert not (tmp_path / "out.jsonl").exists()


def test_a_missing_or_empty_input_leaves_an_existing_output_as_it_was(trained_run, tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text("earlier results\n")
    with pytest.raises(SledgeError, match=r"input_file: .*missing.jsonl does not exist"):
        predict(trained_run["archive"], tmp_path / "missing.jsonl", output)
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(SledgeError, match=r"empty.jsonl: no input lines \(the file is empty\)"):
        predict(trained_run["archive"], empty, output)
    assert output.read_text() == "earlier results\n"


def test_predict_replaces_an_output_only_with_a_complete_one(trained_run, tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text("earlier results\n")
    rows = predict(trained_run["archive"], write_lines(tmp_path / "in.jsonl", SENTENCES), output,
                   "--batch-size", "8")
    assert len(rows) == len(SENTENCES)
    assert oct(output.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    nested = tmp_path / "new" / "folder" / "out.jsonl"
    assert predict(trained_run["archive"], tmp_path / "in.jsonl", nested, "--batch-size", "8") == rows


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("options,message", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--output-file", "{tmp}/in.jsonl"], "is the input file"),
    (["--output-file", "{tmp}/in.jsonl/x.jsonl"], "is not a folder"),
    (["--output-file", "{tmp}"], "is a folder, not a file"),
])
def test_predict_options_are_checked_before_the_archive_is_loaded(
    trained_run, tmp_path, monkeypatch, options, message
):
    source = write_lines(tmp_path / "in.jsonl", SENTENCES[:2])
    monkeypatch.setattr("allennlp.commands.predict.load_archive", lambda *a, **k: pytest.fail("loaded"))
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    args = ["predict", str(trained_run["archive"]), str(source), "--include-package", "sledge", "--silent"]
    if "--output-file" not in options:
        args += ["--output-file", str(tmp_path / "out.jsonl")]
    with pytest.raises(SledgeError, match=message):
        allennlp(*args, *options)
    assert source.read_text().count("\n") == 2


def test_the_predictor_checks_pairs_and_single_texts_against_its_reader(trained_run, tiny_bert):
    archive = load_archive(str(trained_run["archive"]))
    single = SledgePredictor(archive.model, SstSentenceReader(tiny_bert))
    pairs = SledgePredictor(archive.model, RteReader(tiny_bert))
    assert single.check_json({"sentence": "good", "id": 7}) == ("good", None)
    assert pairs.check_json({"premise": "a", "hypothesis": "b"}) == ("a", "b")
    with pytest.raises(SledgeError, match="key 'sentence': this model reads text pairs"):
        pairs.check_json({"sentence": "good"})
    with pytest.raises(SledgeError, match="missing key 'hypothesis'"):
        pairs.check_json({"premise": "a"})
    with pytest.raises(SledgeError, match="key 'hypothesis' is empty"):
        pairs.check_json({"premise": "a", "hypothesis": ""})
    with pytest.raises(SledgeError, match="key 'hypothesis': this model reads single texts"):
        single.check_json({"hypothesis": "a"})
    with pytest.raises(SledgeError, match="key 'sentence' is empty"):
        single.predict_json({"sentence": ""})


def test_two_predicts_writing_the_same_file_at_once_each_leave_a_complete_output(trained_run, tmp_path):
    """Real processes, at the same time; a third, failing one must not harm the file either."""
    inputs = {
        "a": write_lines(tmp_path / "a.jsonl", SENTENCES[:15]),
        "b": write_lines(tmp_path / "b.jsonl", SENTENCES[5:]),
        "bad": write_lines(tmp_path / "bad.jsonl", SENTENCES[:3] + [{"sentence": None}]),
    }
    output = tmp_path / "out.jsonl"
    allennlp_bin = str(Path(sys.executable).parent / "allennlp")
    processes = {
        name: subprocess.Popen(
            [allennlp_bin, "predict", str(trained_run["archive"]), str(path), "--include-package", "sledge",
             "--silent", "--output-file", str(output), "--batch-size", "4"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, path in inputs.items()
    }
    results = {name: (p.wait(timeout=300), p.stderr.read()) for name, p in processes.items()}
    assert results["a"][0] == 0 and results["b"][0] == 0
    code, stderr = results["bad"]
    assert code == 1
    message = f"{inputs['bad']}, line 4: key 'sentence' must be a string, found null"
    assert f"allennlp predict: error: {message}" in stderr
    assert "Traceback" not in stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) in (15, len(SENTENCES) - 5)  # one run's whole output, never a mix or a part
    single = {
        name: predict(trained_run["archive"], inputs[name], tmp_path / f"{name}.out", "--batch-size", "4")
        for name in "ab"
    }
    assert rows in (single["a"], single["b"])
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".partial")]


# ---------------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_on_a_missing_file_says_so_even_with_a_batch_size(trained_run, tmp_path):
    with pytest.raises(SledgeError, match=r"input_file: .*nothing.txt does not exist"):
        allennlp("evaluate", str(trained_run["archive"]), str(tmp_path / "nothing.txt"), "--batch-size", "8",
                 "--include-package", "sledge")


def test_evaluate_on_an_empty_file_is_an_error_and_writes_no_metrics(trained_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    output = tmp_path / "metrics.json"
    output.write_text("{}")
    with pytest.raises(SledgeError, match=r"empty.txt: no instances in it \(the file is empty\)"):
        allennlp("evaluate", str(trained_run["archive"]), str(empty), "--include-package", "sledge",
                 "--output-file", str(output))
    assert output.read_text() == "{}"


def test_evaluate_names_every_label_the_model_never_saw_with_its_lines(trained_run, tmp_path):
    data = tmp_path / "labels.txt"
    data.write_text("1 a good film .\n7 a bad film .\n0 fine .\n9 odd .\n7 again .\n")
    with pytest.raises(SledgeError) as caught:
        allennlp("evaluate", str(trained_run["archive"]), str(data), "--include-package", "sledge")
    assert str(caught.value) == (
        f"{data}: 3 instance(s) have labels the model was not trained on: '7' (line 2, line 5); "
        "'9' (line 4). The model knows: 0, 1"
    )


def test_evaluate_writes_its_outputs_only_when_it_succeeds(trained_run, tmp_path):
    metrics, predictions = tmp_path / "metrics.json", tmp_path / "predictions.jsonl"
    allennlp("evaluate", str(trained_run["archive"]), str(TEST), "--include-package", "sledge",
             "--output-file", str(metrics), "--predictions-output-file", str(predictions))
    assert "accuracy" in json.loads(metrics.read_text())
    assert len(predictions.read_text().splitlines()) >= 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json", "predictions.jsonl"]
    with pytest.raises(SledgeError, match="--output-file: .* is not a folder"):
        allennlp("evaluate", str(trained_run["archive"]), str(TEST), "--include-package", "sledge",
                 "--output-file", str(metrics / "inside.json"))


# ---------------------------------------------------------------------------------------------------
# calibrate, sweep, difficulty


def test_calibrate_never_overwrites_its_input(trained_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    source = run / "calibrated.tar.gz"
    shutil.copyfile(trained_run["archive"], source)
    before = source.read_bytes()
    with pytest.raises(SledgeError, match="would be the input archive, which calibrate never overwrites"):
        allennlp("calibrate", str(source), str(TEST))
    with pytest.raises(SledgeError, match="would be the input archive"):
        allennlp("calibrate", str(source), str(TEST), "--output-file", str(run / "." / "calibrated.tar.gz"))
    assert source.read_bytes() == before
    assert sorted(path.name for path in run.iterdir()) == ["calibrated.tar.gz"]


def test_calibrate_and_sweep_take_a_serialization_folder(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run["run"], run, ignore=shutil.ignore_patterns("model.tar.gz"))
    allennlp("calibrate", str(run), str(TEST))
    calibrated = run / "calibrated.tar.gz"
    with tarfile.open(calibrated) as tar:
        names = set(tar.getnames())
    assert {"config.json", "weights.th", "calibration.json", "vocabulary/labels.txt",
            "backbone/config.json"} <= names
    source = write_lines(tmp_path / "in.jsonl", SENTENCES)
    assert predict(calibrated, source, tmp_path / "a.jsonl") and predict(run, source, tmp_path / "b.jsonl")
    allennlp("sweep", str(run), str(TEST), "--output-dir", str(tmp_path / "sweep"), "--repeats", "1",
             "--thresholds", "0", "1", "--timing-instances", "3")
    assert (tmp_path / "sweep" / "sweep.json").is_file()


@pytest.mark.parametrize("option,value,message", [
    ("--batch-size", "0", "argument --batch-size: must be an integer >= 1, got 0"),
    ("--batch-size", "-1", "argument --batch-size: must be an integer >= 1, got -1"),
    ("--repeats", "0", "argument --repeats: must be an integer >= 1, got 0"),
    ("--timing-instances", "0", "argument --timing-instances: must be an integer >= 1, got 0"),
    ("--thresholds", "1.5", "argument --thresholds: must lie in [0, 1], got 1.5"),
    ("--thresholds", "x", "argument --thresholds: must be a number in [0, 1], got 'x'"),
])
def test_sweep_refuses_a_bad_option_naming_it(trained_run, tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as caught:
        allennlp("sweep", str(trained_run["archive"]), str(TEST), "--output-dir", str(tmp_path / "s"),
                 option, value)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "s").exists()


def test_calibrate_refuses_a_bad_batch_size(trained_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        allennlp("calibrate", str(trained_run["archive"]), str(TEST), "--batch-size", "0")
    assert "argument --batch-size: must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,message", [
    ("--max-wait-ms", "-1", "argument --max-wait-ms: must be a finite number >= 0, got -1"),
    ("--deadline-ms", "nan", "argument --deadline-ms: must be a finite number >= 0, got nan"),
    ("--deadline-ms", "soon", "argument --deadline-ms: must be a finite number >= 0, got 'soon'"),
    ("--max-skips", "0", "argument --max-skips: must be an integer >= 1, got 0"),
])
def test_serve_refuses_a_bad_wait_naming_it(trained_run, capsys, option, value, message):
    with pytest.raises(SystemExit) as caught:  # refused by argparse, before the model is loaded
        allennlp("serve", str(trained_run["archive"]), option, value)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["calibrate", "sweep", "difficulty"])
def test_an_unwritable_output_is_refused_before_any_computation(trained_run, tmp_path, monkeypatch, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(sledge.commands.common, "load_archive", lambda *a, **k: pytest.fail("computed"))
    option = "--output-file" if command == "calibrate" else "--output-dir"
    with pytest.raises(SledgeError, match=f"{option}: cannot (create|write) .*a-file"):
        allennlp(command, str(trained_run["archive"]), str(TEST), option, str(blocker / "out" / "x.tar.gz"))
    with pytest.raises(SledgeError, match=r"input_file: .*absent.txt does not exist"):
        allennlp(command, str(trained_run["archive"]), str(tmp_path / "absent.txt"), option,
                 str(tmp_path / "o"))
    if command != "calibrate":
        with pytest.raises(SledgeError, match=f"{option}: .*a-file exists and is not a folder"):
            allennlp(command, str(trained_run["archive"]), str(TEST), option, str(blocker))


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_a_folder_nobody_can_write_to_is_refused_even_for_root(tmp_path):
    # os.access says yes to root everywhere; /proc takes no new file, whoever asks
    with pytest.raises(SledgeError, match=r"--output-file: cannot write /proc/cal.tar.gz: the folder /proc"):
        check_output_file("/proc/cal.tar.gz", "--output-file")
    with pytest.raises(SledgeError, match=r"--output-dir: cannot write /proc/sweep: the folder /proc"):
        check_output_dir("/proc/sweep", "--output-dir")
    check_output_dir(tmp_path, "--output-dir")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_a_name_too_long_is_refused_and_one_near_the_limit_is_written(tmp_path):
    with pytest.raises(SledgeError, match=r"--output-file: .*the name b{40}\.\.\. is longer than 255 bytes"):
        check_output_file(tmp_path / ("b" * 300), "--output-file")
    near = tmp_path / ("b" * 243 + ".tar.gz")  # 250 bytes: the temporary name beside it must fit too
    check_output_file(near, "--output-file")
    write_atomically(near, b"x")
    assert near.read_bytes() == b"x" and os.listdir(tmp_path) == [near.name]


def test_an_output_that_is_a_link_is_written_through_it(tmp_path):
    (tmp_path / "real.jsonl").write_text("old\n")
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    write_atomically(tmp_path / "link.jsonl", b"new\n")
    assert (tmp_path / "link.jsonl").is_symlink() and (tmp_path / "real.jsonl").read_text() == "new\n"


def test_a_sweep_baseline_that_does_not_exist_is_named_before_any_computation(
    trained_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(sledge.commands.common, "load_archive", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(SledgeError, match=r"--baseline standard: .*gone.tar.gz does not exist"):
        allennlp("sweep", str(trained_run["archive"]), str(TEST), "--output-dir", str(tmp_path / "s"),
                 "--baseline", f"standard={tmp_path / 'gone.tar.gz'}")


# ---------------------------------------------------------------------------------------------------
# A failure midway: the third batch raises; the earlier outputs are left byte for byte, nothing partial


class Injected(RuntimeError):
    """The failure put into the third batch."""


class Batches:
    """
    Records the batch size of every pass of a sledge model (each batch, in every command, starts with
    the encoder's `embed`); once `fail_at` is set, that pass raises `Injected`, after recording what the
    output folder holds at that moment (so a test can see what a run had written before it failed).
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_at: int | None = None
        self.folder = folder
        self.at_failure: dict[str, int] = {}

    def embed(self, original):
        def embed(encoder, input_ids, *args, **kwargs):
            self.sizes.append(int(input_ids.size(0)))
            if self.fail_at is not None and len(self.sizes) == self.fail_at:
                self.at_failure = {path.name: path.stat().st_size for path in self.folder.rglob("*")}
                raise Injected(f"batch {self.fail_at} fails")
            return original(encoder, input_ids, *args, **kwargs)

        return embed


@pytest.fixture
def batches(monkeypatch, tmp_path) -> Batches:
    recorder = Batches(tmp_path / "out")
    monkeypatch.setattr(LayerwiseEncoder, "embed", recorder.embed(LayerwiseEncoder.embed))
    return recorder


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (names relative to it, hidden ones included) and its bytes."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {str(path.relative_to(folder)): path.read_bytes() for path in files}


def midway_commands(archive: Path, tmp_path: Path, command: str) -> tuple[list[str], list[str]]:
    """
    The arguments of `command` writing to tmp_path / "out": those of an earlier run, then those of the
    run that fails. The two differ (in data or settings) so their outputs differ: an output rewritten
    in place with the same bytes could not be told from one left alone.
    """
    out = tmp_path / "out"
    source = write_lines(tmp_path / "in.jsonl", SENTENCES)
    earlier_source = write_lines(tmp_path / "earlier.jsonl", SENTENCES[:20])
    later = {
        "predict": ["predict", str(archive), str(source), "--include-package", "sledge", "--silent",
                    "--batch-size", "8", "--output-file", str(out / "predictions.jsonl")],
        "evaluate": ["evaluate", str(archive), str(TEST), "--include-package", "sledge", "--batch-size", "8",
                     "--output-file", str(out / "metrics.json"),
                     "--predictions-output-file", str(out / "predictions.jsonl")],
        "calibrate": ["calibrate", str(archive), str(TEST), "--batch-size", "8",
                      "--output-file", str(out / "calibrated.tar.gz")],
        "sweep": ["sweep", str(archive), str(TEST), "--output-dir", str(out), "--repeats", "1",
                  "--timing-instances", "6", "--batch-size", "4", "--thresholds", "0", "0.8", "1"],
        "difficulty": ["difficulty", str(archive), str(TEST), "--output-dir", str(out), "--batch-size", "8"],
    }[command]
    earlier = {
        "predict": [str(earlier_source) if value == str(source) else value for value in later],
        "evaluate": [*later, "-o", json.dumps({"model.confidence_threshold": 0.8})],
        "calibrate": [str(TRAIN) if value == str(TEST) else value for value in later],
        "sweep": [*later[:-3], "0", "1"],
        "difficulty": [*later, "--high", "0.6"],
    }[command]
    return earlier, later


COMMANDS = ["predict", "evaluate", "calibrate", "sweep", "difficulty"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_that_fails_at_its_third_batch_leaves_the_earlier_outputs_byte_for_byte(
    trained_run, tmp_path, batches, command
):
    earlier, arguments = midway_commands(trained_run["archive"], tmp_path, command)
    allennlp(*arguments)  # a complete run: its outputs differ from the earlier run's
    complete = snapshot(tmp_path / "out")
    assert len(batches.sizes) >= 3, f"{command} makes {len(batches.sizes)} passes: none fails at the third"
    allennlp(*earlier)
    before = snapshot(tmp_path / "out")
    assert before.keys() == complete.keys() and not [name for name in before if name.startswith(".")]
    assert all(before[name] != complete[name] for name in before if not name.endswith(".png"))
    batches.sizes.clear()
    # evaluate runs each batch twice (the early exit, then every exit for the metrics): its third
    # batch begins at the fifth pass
    batches.fail_at = 5 if command == "evaluate" else 3
    with pytest.raises(Injected):
        allennlp(*arguments)
    assert len(batches.sizes) == batches.fail_at  # it stopped there
    assert snapshot(tmp_path / "out") == before  # byte for byte, and no partial file left beside them
    if command == "predict":  # it failed while writing its output (to a temporary name beside it)
        assert [name for name in batches.at_failure if name.endswith(".partial")]


@pytest.mark.parametrize("command", ["calibrate", "sweep", "difficulty"])
def test_a_run_that_fails_while_writing_its_outputs_leaves_the_earlier_ones_byte_for_byte(
    trained_run, tmp_path, monkeypatch, command
):
    """calibrate, sweep and difficulty write only once everything is computed: here the failure comes
    while they write (the archive's third member; a folder's second file)."""
    earlier, arguments = midway_commands(trained_run["archive"], tmp_path, command)
    allennlp(*earlier)
    before = snapshot(tmp_path / "out")
    calls = []

    def failing(original, at: int):
        def write(*args, **kwargs):
            calls.append(args[1:2])
            if len(calls) == at:
                raise Injected(f"write {at} fails")
            return original(*args, **kwargs)

        return write

    if command == "calibrate":
        monkeypatch.setattr(tarfile.TarFile, "addfile", failing(tarfile.TarFile.addfile, 3))
    else:
        monkeypatch.setattr(Path, "write_bytes", failing(Path.write_bytes, 2))
    with pytest.raises(Injected):
        allennlp(*arguments)
    assert len(calls) >= 2
    assert snapshot(tmp_path / "out") == before


def test_evaluate_runs_at_the_batch_size_it_is_given(trained_run, tmp_path, batches):
    metrics = {}
    for size in ("3", None):
        batches.sizes.clear()
        output = tmp_path / f"metrics-{size}.json"
        allennlp("evaluate", str(trained_run["archive"]), str(TEST), "--include-package", "sledge",
                 "--output-file", str(output), *(["--batch-size", size] if size else []))
        metrics[size] = json.loads(output.read_text())
        # each batch runs twice (the early exit, then every exit for the per-exit metrics), in the
        # order of the config's bucket sampler
        assert batches.sizes[::2] == batches.sizes[1::2]
        if size:  # 32 instances in batches of 3
            assert sorted(batches.sizes[::2]) == [2] + [3] * 10
        else:  # the config's own batch size (the trained run's 4)
            assert batches.sizes[::2] == [4] * 8
    assert metrics["3"]["accuracy"] == metrics[None]["accuracy"]


# ---------------------------------------------------------------------------------------------------
# Data the user brings: a development set split off a training file


def test_the_train_and_dev_selectors_split_a_file_in_two_seeded_parts(tiny_bert):
    reader = AgNewsReader(tiny_bert, dev_fraction=0.3)
    path = FIXTURES / "data" / "ag_news" / "test.csv"
    whole = [instance["metadata"]["text"] for instance in reader.read(str(path))]
    train = [instance["metadata"]["text"] for instance in reader.read(f"{path}#train")]
    dev = [instance["metadata"]["text"] for instance in reader.read(f"{path}#dev")]
    assert len(dev) == round(0.3 * len(whole)) and sorted(train + dev) == sorted(whole)
    assert not set(train) & set(dev)
    assert train == [text for text in whole if text in train]  # file order is kept
    again = AgNewsReader(tiny_bert, dev_fraction=0.3)
    assert [i["metadata"]["text"] for i in again.read(f"{path}#dev")] == dev
    other = AgNewsReader(tiny_bert, dev_fraction=0.3, split_seed=1)
    assert [i["metadata"]["text"] for i in other.read(f"{path}#dev")] != dev
    with pytest.raises(SledgeError, match="unknown split .test. after .#.; use #train, #dev, #fold-k-of-K"):
        list(reader.read(f"{path}#test"))
    with pytest.raises(SledgeError, match=r"dev_fraction must lie in \(0, 1\), got 1.5"):
        AgNewsReader(tiny_bert, dev_fraction=1.5)


def test_the_ag_news_configs_read_the_official_files(tiny_bert):
    from allennlp.common import Params

    for name in ("agnews", "agnews_minilm"):
        raw = Params.from_file(str(ROOT / "training_config" / f"{name}.jsonnet")).as_dict()
        release = "https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbUDNpeUdjb0wxRms"
        assert raw["train_data_path"] == release + "!ag_news_csv/train.csv#train"
        assert raw["validation_data_path"] == release + "!ag_news_csv/train.csv#dev"
        assert raw["test_data_path"] == release + "!ag_news_csv/test.csv"


def test_workers_saving_the_backbone_at_once_leave_one_complete_copy_and_no_partial(tmp_path):
    """Distributed training builds the model in every worker at once: each saves the backbone."""
    source = build_tiny_bert(tmp_path / "tiny-bert")
    run = tmp_path / "run"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: save_backbone(str(source), str(run)), range(4)))  # raises if any failed
    assert sorted(p.name for p in run.iterdir()) == ["backbone"]
    saved = sorted(p.name for p in (run / "backbone").iterdir())
    assert "config.json" in saved and "vocab.txt" in saved
    assert json.loads((run / "backbone" / "config.json").read_text())["num_hidden_layers"] == 4
