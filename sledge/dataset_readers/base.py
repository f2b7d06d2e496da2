"""What every sledge reader shares: the backbone's own tokenizer, instances, and clear errors."""

import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from allennlp.common.file_utils import cached_path
from allennlp.data import DatasetReader, Instance
from allennlp.data.fields import LabelField, MetadataField, TensorField, TransformerTextField
from transformers import AutoTokenizer

from sledge.dataset_readers.formats import Example
from sledge.errors import MalformedInputError, SledgeError
from sledge.nn.encoder import resolve_backbone

__all__ = ["BACKBONE_DIR", "MalformedInputError", "SledgeReader", "backbone_path"]

BACKBONE_DIR = "backbone"  # where a serialization directory (and so an archive) keeps the backbone


def backbone_path(transformer_model: str, serialization_dir: str | None) -> str:
    """The backbone saved beside a model (inside an archive) if there is one, else `transformer_model`."""
    if serialization_dir is not None and (Path(serialization_dir) / BACKBONE_DIR).is_dir():
        return str(Path(serialization_dir) / BACKBONE_DIR)
    return resolve_backbone(transformer_model)


class SledgeReader(DatasetReader):
    """
    Base class of the sledge readers: tokenizes a text (or a text pair) with the backbone's own
    HuggingFace tokenizer into a `TransformerTextField` named `tokens`, plus a `label`.

    Subclasses implement `_examples` for one published format: the file's examples, each with
    `text`, `text_pair`, `label`, and the file and line it came from (see `formats.Example`). `_read`
    checks them all before it tokenizes any: a file with no example, an empty text, or (for a model
    loaded from an archive, whose `vocabulary/labels.txt` the reader reads) labels the model was
    never trained on are errors naming the file and the lines.

    A dataset released without a development set is split by the data path: `train.csv#train` is
    the file without a seeded random `dev_fraction` of its examples, `train.csv#dev` is that
    fraction, and `train.csv` is the whole file. The split is the same on every machine and run for
    the same file, `dev_fraction` and `split_seed`.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    dev_fraction : `float`, optional (default = `0.05`)
        The share of a file's examples that `#dev` selects (and `#train` leaves out), in (0, 1).
    split_seed : `int`, optional (default = `2020`)
        Seed of the `#train` / `#dev` split.
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive: the archive's own copy of the
        tokenizer is used then, so an archive works without the original model directory, and its
        label vocabulary is what labels are checked against.
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    # Whether an instance is a text pair: True (pairs), False (single texts), None (either).
    text_pairs: bool | None = False
    # Whether labels are float scores (a `TensorField`: regression) rather than classes (a `LabelField`).
    regression = False

    def __init__(
        self,
        transformer_model: str,
        max_length: int = 128,
        dev_fraction: float = 0.05,
        split_seed: int = 2020,
        serialization_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manual_distributed_sharding=True, manual_multiprocess_sharding=True, **kwargs)
        if not 0.0 < dev_fraction < 1.0:
            raise SledgeError(f"dataset_reader.dev_fraction must lie in (0, 1), got {dev_fraction}")
        self.tokenizer = AutoTokenizer.from_pretrained(backbone_path(transformer_model, serialization_dir))
        self.max_length = max_length
        self.dev_fraction = dev_fraction
        self.split_seed = split_seed
        self.known_labels = _vocabulary_labels(serialization_dir)

    def _read(self, file_path: str) -> Iterable[Instance]:
        path, part = split_selector(str(file_path))
        examples = list(self._examples(cached_path(path), path))
        if part is not None:
            examples = held_out(examples, part, self.dev_fraction, self.split_seed)
        self._check(examples, str(file_path))
        for example in self.shard_iterable(examples):
            yield self.text_to_instance(example.text, example.text_pair, example.label)

    def _examples(self, local_path: str, file_path: str) -> Iterator[Example]:
        """The examples of the file at `local_path` (errors name `file_path`), in order."""
        raise NotImplementedError

    def _check(self, examples: list[Example], file_path: str) -> None:
        """Every example has its text(s); every label is one the model knows (when it is known)."""
        if not examples:
            raise SledgeError(f"{file_path}: no instances in it (the file is empty)")
        unknown: dict[str, list[Example]] = {}
        for example in examples:
            where = (example.file or file_path, example.line or 0)
            if not (example.text or "").strip():
                raise MalformedInputError(*where, "empty text")
            if example.text_pair is not None and not example.text_pair.strip():
                raise MalformedInputError(*where, "empty second text of the pair")
            if self.text_pairs is True and example.text_pair is None:
                raise MalformedInputError(*where, "not a text pair")
            if self.known_labels is not None and example.label is not None and not self.regression:
                if str(example.label) not in self.known_labels:
                    unknown.setdefault(str(example.label), []).append(example)
        if unknown:
            described = "; ".join(
                f"{label!r} ({_places(found)})" for label, found in sorted(unknown.items())
            )
            raise SledgeError(
                f"{file_path}: {sum(map(len, unknown.values()))} instance(s) have labels the model was not "
                f"trained on: {described}. The model knows: {', '.join(sorted(self.known_labels or []))}"
            )

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
        if label is not None and self.regression:
            fields["label"] = TensorField(torch.tensor(float(label)))
        elif label is not None:
            fields["label"] = LabelField(str(label))
        return Instance(fields)


SPLITS = ("train", "dev")


def split_selector(file_path: str) -> tuple[str, str | None]:
    """`("x.csv", "dev")` for `x.csv#dev` (likewise `#train`); `(file_path, None)` otherwise."""
    path, hash_sign, part = file_path.rpartition("#")
    if not hash_sign or Path(file_path).exists():
        return file_path, None
    if part not in SPLITS:
        raise SledgeError(f"{file_path}: unknown split {part!r} after '#'; use #train or #dev")
    return path, part


def held_out(examples: list[Example], part: str, fraction: float, seed: int) -> list[Example]:
    """
    The `part` ("dev" or "train") of a seeded split of `examples`: `round(fraction * n)` of them (at
    least 1, and at least 1 left) drawn at random for dev, the rest for train, both in file order.
    """
    n = len(examples)
    if n < 2:
        raise SledgeError(f"cannot split {n} example(s) into train and dev")
    size = min(max(1, round(fraction * n)), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    dev = set(order[:size])
    return [example for i, example in enumerate(examples) if (i in dev) == (part == "dev")]


def _vocabulary_labels(serialization_dir: str | None) -> set[str] | None:
    """The labels of a trained model's vocabulary (`vocabulary/labels.txt`), if there is one."""
    if serialization_dir is None:
        return None
    path = Path(serialization_dir) / "vocabulary" / "labels.txt"
    if not path.is_file():
        return None
    return {line for line in path.read_text(encoding="utf-8").splitlines() if line}


def _places(examples: list[Example]) -> str:
    lines = [f"line {example.line}" for example in examples[:5] if example.line is not None]
    files = {str(example.file) for example in examples if example.file is not None}
    where = ", ".join(lines) if len(files) <= 1 else f"{len(examples)} files, e.g. {sorted(files)[0]}"
    return where + (f" and {len(examples) - 5} more" if len(examples) > 5 else "")
