"""The tab-separated files of the SledgeHammer reference code: one labelled text or text pair per line."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example, non_empty, numbered_lines


@DatasetReader.register("sledgehammer_tsv")
class SledgehammerTsvReader(SledgeReader):
    """
    Reads the files that the SledgeHammer reference code (Schwartz et al., 2020,
    `scripts/download_data.sh`, `scripts/process_sst.py`) trains on: no header, one example per line,
    tab-separated, the label first. Text classification files (`text_cat/{sst,ag,imdb}/{train,dev,test}`)
    have two fields, `label<TAB>text`; NLI files (`nli/{snli,mnli}/...`) have three,
    `label<TAB>premise<TAB>hypothesis`, and give pair instances. Labels are kept as written
    (0-based integers in the reference files). Files are read as UTF-8.

    Blank lines are skipped. A line with other than 2 or 3 fields, with a different number of fields
    than the file's first line, or with an empty label or text raises `MalformedInputError` (the
    reference code skipped such lines silently).

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    dev_fraction, split_seed : optional
        The `#train` / `#dev` split of a file without a development set (see `SledgeReader`).
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive (see `SledgeReader`).
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    dataset = "the SledgeHammer tsv data"

    text_pairs = None

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        expected: tuple[int, int] | None = None  # (field count, line where it was first seen)
        for line_number, line in numbered_lines(local_path, file_path):
            fields = line.split("\t")
            if len(fields) not in (2, 3):
                raise MalformedInputError(
                    file_path,
                    line_number,
                    f"{len(fields)} tab-separated field(s), expected label<TAB>text "
                    "or label<TAB>premise<TAB>hypothesis",
                )
            if expected is None:
                expected = (len(fields), line_number)
            elif len(fields) != expected[0]:
                raise MalformedInputError(
                    file_path,
                    line_number,
                    f"{len(fields)} tab-separated fields where line {expected[1]} has {expected[0]}",
                )
            label = non_empty(file_path, line_number, fields[0], "label")
            text = non_empty(file_path, line_number, fields[1], "text")
            text_pair = (
                non_empty(file_path, line_number, fields[2], "hypothesis") if len(fields) == 3 else None
            )
            yield Example(text, text_pair, label, file_path, line_number)
