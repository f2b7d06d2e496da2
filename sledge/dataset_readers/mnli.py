"""MultiNLI, either in its published JSON-lines files or as the tab-separated files of GLUE."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import SledgeReader
from sledge.dataset_readers.formats import (
    NO_GOLD_LABEL,
    Example,
    headed_tsv,
    nli_jsonl_examples,
    non_empty,
)


@DatasetReader.register("mnli")
class MnliReader(SledgeReader):
    """
    Reads MultiNLI (Williams et al., 2018) in either of its two common formats, telling them apart by
    the file: a name ending in `.tsv` means tab-separated, one ending in `.jsonl` means JSON lines;
    otherwise a file whose first non-blank character is `{` is JSON lines, and any other is read as
    tab-separated (as the `multinli_1.0_*.txt` files are).

    - JSON lines (`multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl`): the fields `sentence1`,
      `sentence2` and `gold_label`, as in SNLI. A line without `gold_label` gives an unlabelled
      instance; a line that is not a JSON object or lacks a sentence raises `MalformedInputError`.
    - Tab-separated with a header (GLUE `MNLI/{train,dev_matched,...}.tsv`, or the `.txt` of the
      MultiNLI release): columns found by name, `sentence1` and `sentence2` required, the label taken
      from `gold_label`, or from `label` in dumps that name it so. The GLUE test files have neither, and
      give instances without a `label` field. A missing required column (reported at the header's line),
      a row whose number of fields differs from the header's, or an empty label raises
      `MalformedInputError`.

    In both formats an instance is the pair (premise `sentence1`, hypothesis `sentence2`), blank lines
    are skipped, and so are pairs with the gold label `-` (no annotator agreement).

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

    dataset = "MultiNLI"

    text_pairs = True

    def _examples(self, local_path: str, file_path: str | Path) -> Iterator[Example]:
        if _is_jsonl(local_path, file_path):
            return nli_jsonl_examples(local_path, file_path, label_required=False)
        return self._tsv_examples(local_path, file_path)

    @staticmethod
    def _tsv_examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        for line_number, row in headed_tsv(local_path, file_path, required=["sentence1", "sentence2"]):
            label_column = "gold_label" if "gold_label" in row else "label" if "label" in row else None
            label = (
                None
                if label_column is None
                else non_empty(file_path, line_number, row[label_column], "label")
            )
            if label == NO_GOLD_LABEL:
                continue
            yield Example(row["sentence1"], row["sentence2"], label, file_path, line_number)


def _is_jsonl(local_path: str, file_path: str | Path) -> bool:
    """Whether an MNLI file is JSON lines (else tab-separated), from its name or its first character."""
    for name in (str(file_path), local_path):
        if name.endswith(".tsv"):
            return False
        if name.endswith(".jsonl"):
            return True
    with open(local_path, "rb") as data:
        for line in data:
            start = line.lstrip(b"\xef\xbb\xbf \t\r\n")
            if start:
                return start.startswith(b"{")
    return False
