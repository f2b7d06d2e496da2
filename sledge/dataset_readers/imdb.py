"""IMDB movie reviews (Maas et al., 2011) in the `aclImdb` folder layout: one review per file."""

from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example
from sledge.errors import SledgeError

IMDB_LABELS = ("neg", "pos")


@DatasetReader.register("imdb")
class ImdbReader(SledgeReader):
    """
    Reads one split of the `aclImdb` release: `file_path` is a split folder such as `aclImdb/train`
    that holds `neg/*.txt` and `pos/*.txt`, one review per file, named `<id>_<rating>.txt`. The label
    is the subfolder's name (`neg` / `pos`); everything else in the split folder (`unsup/`, `*.feat`,
    `urls_*.txt`) is ignored. Reviews are read `neg` first, then `pos`, each folder's files sorted by
    name, and every `<br />` in a review is replaced by a space.

    A split folder with neither a `pos` nor a `neg` subfolder raises `SledgeError`; a review
    file that is not UTF-8 or holds no text raises `MalformedInputError` naming that file.

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

    dataset = "IMDB"

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        split = Path(local_path)
        labels = [label for label in IMDB_LABELS if (split / label).is_dir()]
        if not labels:
            raise SledgeError(
                f"{file_path}: not an aclImdb split folder (it has neither a 'pos' nor a 'neg' subfolder)"
            )
        for label in labels:
            for review in sorted((split / label).glob("*.txt")):
                data = review.read_bytes()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as error:
                    line_number = data[: error.start].count(b"\n") + 1
                    raise MalformedInputError(review, line_number, "not UTF-8 text") from error
                text = text.replace("<br />", " ").strip()
                if not text:
                    raise MalformedInputError(review, 1, "empty review")
                yield Example(text, None, label, review, 1)
