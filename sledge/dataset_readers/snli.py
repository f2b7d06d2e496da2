"""SNLI 1.0 in its published JSON-lines files (`snli_1.0_{train,dev,test}.jsonl`)."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import SledgeReader
from sledge.dataset_readers.formats import Example, nli_jsonl_examples


@DatasetReader.register("snli")
class SnliReader(SledgeReader):
    """
    Reads SNLI 1.0 `.jsonl` files (Bowman et al., 2015): one JSON object per line, of which
    `sentence1` (the premise), `sentence2` (the hypothesis) and `gold_label` (`entailment`, `neutral`,
    `contradiction`) are used; an instance is the pair (premise, hypothesis). Pairs without a gold
    label (`gold_label` `-`: the annotators did not agree) are skipped, as is usual.

    Blank lines are skipped. A line that is not a JSON object, or lacks one of the three fields, raises
    `MalformedInputError`.

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

    dataset = "SNLI"

    text_pairs = True

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        return nli_jsonl_examples(local_path, file_path)
