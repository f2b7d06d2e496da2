"""What every sledge reader shares: the backbone's own tokenizer, instances, and clear errors."""

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from allennlp.common.file_utils import cached_path
from allennlp.data import DatasetReader, Instance
from allennlp.data.fields import LabelField, MetadataField, TransformerTextField
from transformers import AutoTokenizer

from sledge.nn.encoder import resolve_backbone

BACKBONE_DIR = "backbone"  # where a serialization directory (and so an archive) keeps the backbone


def backbone_path(transformer_model: str, serialization_dir: str | None) -> str:
    """The backbone saved beside a model (inside an archive) if there is one, else `transformer_model`."""
    if serialization_dir is not None and (Path(serialization_dir) / BACKBONE_DIR).is_dir():
        return str(Path(serialization_dir) / BACKBONE_DIR)
    return resolve_backbone(transformer_model)


class MalformedInputError(ValueError):
    """A line of a data file that does not have the reader's format; the message names file and line."""

    def __init__(self, file_path: str | Path, line_number: int, problem: str) -> None:
        super().__init__(f"{file_path}, line {line_number}: {problem}")


class SledgeReader(DatasetReader):
    """
    Base class of the sledge readers: tokenizes a text (or a text pair) with the backbone's own
    HuggingFace tokenizer into a `TransformerTextField` named `tokens`, plus a `label`.

    Subclasses implement `_examples` for one published format: the file's examples, each with
    `text`, `text_pair` and `label` (see `formats.Example`); `_read` shards and tokenizes them.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive: the archive's own copy of the
        tokenizer is used then, so an archive works without the original model directory.
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    def __init__(
        self,
        transformer_model: str,
        max_length: int = 128,
        serialization_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manual_distributed_sharding=True, manual_multiprocess_sharding=True, **kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(backbone_path(transformer_model, serialization_dir))
        self.max_length = max_length

    def _read(self, file_path: str) -> Iterable[Instance]:
        examples = self._examples(cached_path(file_path), file_path)
        for example in self.shard_iterable(examples):
            yield self.text_to_instance(example.text, example.text_pair, example.label)

    def _examples(self, local_path: str, file_path: str) -> Iterator[Any]:
        """The examples of the file at `local_path` (errors name `file_path`), in order."""
        raise NotImplementedError

    def text_to_instance(  # type: ignore[override]
        self, text: str, text_pair: str | None = None, label: str | int | None = None
    ) -> Instance:
        encoded = self.tokenizer(
            text, text_pair, truncation=True, max_length=self.max_length, return_token_type_ids=True
        )
        fields: dict[str, Any] = {
            "tokens": TransformerTextField(
                input_ids=encoded["input_ids"],
                token_type_ids=encoded["token_type_ids"],
                attention_mask=encoded["attention_mask"],
                padding_token_id=self.tokenizer.pad_token_id or 0,
            ),
            "metadata": MetadataField({"text": text, "text_pair": text_pair}),
        }
        if label is not None:
            fields["label"] = LabelField(str(label))
        return Instance(fields)
