"""GLUE SST-2: tab-separated phrases with a `sentence\\tlabel` header (test: `index\\tsentence`)."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import SledgeReader
from sledge.dataset_readers.formats import Example, headed_tsv, non_empty


@DatasetReader.register("glue_sst2")
class GlueSst2Reader(SledgeReader):
    """
    Reads GLUE SST-2 `{train,dev,test}.tsv`: a header line naming the columns, then one phrase per
    line, fields separated by tabs, no quoting. Columns are found by name: `sentence` is required;
    `label` (`0` / `1`) is read where the header has it. The GLUE test file (header `index\\tsentence`)
    has no label column, and gives instances without a `label` field.

    Blank lines are skipped. A header without a `sentence` column (reported at line 1), a row whose
    number of fields differs from the header's, or an empty sentence or label raises
    `MalformedInputError`.

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

    dataset = "GLUE SST-2"

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, row in headed_tsv(local_path, file_path, required=["sentence"]):
            sentence = non_empty(file_path, line_number, row["sentence"], "sentence")
            label = non_empty(file_path, line_number, row["label"], "label") if "label" in row else None
            yield Example(sentence, None, label, file_path, line_number)
