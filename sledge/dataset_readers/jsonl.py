"""Plain JSON lines with configurable field names: a text, optionally a second text, and a label."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import SledgeReader
from sledge.dataset_readers.formats import (
    Example,
    numbered_lines,
    optional_label,
    parse_json_object,
    string_field,
)


@DatasetReader.register("jsonl")
class JsonlReader(SledgeReader):
    """
    Reads any JSON-lines file with one example per line, e.g. `{"sentence": "...", "label": "pos"}`.
    Which fields hold the text, the optional second text of a pair and the label is configurable; other
    fields are ignored. A label that is a number is used as its string (`1` -> `"1"`); a line without
    the label field (or with `null`) gives an instance without a `label` field.

    Blank lines are skipped. A line that is not a JSON object, or lacks the text field (or the pair
    field, where one is set), or whose label is a list or an object, raises `MalformedInputError`.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    text_field : `str`, optional (default = `"sentence"`)
        The field holding the text (the first text of a pair).
    text_pair_field : `str`, optional (default = `None`)
        The field holding the second text of a pair; `None` reads single texts.
    label_field : `str`, optional (default = `"label"`)
        The field holding the label; `None` reads no labels at all.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    dev_fraction, split_seed : optional
        The `#train` / `#dev` split of a file without a development set (see `SledgeReader`).
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive (see `SledgeReader`).
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    dataset = "the JSON-lines data"

    def __init__(
        self,
        transformer_model: str,
        text_field: str = "sentence",
        text_pair_field: str | None = None,
        label_field: str | None = "label",
        max_length: int = 128,
        serialization_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            transformer_model, max_length=max_length, serialization_dir=serialization_dir, **kwargs
        )
        self.text_field = text_field
        self.text_pair_field = text_pair_field
        self.text_pairs = text_pair_field is not None
        self.label_field = label_field

    def _examples(self, local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, line in numbered_lines(local_path, file_path):
            record = parse_json_object(file_path, line_number, line)
            text = string_field(file_path, line_number, record, self.text_field)
            text_pair = (
                None
                if self.text_pair_field is None
                else string_field(file_path, line_number, record, self.text_pair_field)
            )
            label = (
                None
                if self.label_field is None
                else optional_label(file_path, line_number, record, self.label_field)
            )
            yield Example(text, text_pair, label, file_path, line_number)
