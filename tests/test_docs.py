"""
Every shell command shown in README.md and docs/*.md runs: each fenced ```bash block is read (one
command a line, a trailing backslash continues it) and its commands are run in order, page by page, in
a scratch copy of the repository root (links to its files; `runs/` is the page's own). A command runs
as written where that is fast and needs only shipped data; otherwise as a tiny version of itself:

- `allennlp train` (and `difficulty-labels`): the same config, options and overrides, with the backbone
  swapped for a tiny random BERT, one epoch, and the data paths pointed at fixture data in the same
  format (the configs' public releases served from 127.0.0.1 as test_releases.py does);
  `difficulty-labels` with 2 folds and 1 seed;
- `allennlp evaluate / predict / calibrate / cascade / difficulty`: as written, in this process;
  `allennlp sweep` too, timing 20 instances once (`--timing-instances 20 --repeats 1` appended);
- `allennlp serve`: its app, in this process, which the page's `curl` lines then call;
- `allennlp score` (it starts a Ray cluster; tests/test_score.py runs it) and any `allennlp ... --help`:
  its arguments parsed by the subcommand's own parser (every option exists, every value has its type),
  `--help` shown;
- `make TARGET`: `make -n TARGET` (the target exists and its recipe expands);
- a benchmark script: its `--help`; `echo`, `printf`, `cat`, `mkdir`, `ls`: as written, by bash.

A command none of these fits fails the test, naming the page and line: add it here, or change the page.
New pages under docs/ are picked up as they are added.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from allennlp.common import Params, file_utils
from fastapi.testclient import TestClient
from release_fixtures import loopback_data_path, pack, release_contents, release_server, sha256

from conftest import ROOT, allennlp, build_tiny_bert
from sledge.dataset_readers.releases import RELEASES, Release, is_url

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
ALLENNLP_AS_WRITTEN = {"evaluate", "predict", "calibrate", "cascade", "difficulty"}
SHELL = {"echo", "printf", "cat", "mkdir", "ls", "head"}
E2E = ROOT / "fixtures" / "e2e"
# Fixture data, per reader, for configs whose data is a local file: (train, validation, test).
LOCAL_FIXTURES = {
    "sst_sentence": (E2E / "sst.train", E2E / "sst.test", E2E / "sst.test"),
    "stsb": (E2E / "stsb.train", E2E / "stsb.test", E2E / "stsb.test"),
    "glue_sst2": (ROOT / "fixtures/data/sst2/glue_SST-2/train.tsv",) * 3,
}
DATA_KEYS = ("train_data_path", "validation_data_path", "test_data_path")


@dataclass
class Command:
    page: Path
    line: int
    text: str
    argv: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


def commands_of(page: Path) -> list[Command]:
    """The commands of a page's ```bash blocks, in order (continuations joined, comments dropped)."""
    found, block, pending, start = [], None, "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence and block is None:
            block = fence.group(1)
            continue
        if fence and block is not None:
            block = None
            continue
        if block != "bash":
            continue
        text = line.strip()
        if not pending and (not text or text.startswith("#")):
            continue
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        found.append(Command(page, start, pending + text, argv=_words(pending + text)))
        pending = ""
    return found


def _words(text: str) -> list[str]:
    """The command's words, as bash splits them (a word starting with '#' begins a comment)."""
    words = shlex.split(text)
    for i, word in enumerate(words):
        if word.startswith("#") and f" {word}" in text:
            return words[:i]
    return words


def kind_of(command: Command) -> str | None:
    """How the test runs a command (see the module docstring), or None where it cannot."""
    argv = command.argv
    program = Path(argv[0]).name if argv else ""
    if program == "make" and len(argv) == 2:
        return "make"
    if program == "allennlp" and len(argv) > 1:
        if "--help" in argv or "-h" in argv:
            return "parsed"
        if argv[1] in ("train", "difficulty-labels", "sweep"):
            return "tiny-" + argv[1]
        if argv[1] in ALLENNLP_AS_WRITTEN:
            return "allennlp"
        if argv[1] == "serve":
            return "serve"
        if argv[1] == "score":
            return "parsed"
    if program == "curl":
        return "curl"
    if program in ("python", "python3") and len(argv) > 1 and argv[1].startswith("benchmarks/"):
        return "help"
    if program in SHELL:
        return "shell"
    if program == "export" and len(argv) == 2 and "=" in argv[1]:
        return "export"
    return None


def test_every_command_of_every_page_can_be_run():
    unmapped = [c.where() for page in PAGES for c in commands_of(page) if kind_of(c) is None]
    message = "commands the docs test cannot run (map them in tests/test_docs.py):\n"
    assert not unmapped, message + "\n".join(unmapped)
    assert sum(len(commands_of(page)) for page in PAGES) >= 20


def test_the_readme_is_a_guide_of_at_most_300_lines_with_the_setup_commands_on_top():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    first = commands_of(ROOT / "README.md")[:2]
    assert [c.argv for c in first] == [["make", "demo"], ["make", "test"]]





def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


# ---------------------------------------------------------------------------------------------------
# Running a page


class Page:
    """One page's scratch root, its served apps, and the trained runs shared by every page."""

    trained: dict[str, Path] = {}  # (config, overrides, flags) -> a finished serialization folder

    def __init__(self, work: Path, server, backbones, monkeypatch) -> None:
        self.work, self.server, self.backbones, self.monkeypatch = work, server, backbones, monkeypatch
        self.apps: dict[str, TestClient] = {}  # host:port -> the app last served there
        self.clients: list[TestClient] = []

    def run(self, command: Command) -> None:
        kind = kind_of(command)
        getattr(self, kind.replace("-", "_"))(command)

    # -- as written ----------------------------------------------------------------------------------
    def allennlp(self, command: Command) -> None:
        allennlp(*command.argv[1:])

    def shell(self, command: Command) -> None:
        subprocess.run(["bash", "-c", command.text], cwd=self.work, check=True, timeout=60)

    def export(self, command: Command) -> None:
        name, _, value = command.argv[1].partition("=")
        self.monkeypatch.setenv(name, os.path.expandvars(value.replace("$PWD", str(self.work))))

    def make(self, command: Command) -> None:
        subprocess.run(["make", "-n", command.argv[1]], cwd=self.work, check=True, timeout=60,
                       capture_output=True)

    def parsed(self, command: Command) -> None:
        from allennlp.commands.subcommand import Subcommand

        parser = argparse.ArgumentParser(prog="allennlp")
        Subcommand.by_name(command.argv[1])().add_subparser(parser.add_subparsers())
        try:
            parser.parse_args(command.argv[1:])
        except SystemExit as stop:  # --help, or an argument its parser refuses
            assert stop.code == 0, command.where()

    def help(self, command: Command) -> None:
        subprocess.run([str(ROOT / ".venv/bin/python"), command.argv[1], "--help"], cwd=self.work,
                       check=True, timeout=300, capture_output=True)

    # -- tiny versions -------------------------------------------------------------------------------
    def tiny_train(self, command: Command) -> None:
        args = argparse.ArgumentParser(add_help=False)
        args.add_argument("config")
        args.add_argument("-s", "--serialization-dir", required=True)
        args.add_argument("-o", "--overrides", default="")
        parsed, rest = args.parse_known_args(command.argv[2:])
        overrides = self.tiny_overrides(parsed.config, parsed.overrides)
        key = json.dumps([parsed.config, overrides, sorted(rest)], sort_keys=True)  # what really trains
        target = self.work / parsed.serialization_dir
        if key in Page.trained and not target.exists():
            shutil.copytree(Page.trained[key], target)
            return
        allennlp("train", parsed.config, "-s", parsed.serialization_dir, *rest,
                 "-o", json.dumps(overrides))
        Page.trained.setdefault(key, target)

    def tiny_sweep(self, command: Command) -> None:
        allennlp(*command.argv[1:], "--timing-instances", "20", "--repeats", "1")

    def tiny_difficulty_labels(self, command: Command) -> None:
        argv = command.argv[2:]
        config = argv[0]
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("-o", "--overrides", default="")
        options.add_argument("--folds")
        options.add_argument("--seeds", nargs="+")
        parsed, rest = options.parse_known_args(argv[1:])
        overrides = self.tiny_overrides(config, parsed.overrides)
        seed = (parsed.seeds or ["1"])[0]
        allennlp("difficulty-labels", config, *rest, "--folds", "2", "--seeds", seed,
                 "-o", json.dumps(overrides))

    def tiny_overrides(self, config: str, given: str) -> dict:
        """The command's overrides, then a tiny backbone, one short epoch, and fixture data."""
        user = json.loads(given) if given else {}
        raw = Params.from_file(config, json.dumps(user)).as_dict()
        deepest = max(raw["model"].get("layer_indices", [0]))
        backbone = self.backbones(6 if deepest < 6 else 24)
        overrides = {
            **user,
            "dataset_reader.transformer_model": backbone, "model.transformer_model": backbone,
            "dataset_reader.max_length": 128, "trainer.num_epochs": 1,
            "data_loader.batch_sampler.batch_size": 8,
        }
        reader = raw["dataset_reader"]["type"]
        for key, fixture in zip(DATA_KEYS, LOCAL_FIXTURES.get(reader, (None,) * 3)):
            if raw.get(key) is None:
                continue
            if fixture is not None:
                overrides[key] = str(fixture)
            else:  # the config's own release, served from 127.0.0.1
                default = Params.from_file(config).as_dict()[key]
                assert is_url(default), f"{config} {key}: no fixture for reader {reader!r}"
                overrides[key] = loopback_data_path(self.server, default)
        return overrides

    # -- serve and curl ------------------------------------------------------------------------------
    def serve(self, command: Command) -> None:
        from allennlp.commands.subcommand import Subcommand

        from sledge.commands.serve import load
        from sledge.serving.app import create_app

        parser = argparse.ArgumentParser()
        Subcommand.by_name("serve")().add_subparser(parser.add_subparsers())
        args = parser.parse_args(command.argv[1:])
        client = TestClient(create_app(lambda: load(args)))
        client.__enter__()
        self.clients.append(client)
        self.apps[f"{args.host}:{args.port}"] = client

    def curl(self, command: Command) -> None:
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("-s", action="store_true")
        options.add_argument("-X", default=None)
        options.add_argument("-H", action="append", default=[])
        options.add_argument("-d", default=None)
        options.add_argument("url")
        parsed = options.parse_args(command.argv[1:])
        url = urlsplit(parsed.url)
        client = self.apps[f"{url.hostname}:{url.port}"]
        deadline = time.monotonic() + 120
        while client.get("/health").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        headers = dict(header.split(": ", 1) for header in parsed.H)
        method = parsed.X or ("POST" if parsed.d is not None else "GET")
        path = url.path + (f"?{url.query}" if url.query else "")
        response = client.request(method, path, content=parsed.d, headers=headers)
        assert response.status_code == 200, response.text

    def close(self) -> None:
        for client in self.clients:
            client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    built: dict[int, str] = {}

    def backbone(layers: int) -> str:
        if layers not in built:
            built[layers] = str(build_tiny_bert(tmp_path_factory.mktemp(f"docs-bert-{layers}"), layers))
        return built[layers]

    return backbone


@pytest.fixture(scope="module")
def served_releases():
    with release_server() as server:
        yield server


def scratch_root(work: Path) -> Path:
    """A folder that looks like the repository root (links to its files) with a `runs/` of its own."""
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("runs", ".git"):
            (work / entry.name).symlink_to(entry)
    return work


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_commands_of_each_page_run(page, tmp_path, monkeypatch, backbones, served_releases):
    commands = commands_of(page)
    if not commands:
        return
    work = scratch_root(tmp_path / "root")
    monkeypatch.chdir(work)
    monkeypatch.setattr(file_utils, "CACHE_DIRECTORY", str(tmp_path / "cache"))
    for url, (kind, members) in release_contents().items():
        data = pack(kind, members)
        pinned = Release("fixture", len(data), sha256(data), "test")
        monkeypatch.setitem(RELEASES, served_releases.url(url), pinned)
    runner = Page(work, served_releases, backbones, monkeypatch)
    try:
        for command in commands:
            try:
                runner.run(command)
            except Exception as error:  # noqa: BLE001 (named with the page and line, then failed)
                pytest.fail(f"{command.where()}\n  failed: {type(error).__name__}: {error}")
    finally:
        runner.close()


# ---------------------------------------------------------------------------------------------------
# The local copies docs/datasets.md documents read with their configs (where this machine has them)

SHARED = ROOT.parent / "shared" / "data"


def local_copies() -> list[tuple[str, dict]]:
    rows = []
    for line in (ROOT / "docs" / "datasets.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and "../shared/data" in cells[2]:
            configs = re.findall(r"`([a-z0-9_]+)`", cells[0])
            rows += [(config, json.loads(cells[2].strip("`"))) for config in configs]
    return rows


def test_the_datasets_page_documents_local_copies_for_this_machine():
    configs = {config for config, _ in local_copies()}
    assert {"agnews", "agnews_minilm", "rte", "rte_minilm", "stsb", "stsb_minilm", "sst2"} <= configs


@pytest.mark.parametrize("config,overrides", local_copies(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_documented_local_copy_reads_with_its_config(config, overrides, backbones, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not on this machine")
    from allennlp.data import DatasetReader

    monkeypatch.chdir(ROOT)
    tiny = backbones(6)
    params = Params.from_file(f"training_config/{config}.jsonnet",
                              json.dumps({**overrides, "dataset_reader.transformer_model": tiny}))
    raw = params.as_dict()
    reader = DatasetReader.from_params(params.pop("dataset_reader"))
    for key in DATA_KEYS:
        if raw.get(key):
            assert any(True for _ in zip(range(3), reader.read(raw[key]))), (config, key)
