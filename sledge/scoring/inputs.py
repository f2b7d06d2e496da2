"""
The inputs of `allennlp score`: files (or globs) of JSON lines, CSV or Parquet; read row by row,
checked, and cut into parts of a fixed number of rows that can be read on their own (a part knows
where in its file it starts).

A *row* is a record of a file: a non-blank line of JSON lines, a data record of a CSV file (after the
header; blank lines are not records), a row of a Parquet file. Rows are numbered from 0 in file
order (`row`); `line` is the 1-based line where a text file's row starts (None for Parquet), as the
errors of `allennlp predict` name it.
"""

import csv
import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sledge.errors import MalformedInputError, SledgeError
from sledge.predictors.json_lines import parse_json_line

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class Record:
    """
    One row of an input file: `row` (0-based), `line` (1-based, where it starts; None for Parquet),
    `offset` (the byte where it starts; None for Parquet), and its `fields` or the `problem` that
    makes it unreadable.
    """

    row: int
    line: int | None
    offset: int | None  # byte offset where the row starts (text formats)
    fields: dict[str, Any] | None
    problem: str | None = None


@dataclass
class Part:
    """
    Part `index` of a run: rows `start` to `stop` (exclusive) of `file` (in `format`), which begin at
    byte `offset` on line `line` (None for Parquet, read by row); `good` of them are to be scored.
    """

    index: int
    file: str
    format: str
    start: int
    stop: int
    offset: int | None
    line: int | None
    good: int  # rows to score (the others are bad rows, skipped)

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


@dataclass
class FilePlan:
    """
    What planning found in the input file `path` (in `format`): its number of `rows`, its `bad` rows
    and the `starts` (row, byte offset, line) of every `rows_per_part`-th row.
    """

    path: str
    format: str
    rows: int = 0
    bad: list[dict[str, Any]] = field(default_factory=list)  # {"file", "row", "line", "problem"}
    starts: list[tuple[int, int | None, int | None]] = field(default_factory=list)  # (row, offset, line)


def expand(patterns: list[str]) -> list[str]:
    """
    The input files named by `patterns` (paths or globs, `**` included), in the order given, globs
    sorted. A pattern that matches nothing, a folder, an unknown extension or a file given twice is
    an error naming it.
    """
    files: list[str] = []
    seen: dict[str, str] = {}
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
            if not matches:
                raise SledgeError(f"input {pattern}: no file matches it")
        else:
            if not os.path.exists(pattern):
                raise SledgeError(f"input {pattern}: no such file")
            if os.path.isdir(pattern):
                raise SledgeError(f"input {pattern} is a folder; give its files, e.g. '{pattern}/*.jsonl'")
            matches = [pattern]
        for path in matches:
            real = os.path.realpath(path)
            if real in seen:
                raise SledgeError(f"input {path} is given twice (also as {seen[real]})")
            seen[real] = path
            format_of(path)
            files.append(os.path.abspath(path))
    return files


def format_of(path: str) -> str:
    """`jsonl`, `csv` or `parquet`, from the file's extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        found = extension or "(no extension)"
        raise SledgeError(f"input {path}: unknown format {found!r}; use one of {known}")
    return FORMATS[extension]


def identity(path: str) -> dict[str, Any]:
    """What tells whether a file changed: its path, size and modification time."""
    status = os.stat(path)
    return {"path": path, "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def plan_file(path: str, check: Callable[[dict], Any], rows_per_part: int) -> FilePlan:
    """Read every row of `path` once: count the rows, check each (`check` raises a `SledgeError` for a
    row the predictor refuses), note where every `rows_per_part`-th row starts."""
    plan = FilePlan(path, format_of(path))
    for record in records(path, plan.format):
        if record.row % rows_per_part == 0:
            plan.starts.append((record.row, record.offset, record.line))
        problem = record.problem or checked(record.fields, check)
        if problem is not None:
            plan.bad.append({"file": path, "row": record.row, "line": record.line, "problem": problem})
        plan.rows += 1
    return plan


def checked(fields: dict[str, Any] | None, check: Callable[[dict], Any]) -> str | None:
    """None if the predictor takes `fields`, else why not."""
    try:
        check(fields)
    except SledgeError as error:
        return str(error)
    return None


def where(bad: dict[str, Any]) -> str:
    """'file, line N: problem' (Parquet: 'file, row N: problem'), as `allennlp predict` names a line."""
    place = f"line {bad['line']}" if bad["line"] is not None else f"row {bad['row']}"
    return f"{bad['file']}, {place}: {bad['problem']}"


def parts_of(plans: list[FilePlan], rows_per_part: int) -> list[Part]:
    """Every file cut into parts of `rows_per_part` rows (the last of a file may be shorter)."""
    parts: list[Part] = []
    for plan in plans:
        bad_rows = [bad["row"] for bad in plan.bad]
        for row, offset, line in plan.starts:
            stop = min(row + rows_per_part, plan.rows)
            good = stop - row - sum(row <= bad < stop for bad in bad_rows)
            parts.append(Part(len(parts), plan.path, plan.format, row, stop, offset, line, good))
    return parts


def read_part(part: Part) -> Iterator[Record]:
    """The rows of `part`, read from where it starts."""
    rows = records(part.file, part.format, part.start, part.offset, part.line)
    for _, record in zip(range(part.stop - part.start), rows):  # the count first: no row read past it
        yield record


def records(
    path: str, format: str, row: int = 0, offset: int | None = None, line: int | None = None
) -> Iterator[Record]:
    """The rows of a file from row `row` on (text formats: starting at byte `offset`, on line `line`)."""
    if format == "parquet":
        yield from _parquet_records(path, row)
        return
    with open(path, "rb") as file:
        if format == "jsonl":
            yield from _jsonl_records(path, file, row, offset or 0, line or 1)
        else:
            yield from _csv_records(path, file, row, offset, line)


def _jsonl_records(path: str, file: BinaryIO, row: int, offset: int, line: int) -> Iterator[Record]:
    file.seek(offset)
    for line_number, raw in enumerate(file, start=line):
        try:
            fields, problem = parse_json_line(path, line_number, raw), None
        except MalformedInputError as error:
            fields, problem = None, _problem(error, path, line_number)
        if fields is not None or problem is not None:  # else a blank line: not a row
            yield Record(row, line_number, offset, fields, problem)
            row += 1
        offset += len(raw)


class _Lines:
    """A binary file's lines, decoded, for `csv.reader`; knows the byte offset and number of the next."""

    def __init__(self, path: str, file: BinaryIO, offset: int, line: int) -> None:
        self.path, self.file, self.offset, self.line = path, file, offset, line
        file.seek(offset)

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = self.file.readline()
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem = f"not UTF-8 text (byte {error.start + 1} of the line)"
            raise MalformedInputError(self.path, self.line - 1, problem) from None


def _csv_records(
    path: str, file: BinaryIO, row: int, offset: int | None, line: int | None
) -> Iterator[Record]:
    lines = _Lines(path, file, 0, 1)
    try:
        header = next(csv.reader(lines))
    except StopIteration:
        return  # an empty file: no rows
    except (csv.Error, MalformedInputError) as error:
        raise SledgeError(f"{path}, line 1: not a CSV header ({error})") from None
    if header:
        header[0] = header[0].removeprefix("\ufeff")
    if offset is not None and line is not None:
        lines = _Lines(path, file, offset, line)
    reader = csv.reader(lines)
    while True:
        start, start_line = lines.offset, lines.line
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, MalformedInputError) as error:
            yield Record(row, start_line, start, None, _problem(error, path, start_line))
            row += 1
            continue
        if not values:
            continue  # a blank line
        if len(values) != len(header):
            problem = f"{len(values)} fields, but the header has {len(header)}"
            yield Record(row, start_line, start, None, problem)
        else:
            yield Record(row, start_line, start, dict(zip(header, values)))
        row += 1


def _parquet_records(path: str, row: int) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several kinds for a file that is not Parquet
        raise SledgeError(f"{path}: not a Parquet file ({error})") from None
    with file:
        first = 0
        for group in range(file.metadata.num_row_groups):
            size = file.metadata.row_group(group).num_rows
            if first + size > row:
                table = file.read_row_group(group).slice(max(0, row - first))
                for fields in table.to_pylist():
                    yield Record(row, None, None, fields)
                    row += 1
            first += size


def _problem(error: Exception, path: str, line: int) -> str:
    """The problem a `MalformedInputError` states, without its 'file, line N: ' prefix."""
    return str(error).removeprefix(f"{path}, line {line}: ")

