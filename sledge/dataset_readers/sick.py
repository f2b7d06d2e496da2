"""SICK (Marelli et al. 2014) in its original files: relatedness scores and entailment labels of pairs."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example, headed_tsv, non_empty, score, tsv_header
from sledge.errors import SledgeError

SICK_LABELS = ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")
SICK_TARGETS = ("relatedness", "entailment")
LABEL_COLUMNS = ("entailment_label", "entailment_judgment")  # SICK.txt's name, the SemEval files' name


@DatasetReader.register("sick")
class SickReader(SledgeReader):
    """
    Reads SICK as released: the full `SICK.txt` of the authors' Zenodo release (`SICK.zip`), or the
    SemEval 2014 Task 1 files (`SICK_train.txt`, `SICK_trial.txt`, `SICK_test_annotated.txt`).
    Tab-separated, a header line naming the columns, among them `sentence_A`, `sentence_B`,
    `relatedness_score` (a float in 1..5) and the entailment label (`entailment_label` in SICK.txt,
    `entailment_judgment` in the SemEval files: `ENTAILMENT`, `NEUTRAL` or `CONTRADICTION`); other
    columns are ignored. SICK.txt's `SemEval_set` column (`TRAIN`, `TRIAL`, `TEST`) says which
    SemEval split a pair belongs to: `SICK.txt#SemEval_set=TRIAL` reads the trial pairs only. An
    instance is the pair (sentence A, sentence B); its label is the relatedness score (a regression
    target) or the entailment label, as `target` says.

    Blank lines are skipped. A header without the columns the target needs, a row whose number of
    fields differs from the header's, a score that is not a number in [1, 5], a label other than
    the three, or an empty sentence raises `MalformedInputError`.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    target : `str`, optional (default = `"relatedness"`)
        `"relatedness"` (regression) or `"entailment"` (3 classes).
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    dev_fraction, split_seed : optional
        The `#train` / `#dev` split of a file without a development set (see `SledgeReader`).
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive (see `SledgeReader`).
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    dataset = "SICK"

    text_pairs = True
    subset_column = "SemEval_set"

    def __init__(self, transformer_model: str, target: str = "relatedness", **kwargs: Any) -> None:
        if target not in SICK_TARGETS:
            raise SledgeError(
                f"dataset_reader.target must be one of {', '.join(SICK_TARGETS)}, got {target!r}"
            )
        super().__init__(transformer_model, **kwargs)
        self.target = target
        self.regression = target == "relatedness"

    def _examples(self, local_path: str, file_path: str | Path) -> Iterator[Example]:
        columns = ["relatedness_score"] if self.regression else None
        if columns is None:  # the entailment label's column has one name in SICK.txt, another in SemEval's
            header = tsv_header(local_path, file_path)
            columns = [next((name for name in LABEL_COLUMNS if name in header), LABEL_COLUMNS[0])]
        rows = headed_tsv(local_path, file_path, required=["sentence_A", "sentence_B", *columns])
        for line_number, row in rows:
            if self.regression:
                label = score(file_path, line_number, row[columns[0]], 1.0, 5.0)
            else:
                label = row[columns[0]]
                if label not in SICK_LABELS:
                    problem = f"{columns[0]} {label!r} is not one of {', '.join(SICK_LABELS)}"
                    raise MalformedInputError(file_path, line_number, problem)
            first = non_empty(file_path, line_number, row["sentence_A"], "sentence_A")
            second = non_empty(file_path, line_number, row["sentence_B"], "sentence_B")
            yield Example(first, second, label, file_path, line_number, row.get(self.subset_column))
