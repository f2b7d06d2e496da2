"""STS Benchmark (Cer et al. 2017) in its original tab-separated files: a similarity score per pair."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example, non_empty, numbered_lines, score

STSB_FIELDS = 7  # genre, filename, year, id, score, sentence1, sentence2 (license fields may follow)


@DatasetReader.register("stsb")
class StsbReader(SledgeReader):
    """
    Reads `sts-{train,dev,test}.csv` of the STS Benchmark as released: no header, fields separated by
    tabs with no quoting: genre, file name, year, pair id, score (0..5), sentence 1, sentence 2, and
    on some lines license fields after them, which are ignored. An instance is the pair (sentence 1,
    sentence 2); its label is the score, a float (a regression target).

    Blank lines are skipped. A line with fewer than 7 fields, a score that is not a number in [0, 5],
    or an empty sentence raises `MalformedInputError`.

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

    dataset = "STS-B"

    text_pairs = True
    regression = True

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, line in numbered_lines(local_path, file_path):
            fields = line.split("\t")
            if len(fields) < STSB_FIELDS:
                raise MalformedInputError(
                    file_path, line_number,
                    f"{len(fields)} tab-separated field(s), expected at least {STSB_FIELDS} "
                    "(genre, file, year, id, score, sentence 1, sentence 2)",
                )
            value = score(file_path, line_number, fields[4], 0.0, 5.0)
            first = non_empty(file_path, line_number, fields[5], "sentence 1")
            second = non_empty(file_path, line_number, fields[6], "sentence 2")
            yield Example(first, second, value, file_path, line_number)
