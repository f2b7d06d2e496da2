"""The archive loader under hostile archives: bounded extraction, one-line refusals, nothing left behind."""

import ast
import gzip
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import torch
from allennlp.models.archival import load_archive

import sledge.archival
from conftest import ROOT, TEST
from sledge.archival import read_config, read_state_dict
from sledge.errors import ArchiveError, SledgeError
from sledge.patches import ORIGINALS

MIB = 1024 * 1024


def zeros_archive(path: Path, members: dict[str, int], first: dict[str, bytes] | None = None) -> Path:
    """
    A .tar.gz whose members (name -> size) are zeros, written in an instant whatever their size: the gzip
    stream is one compressed MiB of zeros repeated (concatenated gzip members read as one stream), as
    an archive bomb is made. `first`: members with real contents, put before the zeros.
    """
    block = gzip.compress(b"\0" * MIB, 9)
    with open(path, "wb") as out:
        for name, data in (first or {}).items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            padding = b"\0" * (-len(data) % 512)
            out.write(gzip.compress(member.tobuf(format=tarfile.GNU_FORMAT) + data + padding))
        for name, size in members.items():
            member = tarfile.TarInfo(name)
            member.size = size
            out.write(gzip.compress(member.tobuf(format=tarfile.GNU_FORMAT)))
            out.write(block * (size // MIB))
            out.write(gzip.compress(b"\0" * (size % MIB + -size % 512)))
        out.write(gzip.compress(b"\0" * 1024))  # the end of the archive
    return path


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_member_over_the_limit_is_refused_from_its_header_before_anything_is_written(
    tmp_path, temp_dir, monkeypatch
):
    """The original bomb (an archive whose first member is 8 GiB of zeros) at small scale: 300 MB of zeros
    in a 300 KB file against a lowered limit of 100 MB per member."""
    bomb = zeros_archive(tmp_path / "bomb.tar.gz", {"weights.th": 300 * MIB})
    assert bomb.stat().st_size < MIB
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_MEMBER_BYTES", "100M")
    written = []
    monkeypatch.setattr(tarfile.TarFile, "extract", lambda *args, **kwargs: written.append(args))
    with pytest.raises(ArchiveError) as refusal:
        load_archive(str(bomb))
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith(f"{bomb}: refused: member 'weights.th' unpacks to 300.0 MiB")
    assert "the limit is 100.0 MiB per member" in message and "SLEDGE_ARCHIVE_MAX_MEMBER_BYTES" in message
    assert written == [] and list(temp_dir.iterdir()) == []


def test_a_bomb_within_the_size_limits_is_stopped_by_its_compression_ratio(tmp_path, temp_dir, monkeypatch):
    """200 MB of zeros, under every size limit: refused once the ratio has had 1 MiB (lowered from 64
    MiB) to show itself; less than 2 MiB reaches the disk, and the folder is removed."""
    bomb = zeros_archive(tmp_path / "bomb.tar.gz", {"weights.th": 200 * MIB})
    monkeypatch.setattr(sledge.archival, "RATIO_FREE_BYTES", MIB)
    written = []
    copy = tarfile.copyfileobj

    class Counted:  # what tarfile writes into the member's file
        def __init__(self, target):
            self.target = target

        def write(self, data):
            written.append(len(data))
            return self.target.write(data)

    monkeypatch.setattr(tarfile, "copyfileobj", lambda src, target, *rest: copy(src, Counted(target), *rest))
    with pytest.raises(ArchiveError, match=r"compression ratio of \d+ .*the limit is a ratio of 100 .*"
                                           "SLEDGE_ARCHIVE_MAX_RATIO"):
        load_archive(str(bomb))
    assert 0 < sum(written) < 3 * MIB
    assert list(temp_dir.iterdir()) == []


def test_the_total_size_and_the_member_count_are_bounded(tmp_path, temp_dir, monkeypatch):
    three = zeros_archive(tmp_path / "three.tar.gz", {"a": 3 * MIB, "b": 3 * MIB, "c": 3 * MIB})
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_BYTES", "8M")
    with pytest.raises(ArchiveError, match=r"its members unpack to 9.0 MiB or more; the limit is 8.0 MiB "
                                           r"\(.*SLEDGE_ARCHIVE_MAX_BYTES\)"):
        load_archive(str(three))
    assert list(temp_dir.iterdir()) == []
    monkeypatch.delenv("SLEDGE_ARCHIVE_MAX_BYTES")
    many = zeros_archive(tmp_path / "many.tar.gz", {f"f{i}": 0 for i in range(30)})
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_MEMBERS", "20")
    with pytest.raises(ArchiveError, match="it has more than 20 members; the limit is 20 members .*"
                                           "SLEDGE_ARCHIVE_MAX_MEMBERS"):
        load_archive(str(many))
    assert list(temp_dir.iterdir()) == []


def test_reading_the_config_is_bounded_too(tmp_path, monkeypatch):
    """`read_config` (used before loading by evaluate and sledge's commands) walks the archive: a bomb
    before the config is refused by the same limits, not read through."""
    bomb = zeros_archive(tmp_path / "bomb.tar.gz", {"backbone.bin": 300 * MIB})
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_MEMBER_BYTES", "100M")
    with pytest.raises(ArchiveError, match="member 'backbone.bin' unpacks to 300.0 MiB"):
        read_config(bomb)
    with_config = zeros_archive(tmp_path / "ok.tar.gz", {"w": 10}, first={"config.json": b'{"a": 1}'})
    assert read_config(with_config) == {"a": 1}


def test_every_real_archive_passes_the_defaults_and_the_override_lets_a_larger_one_through(
    trained_run, temp_dir, monkeypatch
):
    archive = trained_run["archive"]
    weights = max(member.size for member in tarfile.open(archive).getmembers())
    assert load_archive(str(archive)).model is not None
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_MEMBER_BYTES", str(weights - 1))
    with pytest.raises(ArchiveError, match="SLEDGE_ARCHIVE_MAX_MEMBER_BYTES"):
        load_archive(str(archive))
    monkeypatch.setenv("SLEDGE_ARCHIVE_MAX_MEMBER_BYTES", str(weights))
    assert load_archive(str(archive)).model is not None
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize(
    "variable, value", [("SLEDGE_ARCHIVE_MAX_BYTES", "lots"), ("SLEDGE_ARCHIVE_MAX_MEMBERS", "1.5"),
                        ("SLEDGE_ARCHIVE_MAX_RATIO", "-3"), ("SLEDGE_ARCHIVE_MAX_MEMBER_BYTES", "0")]
)
def test_a_bad_override_is_an_error_naming_the_variable(trained_run, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SledgeError, match=f"^{variable}={value}: "):
        load_archive(str(trained_run["archive"]))


def test_ctrl_c_during_extraction_is_one_line_and_leaves_no_folder(tmp_path):
    """`allennlp predict` on an archive that arrives through a pipe: interrupted while a member is being
    written, it prints one line (no traceback) and removes the half-extracted folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    pipe = tmp_path / "model.tar.gz"
    os.mkfifo(pipe)
    source = tmp_path / "input.jsonl"
    source.write_text('{"sentence": "good"}\n')
    predict = subprocess.Popen(
        [str(Path(sys.executable).parent / "allennlp"), "predict", str(pipe), str(source),
         "--include-package", "sledge", "--silent", "--output-file", str(tmp_path / "out.jsonl")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    deadline = time.monotonic() + 600
    try:
        while True:  # open the pipe for writing once predict has opened it for reading
            try:
                handle = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline and predict.poll() is None, predict.communicate()
                time.sleep(0.05)
        os.set_blocking(handle, True)
        with open(handle, "wb") as writer:
            member = tarfile.TarInfo("weights.th")
            member.size = 10 * MIB
            writer.write(gzip.compress(member.tobuf(format=tarfile.GNU_FORMAT) + os.urandom(MIB)))
            writer.flush()
            while not list(temp.glob("sledge-archive-*/weights.th")):  # the member is being written
                assert time.monotonic() < deadline and predict.poll() is None
                time.sleep(0.05)
            predict.send_signal(signal.SIGINT)
            _, err = predict.communicate(timeout=120)
    finally:
        if predict.poll() is None:
            predict.kill()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "allennlp predict: interrupted"
    assert predict.returncode != 0
    assert list(temp.glob("sledge-archive-*")) == [] and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "strip_prefix, ignore, strict",
    [(None, None, True), ("core.", None, True), (None, [r".*exits\.0\."], True), ("nope.", None, False),
     ("nope.", None, True), (None, ["nope"], True), ("core.", [r"core\.encoder\..*"], True),
     (None, ["nope"], False)],
)
def test_read_state_dict_renames_as_allennlp_does(trained_run, tmp_path, strip_prefix, ignore, strict):
    """sledge's weights reader (weights only) renames and filters as AllenNLP's own, errors included."""
    with tarfile.open(trained_run["archive"]) as tar:
        tar.extract("weights.th", tmp_path, filter="data")
    path = tmp_path / "weights.th"

    def outcome(reader):
        try:
            return {key: value.shape for key, value in reader(path, strip_prefix, ignore, strict, -1).items()}
        except ValueError as error:
            return str(error)

    expected = outcome(ORIGINALS["read_state_dict"])
    assert outcome(read_state_dict) == expected
    assert isinstance(expected, str) or all(isinstance(shape, torch.Size) for shape in expected.values())


def imports_of(module: str) -> set[str]:
    """The sledge modules `module` imports (at the top or inside functions), read from its source."""
    path = ROOT / (module.replace(".", "/") + ".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sledge"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if (ROOT / (name.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sledge")}
    return {name for name in found if (ROOT / (name.replace(".", "/") + ".py")).exists()}


def test_the_patches_use_the_loader_and_nothing_imports_the_patches_back():
    """The import circle archival -> patches -> evaluate_guard -> archival is cut: every module the
    patches reach, directly or not, never imports them."""
    reached, todo = set(), ["sledge.patches"]
    while todo:
        for name in imports_of(todo.pop()) - reached:
            reached.add(name)
            todo.append(name)
    assert {"sledge.archival", "sledge.commands.evaluate_guard", "sledge.archive_limits"} <= reached
    assert "sledge.patches" not in reached


def test_an_archive_of_the_fixtures_test_file_is_not_mistaken_for_a_model():
    """A readable .tar.gz without a config is named as such (the limits do not hide other errors)."""
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder, "data.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(TEST, arcname="sst.test")
        with pytest.raises(ArchiveError, match="no config.json in it"):
            read_config(archive)
