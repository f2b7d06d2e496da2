"""The inputs of `allennlp score` without Ray: rows and lines of each format, parts read from where they
start, bad rows named, globs."""

import csv
import json
from importlib.util import find_spec

import pytest

from sledge.errors import SledgeError
from sledge.scoring.inputs import expand, parts_of, plan_file, read_part, records


def check(fields):
    if not isinstance(fields.get("sentence"), str) or not fields["sentence"].strip():
        raise SledgeError("key 'sentence' must be a non-empty string")


def read_by_parts(path, rows_per_part):
    plan = plan_file(str(path), check, rows_per_part)
    parts = parts_of([plan], rows_per_part)
    return plan, parts, [record for part in parts for record in read_part(part)]


def test_json_lines_rows_skip_blank_lines_and_parts_start_where_they_say(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = ["\ufeff" + json.dumps({"sentence": "first"}), "", json.dumps({"sentence": "zwei ü"}), "  ",
             "not json", json.dumps({"sentence": ""}), *[json.dumps({"sentence": f"s{i}"}) for i in range(5)]]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    plan, parts, by_parts = read_by_parts(path, 3)
    whole = list(records(str(path), "jsonl"))
    assert [(r.row, r.line, r.fields, r.problem) for r in by_parts] == [
        (r.row, r.line, r.fields, r.problem) for r in whole]
    expected = [(0, 1), (1, 3), (2, 5), (3, 6)] + [(4 + i, 7 + i) for i in range(5)]
    assert [(r.row, r.line) for r in whole] == expected
    assert whole[0].fields == {"sentence": "first"} and whole[1].fields == {"sentence": "zwei ü"}
    assert whole[2].problem.startswith("not valid JSON")
    assert plan.rows == 9 and [(bad["row"], bad["line"]) for bad in plan.bad] == [(2, 5), (3, 6)]
    assert [(part.start, part.stop, part.line, part.good) for part in parts] == [
        (0, 3, 1, 2), (3, 6, 6, 2), (6, 9, 9, 3)]


def test_csv_rows_span_quoted_newlines_and_parts_start_on_their_record(tmp_path):
    path = tmp_path / "b.csv"
    texts = ["plain", 'two\nlines, "quoted"', "three", "", "x\r\ny\nz", "last"]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        writer.writerow(["id", "sentence"])
        for i, text in enumerate(texts):
            writer.writerow([i, text])
        file.write("\r\n7\r\n")  # a blank line (no row), then a row with too few fields
    plan, parts, by_parts = read_by_parts(path, 2)
    whole = list(records(str(path), "csv"))
    assert [(r.row, r.line, r.fields, r.problem) for r in by_parts] == [
        (r.row, r.line, r.fields, r.problem) for r in whole]
    assert [r.fields["sentence"] for r in whole[:6]] == texts
    assert [r.line for r in whole] == [2, 3, 5, 6, 7, 10, 12]
    assert whole[6].problem == "1 fields, but the header has 2"
    assert [(bad["row"], bad["line"]) for bad in plan.bad] == [(3, 6), (6, 12)]
    assert [part.good for part in parts] == [2, 1, 2, 0]


@pytest.mark.skipif(find_spec("pyarrow") is None, reason="pyarrow comes with Ray (pip install 'sledge[ray]')")
def test_parquet_parts_read_only_their_rows_across_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    texts = [f"text {i}" for i in range(23)]
    texts[9] = None
    pq.write_table(pa.table({"sentence": texts, "n": list(range(23))}), path, row_group_size=5)
    plan, parts, by_parts = read_by_parts(path, 4)
    assert [(r.row, r.line, r.fields) for r in by_parts] == [
        (i, None, {"sentence": text, "n": i}) for i, text in enumerate(texts)]
    assert [(bad["row"], bad["line"]) for bad in plan.bad] == [(9, None)]
    assert len(parts) == 6 and parts[2].good == 3


def test_inputs_are_globbed_in_order_and_bad_names_are_refused(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "c.csv"):
        (tmp_path / name).write_text("")
    assert expand([f"{tmp_path}/*.jsonl", str(tmp_path / "c.csv")]) == [
        str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.csv")]
    with pytest.raises(SledgeError, match=r"input .*\*.parquet: no file matches it"):
        expand([f"{tmp_path}/*.parquet"])
    with pytest.raises(SledgeError, match=r"a.jsonl is given twice \(also as .*a.jsonl\)"):
        expand([str(tmp_path / "a.jsonl"), f"{tmp_path}/a.*"])
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(SledgeError, match=r"d.txt: unknown format '.txt'; use one of .csv, .json, .jsonl"):
        expand([str(tmp_path / "d.txt")])
    with pytest.raises(SledgeError, match="is a folder; give its files"):
        expand([str(tmp_path)])
