"""One line of a JSON-lines input of the Predictor, checked: what `allennlp predict` and `allennlp score`
read."""

import json
from collections.abc import Callable
from typing import Any

from sledge.errors import MalformedInputError, SledgeError


def parse_json_line(
    file_name: str, line_number: int, raw: bytes | str, check: Callable[[dict], Any] | None = None
) -> dict[str, Any] | None:
    """
    The line's JSON object, None for a blank line, or a `MalformedInputError` naming file and line:
    not UTF-8, not JSON, not an object, or refused by `check` (the predictor's `check_json`, which
    raises a `SledgeError` naming the key).
    """
    try:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text (byte {error.start + 1} of the line)"
        raise MalformedInputError(file_name, line_number, problem) from None
    line = line.rstrip("\r\n")
    if line_number == 1:
        line = line.removeprefix("\ufeff")
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        problem = f"not valid JSON: {error.msg} (column {error.colno})"
        raise MalformedInputError(file_name, line_number, problem) from None
    if not isinstance(record, dict):
        problem = f"expected a JSON object, found {_json_type(record)}"
        raise MalformedInputError(file_name, line_number, problem)
    if check is not None:
        try:
            check(record)
        except SledgeError as error:
            raise MalformedInputError(file_name, line_number, str(error)) from None
    return record


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
