"""`allennlp predict` once sledge is imported: every input line checked first, output renamed on success."""

import sys
from collections.abc import Iterator
from typing import Any

from allennlp.commands.predict import _PredictManager
from allennlp.common.file_utils import cached_path, open_compressed
from allennlp.predictors.predictor import JsonDict, Predictor

from sledge.errors import MalformedInputError, SledgeError
from sledge.files import replaced_on_success
from sledge.predictors.json_lines import parse_json_line

MAX_REPORTED = 20  # bad lines listed in one error


class SafePredictManager(_PredictManager):
    """
    AllenNLP's `_PredictManager` (the engine of `allennlp predict`), changed in two ways:

    - A JSON-lines input file is read twice: first every line is checked (UTF-8, a JSON object, and
      what the predictor's `check_json` requires, e.g. the keys and their types), and if any line is
      bad the run stops before predicting anything, with one error naming the file, each bad line
      (up to 20) and the key. Only then are the lines predicted. Standard input (`-`) is checked line
      by line as it arrives.
    - `--output-file` is written to a temporary file beside it and renamed when the whole run has
      succeeded, so a failed run leaves an existing file as it was, and two runs writing the same
      file each leave a complete output (the last to finish wins).
    - At the end, on standard error: how many inputs were predicted and how many of them were longer
      than the reader's `max_length` and cut to it (their outputs have `truncated: true`).

    Parameters as AllenNLP's; `batch_size` must be at least 1.
    """

    def __init__(
        self,
        predictor: Predictor,
        input_file: str,
        output_file: str | None,
        batch_size: int,
        print_to_console: bool,
        has_dataset_reader: bool,
        multitask_head: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise SledgeError(f"--batch-size must be at least 1, got {batch_size}")
        super().__init__(
            predictor, input_file, None, batch_size, print_to_console, has_dataset_reader, multitask_head
        )
        self._output_path = output_file

    def run(self) -> None:
        if self._output_path is None:
            super().run()
        else:
            with replaced_on_success(self._output_path) as output:
                self._output_file = output
                super().run()
        self._report()

    def _report(self) -> None:
        predictor = self._predictor
        if not hasattr(predictor, "truncated"):
            return
        max_length = getattr(predictor._dataset_reader, "max_length", "?")
        print(
            f"allennlp predict: {predictor.predicted} input(s) predicted; {predictor.truncated} of them "
            f"longer than max_length ({max_length} tokens) and cut to it (\"truncated\": true)",
            file=sys.stderr,
        )

    def _get_json_data(self) -> Iterator[JsonDict]:
        if self._input_file == "-":
            for line_number, raw in enumerate(sys.stdin.buffer, start=1):
                record = self._check_line("<stdin>", line_number, raw)
                if record is not None:
                    yield record
            return
        path = cached_path(self._input_file)
        self._check_file(path)
        with open_compressed(path, "rb", encoding=None) as lines:
            for line_number, raw in enumerate(lines, start=1):
                record = self._check_line(self._input_file, line_number, raw)
                if record is not None:
                    yield record

    def _check_file(self, path: str) -> None:
        """Check every line of the input; one error listing the bad lines if there are any."""
        problems: list[str] = []
        count = 0
        with open_compressed(path, "rb", encoding=None) as lines:
            for line_number, raw in enumerate(lines, start=1):
                try:
                    count += self._check_line(self._input_file, line_number, raw) is not None
                except MalformedInputError as error:
                    problems.append(str(error))
        if len(problems) == 1:
            raise SledgeError(f"{problems[0]} (nothing was predicted)")
        if problems:
            listed = "\n  ".join(problems[:MAX_REPORTED])
            more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
            raise SledgeError(
                f"{self._input_file}: {len(problems)} bad lines, nothing was predicted:\n  {listed}{more}"
            )
        if count == 0:
            raise SledgeError(f"{self._input_file}: no input lines (the file is empty)")

    def _check_line(self, file_name: str, line_number: int, raw: bytes | str) -> dict[str, Any] | None:
        """The line's JSON object, None for a blank line, or a `MalformedInputError` naming file and line."""
        return parse_json_line(file_name, line_number, raw, getattr(self._predictor, "check_json", None))
