"""Line-level helpers shared by the sledge readers: numbered lines, JSON lines, headed TSV files."""

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from sledge.errors import MalformedInputError


class Example(NamedTuple):
    """One parsed example before tokenization (what `SledgeReader.text_to_instance` takes), and its place."""

    text: str
    text_pair: str | None
    label: str | None
    file: str | Path | None = None
    line: int | None = None
    subset: str | None = None  # the format's own split of the example (SICK's SemEval_set), if any


def numbered_lines(local_path: str | Path, file_path: str | Path) -> Iterator[tuple[int, str]]:
    """
    The non-blank lines of the UTF-8 file at `local_path` with their 1-based line numbers, line
    endings (`\\n` or `\\r\\n`) removed. A line that is not UTF-8 raises `MalformedInputError` naming
    `file_path` (the path as the user gave it; `local_path` is where `cached_path` put it).
    """
    with open(local_path, "rb") as data:
        for line_number, raw in enumerate(data, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise MalformedInputError(
                    file_path, line_number, f"not UTF-8 text (byte {error.start + 1} of the line)"
                ) from error
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_number, line


def parse_json_object(file_path: str | Path, line_number: int, line: str) -> dict[str, Any]:
    """`line` parsed as a JSON object; anything else raises `MalformedInputError`."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise MalformedInputError(
            file_path, line_number, f"not valid JSON: {error.msg} (column {error.colno})"
        ) from error
    if not isinstance(value, dict):
        raise MalformedInputError(
            file_path, line_number, f"expected a JSON object, found {type(value).__name__}"
        )
    return value


def string_field(file_path: str | Path, line_number: int, record: dict[str, Any], name: str) -> str:
    """The string value of field `name` of `record`; a missing or non-string field raises."""
    if name not in record:
        raise MalformedInputError(file_path, line_number, f"missing field {name!r}")
    value = record[name]
    if not isinstance(value, str):
        raise MalformedInputError(
            file_path, line_number, f"field {name!r} should be a string, found {type(value).__name__}"
        )
    return value


def optional_label(file_path: str | Path, line_number: int, record: dict[str, Any], name: str) -> str | None:
    """Field `name` of `record` as a label string, or None where it is absent or null."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise MalformedInputError(
            file_path, line_number, f"label field {name!r} should be a string or a number"
        )
    return str(value)


def headed_tsv(
    local_path: str | Path, file_path: str | Path, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """
    The rows of a tab-separated file whose first non-blank line is a header naming the columns,
    each as `(line_number, {column: value})`. There is no quoting (as in GLUE): a field is what lies
    between two tabs. A header without one of the `required` columns, or a row whose number of fields
    differs from the header's, raises `MalformedInputError`.
    """
    lines = numbered_lines(local_path, file_path)
    first = next(lines, None)
    if first is None:
        return
    header_line, header_text = first
    header = header_text.split("\t")
    missing = [column for column in required if column not in header]
    if missing:
        raise MalformedInputError(
            file_path,
            header_line,
            f"the header lacks the column(s) {', '.join(missing)} (it has: {', '.join(header)})",
        )
    for line_number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise MalformedInputError(
                file_path,
                line_number,
                f"{len(fields)} tab-separated field(s) where the header has {len(header)}",
            )
        yield line_number, dict(zip(header, fields, strict=True))


def tsv_header(local_path: str | Path, file_path: str | Path) -> list[str]:
    """The column names of a headed tab-separated file (its first non-blank line); [] for an empty file."""
    first = next(numbered_lines(local_path, file_path), None)
    return [] if first is None else first[1].split("\t")


def non_empty(file_path: str | Path, line_number: int, value: str, what: str) -> str:
    """`value` unchanged, unless it is empty or all whitespace, which raises `MalformedInputError`."""
    if not value.strip():
        raise MalformedInputError(file_path, line_number, f"empty {what}")
    return value


NO_GOLD_LABEL = "-"  # SNLI / MultiNLI: the annotators did not agree on a label


def nli_jsonl_examples(
    local_path: str | Path, file_path: str | Path, label_required: bool = True
) -> Iterator[Example]:
    """
    Pairs of an SNLI / MultiNLI `.jsonl` file: `sentence1`, `sentence2` and `gold_label` of each line,
    skipping the lines whose gold label is `-`. Without `label_required`, a line with no `gold_label`
    (an unlabelled test file) gives a label of None.
    """
    for line_number, line in numbered_lines(local_path, file_path):
        record = parse_json_object(file_path, line_number, line)
        premise = string_field(file_path, line_number, record, "sentence1")
        hypothesis = string_field(file_path, line_number, record, "sentence2")
        if label_required or "gold_label" in record:
            label: str | None = string_field(file_path, line_number, record, "gold_label")
        else:
            label = None
        if label == NO_GOLD_LABEL:
            continue
        yield Example(premise, hypothesis, label, file_path, line_number)


def score(file_path: str | Path, line_number: int, value: str, low: float, high: float) -> str:
    """`value` (kept as written) if it is a number in [low, high], else `MalformedInputError`."""
    try:
        number = float(value)
    except ValueError:
        raise MalformedInputError(file_path, line_number, f"the score {value!r} is not a number") from None
    if not low <= number <= high:
        raise MalformedInputError(file_path, line_number, f"the score {value} is outside [{low:g}, {high:g}]")
    return value
