"""
`allennlp score` and `score_dataset` (sledge.scoring) on a local Ray of 2 CPUs, shared by this module's
tests (Ray and its actors are slow to start): answers equal `allennlp predict`'s row by row, every
row exactly once through an interruption, a resume and a killed actor, bad rows named.
"""

import csv
import json
import logging
import os
import signal
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import ROOT, allennlp, predict_lines

needs_ray = pytest.mark.skipif(
    find_spec("ray") is None, reason="Ray is not installed (pip install 'sledge[ray]'): score tests skipped"
)

OVERRIDES = json.dumps({"model.confidence_threshold": 0.55})
SST2_TEST = ROOT / "data" / "sst2" / "stsa.binary.test"
TEXTS = [line.split(" ", 1)[1] for line in SST2_TEST.read_text().splitlines()]


class Interrupted(Exception):
    """Raised from a progress callback: the run stops where it is, as at a Ctrl-C."""


@pytest.fixture(scope="module")
def local_ray():
    import ray

    for attempt in range(3):  # Ray gives its processes 30 s to start: a busy machine may need another go
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20,
                     logging_level=logging.WARNING)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


def write_corpus(folder: Path, sizes: tuple[int, int, int]) -> dict:
    """A JSON-lines file (a blank line and an extra key in it), a CSV file (a quoted text over two lines)
    and a Parquet file (several row groups) of SST-2 test sentences; every row's (file, row, line, text)
    in order, the lines counted here as the files are written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    jsonl, table, parquet = folder / "a.jsonl", folder / "b.csv", folder / "c.parquet"
    n_a, n_b, n_c = sizes
    texts = iter(TEXTS)
    rows, lines = [], []
    for row in range(n_a):
        text = next(texts)
        rows.append((str(jsonl), row, len(lines) + 1, text))
        lines.append(json.dumps({"id": row, "sentence": text}))
        if row == 1:
            lines.append("")  # a blank line: not a row
    jsonl.write_text("\n".join(lines) + "\n")
    line = 2
    with open(table, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["id", "sentence"])
        for row in range(n_b):
            text = next(texts) + ('\n"quoted", on a second line' if row == 2 else "")
            writer.writerow([row, text])
            rows.append((str(table), row, line, text))
            line += 1 + text.count("\n")
    texts_c = [next(texts) for _ in range(n_c)]
    pq.write_table(pa.table({"sentence": texts_c}), parquet, row_group_size=7)
    rows += [(str(parquet), row, None, text) for row, text in enumerate(texts_c)]
    return {"inputs": [str(jsonl), str(table), str(parquet)], "rows": rows}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, trained_run) -> dict:
    """The corpus (600 rows), and what `allennlp predict` answers for it and what serve's tokenization
    says was truncated: the references the outputs are compared with."""
    from sledge.commands.common import load_sledge_archive
    from sledge.serving.engine import Engine

    work = tmp_path_factory.mktemp("score")
    data = write_corpus(work / "inputs", (250, 200, 150))
    lines = [{"sentence": text} for *_, text in data["rows"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        predicted = predict_lines(trained_run["archive"], lines, work / "predict.jsonl",
                                  "--batch-size", "7", "-o", OVERRIDES)
    engine = Engine(load_sledge_archive(str(trained_run["archive"])))
    truncated = [engine.encode(line).truncated for line in lines]
    assert len({row["exit_layer"] for row in predicted}) >= 3  # the threshold leaves at several exits
    assert any(truncated) and not all(truncated)
    return {**data, "work": work, "archive": str(trained_run["archive"]), "predicted": predicted,
            "truncated": truncated}


def read_outputs(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(folder.glob("part-*")):
        if path.suffix == ".jsonl":
            rows += [json.loads(line) for line in path.read_text().splitlines()]
        else:
            rows += pq.read_table(path).to_pylist()
    return rows


def check_against_predict(outputs: list[dict], corpus: dict, indices: list[int]) -> None:
    """`outputs` are exactly the corpus rows `indices`, each once, with predict's answers."""
    places = [(file, row) for file, row, _, _ in corpus["rows"]]
    found = sorted((places.index((output["file"], output["row"])), output) for output in outputs)
    assert [i for i, _ in found] == indices  # every row once: none lost, none twice
    for i, output in found:
        expected = corpus["predicted"][i]
        assert output["line"] == corpus["rows"][i][2]
        assert output["label"] == expected["label"]
        assert output["exit_layer"] == expected["exit_layer"]
        assert output["exit_index"] == expected["exit_index"]
        assert output["probs"] == pytest.approx(expected["probs"], abs=1e-5)
        assert output["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
        assert output["truncated"] == corpus["truncated"][i]


@pytest.fixture(scope="module")
def resumed(corpus, local_ray) -> dict:
    """A run interrupted after its first part (by an exception in the progress callback), its folder
    then set as a harder crash would leave it (some parts missing, one damaged, a half-written
    temporary file), resumed by `allennlp score` with the same arguments, then run once more."""
    from sledge.scoring import score_files

    output = corpus["work"] / "resumed"
    options = {"overrides": OVERRIDES, "rows_per_part": 40, "actors": 2, "progress": False}

    finished = []

    def interrupt(result):
        finished.append(result)
        if len(finished) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        score_files(corpus["archive"], corpus["inputs"], str(output), on_part=interrupt, **options)
    after_interrupt = sorted(path.name for path in output.glob("part-*"))
    summary_after_interrupt = (output / "summary.json").exists()
    for name in after_interrupt[3:]:  # a crash may leave fewer parts done
        (output / name).unlink()
    kept = {name: (output / name).stat() for name in after_interrupt[1:3]}
    damaged = after_interrupt[0]
    (output / damaged).write_bytes((output / damaged).read_bytes()[:100])  # not a whole Parquet file
    (output / ".part-00012.parquet.x1y2.partial").write_bytes(b"PAR1 half a part")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # AllenNLP finds the plugin subcommands through ./.allennlp_plugins
        allennlp("score", corpus["archive"], *corpus["inputs"], "--output-dir", str(output),
                 "-o", OVERRIDES, "--rows-per-part", "40", "--actors", "2", "--silent")
    summary = json.loads((output / "summary.json").read_text())
    again = score_files(corpus["archive"], corpus["inputs"], str(output), **options)
    manifest = json.loads((output / "manifest.json").read_text())
    rows_kept = sum(part["good"] for part in manifest["parts"] if f"part-{part['index']:05d}.parquet" in kept)
    return {"output": output, "after_interrupt": after_interrupt, "kept": kept, "rows_kept": rows_kept,
            "damaged": damaged, "summary_after_interrupt": summary_after_interrupt, "summary": summary,
            "again": again}


@needs_ray
def test_score_answers_as_predict_row_by_row_and_resumes_an_interrupted_run(corpus, resumed):
    output = resumed["output"]
    assert len(resumed["after_interrupt"]) >= 3 and not resumed["summary_after_interrupt"]
    parts = 7 + 5 + 4  # 250, 200 and 150 rows in parts of 40
    summary = resumed["summary"]
    assert (summary["rows"], summary["parts"], summary["bad_rows"]) == (600, parts, 0)
    assert summary["parts_resumed"] == 2  # the two kept; the damaged one was scored again
    kept = resumed["rows_kept"]
    assert (summary["rows_resumed"], summary["rows_scored"]) == (kept, 600 - kept)
    for name, before in resumed["kept"].items():  # finished parts are not recomputed
        after = (output / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not list(output.glob(".*.partial"))
    names = sorted(path.name for path in output.glob("part-*"))
    assert names == [f"part-{i:05d}.parquet" for i in range(parts)]
    check_against_predict(read_outputs(output), corpus, list(range(600)))
    layers = [row["exit_layer"] for row in corpus["predicted"]]
    shares = {str(k): pytest.approx(layers.count(k) / 600, abs=1e-6) for k in sorted(set(layers))}
    assert summary["exit_shares"] == shares
    assert summary["truncated"] == sum(corpus["truncated"])
    again = resumed["again"]  # a finished run, run again: nothing to do
    assert (again["parts_resumed"], again["rows_scored"], again["rows"]) == (parts, 0, 600)
    assert again["exit_shares"] == summary["exit_shares"]


@needs_ray
def test_a_killed_actor_is_replaced_and_every_good_row_is_scored_once_bad_rows_listed(corpus, local_ray):
    from sledge.scoring import score_files

    bad = corpus["work"] / "bad.jsonl"
    bad.write_text('{"sentence": "fine"}\n{"sentence": ""}\nnot json\n{"text": "x"}\n{"sentence": "good"}\n')
    killed = []

    def kill_the_first_actor_that_answers(result):
        if not killed:
            os.kill(result["pid"], signal.SIGKILL)
            killed.append((result["pid"], len(results)))
        results.append(result)

    results: list[dict] = []
    output = corpus["work"] / "killed"
    summary = score_files(corpus["archive"], [*corpus["inputs"], str(bad)], str(output),
                          overrides=OVERRIDES, rows_per_part=25, actors=2, output_format="jsonl",
                          skip_bad_rows=True, progress=False, on_part=kill_the_first_actor_that_answers)
    pid, _ = killed[0]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the process is gone
    # The killed actor's parts in flight were retried by Ray on its replacement, a new process.
    assert len({result["pid"] for result in results}) >= 3
    outputs = read_outputs(output)
    good = [row for row in outputs if row["file"] == str(bad)]
    outputs = [row for row in outputs if row["file"] != str(bad)]
    check_against_predict(outputs, corpus, list(range(600)))
    assert [(row["row"], row["line"]) for row in good] == [(0, 1), (4, 5)]
    listed = [json.loads(line) for line in (output / "bad_rows.jsonl").read_text().splitlines()]
    places = [(row["file"], row["row"], row["line"]) for row in listed]
    assert places == [(str(bad), i, i + 1) for i in (1, 2, 3)]
    assert listed[0]["problem"] == "key 'sentence' is empty"
    assert listed[1]["problem"].startswith("not valid JSON")
    assert "needs the key 'sentence'" in listed[2]["problem"]
    assert (summary["rows"], summary["bad_rows"], summary["rows_scored"]) == (602, 3, 602)


@needs_ray
def test_score_dataset_adds_the_predictions_to_a_ray_dataset(corpus, local_ray):
    import ray.data

    from sledge.scoring import score_dataset

    rows = [{"n": i, "sentence": text} for i, (*_, text) in enumerate(corpus["rows"][:40])]
    rows.append({"n": 40, "sentence": None})
    dataset = ray.data.from_items(rows)
    scored = score_dataset(dataset, corpus["archive"], overrides=OVERRIDES, batch_size=6, rows_per_call=16)
    scored = scored.take_all()
    scored.sort(key=lambda row: row["n"])
    assert [row["n"] for row in scored] == list(range(41))
    for row, expected, cut in zip(scored[:40], corpus["predicted"], corpus["truncated"]):
        assert row["error"] is None and row["sentence"] == rows[row["n"]]["sentence"]
        assert (row["label"], row["exit_layer"], row["exit_index"]) == (
            expected["label"], expected["exit_layer"], expected["exit_index"])
        assert row["truncated"] == cut
        assert row["probs"] == pytest.approx(expected["probs"], abs=1e-5)
    assert scored[40]["error"] == "key 'sentence' must be a string, found null"
    assert scored[40]["label"] is None and scored[40]["probs"] is None


@needs_ray
def test_bad_rows_stop_the_run_before_any_work_naming_file_and_line(corpus, tmp_path):
    from sledge.errors import SledgeError
    from sledge.scoring import score_files

    data = write_corpus(tmp_path / "inputs", (6, 5, 4))
    jsonl, table, parquet = data["inputs"]
    with open(jsonl, "a") as file:
        file.write('{"sentence": 3}\n[1]\n')
    with open(table, "a") as file:
        file.write('9,""\n10\n')
    output = tmp_path / "out"
    with pytest.raises(SledgeError) as error:
        score_files(corpus["archive"], [jsonl, f"{tmp_path}/inputs/*.csv", parquet], str(output))
    assert str(error.value).splitlines() == [
        "4 bad rows, nothing was scored (--skip-bad-rows scores the rest):",
        f"  {jsonl}, line 8: key 'sentence' must be a string, found int",
        f"  {jsonl}, line 9: expected a JSON object, found a list",
        f"  {table}, line 8: key 'sentence' is empty",
        f"  {table}, line 9: 1 fields, but the header has 2",
    ]
    assert not output.exists()  # nothing written, not even the folder


@needs_ray
def test_a_run_with_other_settings_or_changed_inputs_is_refused_in_a_used_folder(corpus, resumed, tmp_path):
    from sledge.errors import SledgeError
    from sledge.scoring import score_files

    output = str(resumed["output"])
    other = json.dumps({"model.confidence_threshold": 0.9})
    with pytest.raises(SledgeError, match="holds a score run with another overrides: .*0.55.* now .*0.9"):
        score_files(corpus["archive"], corpus["inputs"], output, overrides=other, rows_per_part=40)
    with pytest.raises(SledgeError, match="holds a score run of other inputs"):
        score_files(corpus["archive"], corpus["inputs"][:2], output, overrides=OVERRIDES, rows_per_part=40)
    with pytest.raises(SledgeError, match="another rows_per_part: 40, now 41"):
        score_files(corpus["archive"], corpus["inputs"], output, overrides=OVERRIDES, rows_per_part=41)
    status = os.stat(corpus["inputs"][0])
    try:
        os.utime(corpus["inputs"][0], ns=(status.st_atime_ns, status.st_mtime_ns + 1))
        with pytest.raises(SledgeError, match=f"input {corpus['inputs'][0]} changed .* since the score run"):
            score_files(corpus["archive"], corpus["inputs"], output, overrides=OVERRIDES, rows_per_part=40)
    finally:
        os.utime(corpus["inputs"][0], ns=(status.st_atime_ns, status.st_mtime_ns))


def test_without_ray_score_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    from sledge.errors import SledgeError
    from sledge.scoring import score_files

    with pytest.raises(SledgeError, match=r"on Ray, which is not installed: pip install 'sledge\[ray\]'"):
        score_files(str(tmp_path / "model.tar.gz"), [str(tmp_path / "x.jsonl")], str(tmp_path / "out"))


@needs_ray
def test_an_input_changed_behind_size_and_time_fails_the_part_naming_the_file(corpus, resumed, tmp_path):
    import shutil

    from sledge.errors import SledgeError
    from sledge.scoring import score_files

    output = tmp_path / "copy"
    shutil.copytree(resumed["output"], output)
    (output / "part-00000.parquet").unlink()  # rows 0..39 of the JSON-lines file, to score again
    jsonl = Path(corpus["inputs"][0])
    original, status = jsonl.read_bytes(), jsonl.stat()
    first = original.split(b"\n", 1)[0]
    changed = b'{"sentence": 7' + b" " * (len(first) - 15) + b"}"  # as long, but not a text any more
    try:
        jsonl.write_bytes(changed + original[len(first):])
        os.utime(jsonl, ns=(status.st_atime_ns, status.st_mtime_ns))
        with pytest.raises(SledgeError) as error:
            score_files(corpus["archive"], corpus["inputs"], str(output), overrides=OVERRIDES,
                        rows_per_part=40, actors=1, progress=False)
    finally:
        jsonl.write_bytes(original)
        os.utime(jsonl, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert str(error.value).startswith(
        f"scoring stopped: RuntimeError: {jsonl} changed since it was planned: rows 0..39 hold 39 good rows, "
        "not 40 (the finished parts are kept in"
    )
    assert not (output / "part-00000.parquet").exists() and (output / "part-00001.parquet").exists()
