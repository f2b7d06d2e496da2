"""IMDB movie reviews (Maas et al., 2011) in the `aclImdb` folder layout: one review per file."""

from collections.abc import Iterable, Iterator
from pathlib import Path

from allennlp.common.file_utils import cached_path
from allennlp.data import DatasetReader, Instance

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example

IMDB_LABELS = ("neg", "pos")


@DatasetReader.register("imdb")
class ImdbReader(SledgeReader):
    """
    Reads one split of the `aclImdb` release: `file_path` is a split folder such as `aclImdb/train`
    that holds `neg/*.txt` and `pos/*.txt`, one review per file, named `<id>_<rating>.txt`. The label
    is the subfolder's name (`neg` / `pos`); everything else in the split folder (`unsup/`, `*.feat`,
    `urls_*.txt`) is ignored. Reviews are read `neg` first, then `pos`, each folder's files sorted by
    name, and every `<br />` in a review is replaced by a space.

    A split folder with neither a `pos` nor a `neg` subfolder raises `FileNotFoundError`; a review
    file that is not UTF-8 or holds no text raises `MalformedInputError` naming that file.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive (see `SledgeReader`).
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    def _read(self, file_path: str) -> Iterable[Instance]:
        split = Path(cached_path(file_path))
        labels = [label for label in IMDB_LABELS if (split / label).is_dir()]
        if not labels:
            raise FileNotFoundError(
                f"{file_path}: not an aclImdb split folder (it has neither a 'pos' nor a 'neg' subfolder)"
            )
        reviews = [(review, label) for label in labels for review in sorted((split / label).glob("*.txt"))]
        # Shard the file list, so that each worker opens only its own reviews.
        for example in self._examples(self.shard_iterable(reviews)):
            yield self.text_to_instance(example.text, example.text_pair, example.label)

    @staticmethod
    def _examples(reviews: Iterable[tuple[Path, str]]) -> Iterator[Example]:
        for review, label in reviews:
            data = review.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as error:
                line_number = data[: error.start].count(b"\n") + 1
                raise MalformedInputError(review, line_number, "not UTF-8 text") from error
            text = text.replace("<br />", " ").strip()
            if not text:
                raise MalformedInputError(review, 1, "empty review")
            yield Example(text, None, label)
