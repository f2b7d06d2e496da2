"""AG News in its published CSV: `"class","title","description"` per row, classes 1..4."""

import csv
from collections.abc import Iterator
from pathlib import Path

from allennlp.data import DatasetReader

from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.formats import Example

# The class names of `classes.txt`, in the order of the class numbers 1..4.
AG_NEWS_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


@DatasetReader.register("ag_news")
class AgNewsReader(SledgeReader):
    """
    Reads AG News `train.csv` / `test.csv` (Zhang et al., 2015) with the `csv` module: no header, three
    quoted fields per row, the class number (1..4), the title and the description. The text of an
    instance is the title, a space, and the description; its label is the class name of `classes.txt`
    (`World`, `Sports`, `Business`, `Sci/Tech`).

    The only change to the published text is that the escaped dollar sign `\\$` (as in `\\$1 billion`)
    becomes `$`; the other backslashes (which stand for line breaks in the source feeds) and HTML
    entity remnants such as ` #39;` are left as they are.

    Blank lines are skipped. A row with other than 3 fields, or a class outside 1..4, raises
    `MalformedInputError` with the line number where the row starts.

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

    dataset = "AG News"

    @staticmethod
    def _examples(local_path: str, file_path: str | Path) -> Iterator[Example]:
        with open(local_path, encoding="utf-8", newline="") as data:
            rows = csv.reader(data)
            while True:
                line_number = rows.line_num + 1  # where the next row starts
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as error:
                    raise MalformedInputError(file_path, line_number, f"unreadable CSV ({error})") from error
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 3:
                    raise MalformedInputError(
                        file_path, line_number, f"{len(row)} field(s), expected 3 (class, title, description)"
                    )
                number, title, description = row
                if number not in AG_NEWS_CLASSES:
                    raise MalformedInputError(file_path, line_number, f"class {number!r} is not one of 1..4")
                text = f"{_unescape(title)} {_unescape(description)}"
                yield Example(text, None, AG_NEWS_CLASSES[number], file_path, line_number)


def _unescape(text: str) -> str:
    return text.replace("\\$", "$")
