"""SST at sentence level in the `stsa.binary` files of Kim (2014): `<label> <sentence>` per line."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example, non_empty, numbered_lines


@DatasetReader.register("sst_sentence")
class SstSentenceReader(SledgeReader):
    """
    Reads the sentence-level SST files `stsa.binary.{train,dev,test}` (and `stsa.fine.*`): one example
    per line, an integer label, one space, then the tokenized sentence, e.g.
    `1 it 's a stunning lyrical work of considerable force and truth .`

    The label is kept as written (`"0"` / `"1"`). Blank lines are skipped; a line without a space, with
    a label that is not an integer, or with an empty sentence raises `MalformedInputError`.

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

    dataset = "SST-2 (sentence level)"

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, line in numbered_lines(local_path, file_path):
            label, space, sentence = line.partition(" ")
            if not space:
                raise MalformedInputError(file_path, line_number, "no space between label and sentence")
            try:
                int(label)
            except ValueError:
                raise MalformedInputError(
                    file_path, line_number, f"the label {label!r} is not an integer"
                ) from None
            sentence = non_empty(file_path, line_number, sentence, "sentence")
            yield Example(sentence, None, label, file_path, line_number)
