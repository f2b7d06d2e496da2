"""RTE in the SuperGLUE JSON-lines files (`{train,val,test}.jsonl`)."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example, numbered_lines, parse_json_object, string_field

RTE_LABELS = ("entailment", "not_entailment")


@DatasetReader.register("rte")
class RteReader(SledgeReader):
    """
    Reads RTE as SuperGLUE distributes it: one JSON object per line with `premise`, `hypothesis`,
    `label` (`entailment` / `not_entailment`) and `idx`. An instance is the pair (premise,
    hypothesis). The test file has no `label`, and gives instances without a `label` field.

    Blank lines are skipped. A line that is not a JSON object, lacks `premise` or `hypothesis`, or has a
    label other than `entailment` / `not_entailment` raises `MalformedInputError`.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length; the longer text of a
        pair is cut first.
    dev_fraction, split_seed : optional
        The `#train` / `#dev` split of a file without a development set (see `SledgeReader`).
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive (see `SledgeReader`).
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    dataset = "RTE"

    text_pairs = True

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, line in numbered_lines(local_path, file_path):
            record = parse_json_object(file_path, line_number, line)
            premise = string_field(file_path, line_number, record, "premise")
            hypothesis = string_field(file_path, line_number, record, "hypothesis")
            label = record.get("label")
            if label is not None and label not in RTE_LABELS:
                raise MalformedInputError(
                    file_path, line_number, f"label {label!r} is not one of {', '.join(RTE_LABELS)}"
                )
            yield Example(premise, hypothesis, label, file_path, line_number)
