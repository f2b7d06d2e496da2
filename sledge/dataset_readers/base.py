"""What every sledge reader shares: the backbone's own tokenizer, instances, and clear errors."""

import copy
import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from allennlp.data import DatasetReader, Instance
from allennlp.data.fields import LabelField, MetadataField, TensorField, TransformerTextField
from transformers import AutoTokenizer

from sledge.dataset_readers.formats import Example
from sledge.dataset_readers.releases import local_data_path
from sledge.errors import MalformedInputError, SledgeError, text_problem
from sledge.nn.encoder import resolve_backbone

__all__ = ["BACKBONE_DIR", "Encoded", "MalformedInputError", "SledgeReader", "backbone_path"]

BACKBONE_DIR = "backbone"  # where a serialization directory (and so an archive) keeps the backbone


def backbone_path(transformer_model: str, serialization_dir: str | None) -> str:
    """The backbone saved beside a model (inside an archive) if there is one, else `transformer_model`."""
    if serialization_dir is not None and (Path(serialization_dir) / BACKBONE_DIR).is_dir():
        return str(Path(serialization_dir) / BACKBONE_DIR)
    return resolve_backbone(transformer_model)


@dataclass
class Encoded:
    """One instance, tokenized: its ids and segment ids, and whether it was cut to the maximum length."""

    input_ids: list[int]
    token_type_ids: list[int]
    truncated: bool


class SledgeReader(DatasetReader):
    """
    Base class of the sledge readers: tokenizes a text (or a text pair) with the backbone's own
    HuggingFace tokenizer into a `TransformerTextField` named `tokens`, plus a `label`.

    Subclasses implement `_examples` for one published format: the file's examples, each with
    `text`, `text_pair`, `label`, and the file and line it came from (see `formats.Example`). `_read`
    checks them all before it tokenizes any: a file with no example, an empty text, a text no
    tokenizer can take (a lone surrogate, from a JSON escape), or (for a model
    loaded from an archive, whose `vocabulary/labels.txt` the reader reads) labels the model was
    never trained on are errors naming the file and the lines.

    A data path is a local file or folder, or a public release's URL (`URL!member` for a member of
    an archive), downloaded once by AllenNLP's `cached_path` and checked against its pinned sha256
    (see `sledge.dataset_readers.releases`).

    A dataset released without a development set is split by the data path: `train.csv#train` is
    the file without a seeded random `dev_fraction` of its examples, `train.csv#dev` is that
    fraction, and `train.csv` is the whole file. The split is the same on every machine and run for
    the same file, `dev_fraction` and `split_seed`. A format that marks its own splits in a column
    (SICK's `SemEval_set`) is selected with `#COLUMN=VALUE`, e.g. `SICK.txt#SemEval_set=TRIAL`.

    Parameters
    ----------
    transformer_model : `str`
        The backbone whose tokenizer to use: a HuggingFace name or directory.
    max_length : `int`, optional (default = `128`)
        Token sequences (special tokens included) are truncated to this length.
    dev_fraction : `float`, optional (default = `0.05`)
        The share of a file's examples that `#dev` selects (and `#train` leaves out), in (0, 1).
    split_seed : `int`, optional (default = `2020`)
        Seed of the `#train` / `#dev` split (and of `#fold-k-of-K` / `#without-fold-k-of-K`).
    difficulty_file : `str`, optional
        Difficulty labels written by `allennlp difficulty-labels`: instances of a file it labels get a
        `difficulty` field (1 easy, 0 hard), which the difficulty-aware regularisation reads.
    serialization_dir : `str`, optional
        Passed by AllenNLP when a model is loaded from an archive: the archive's own copy of the
        tokenizer is used then, so an archive works without the original model directory, and its
        label vocabulary is what labels are checked against.
    **kwargs
        Passed to `DatasetReader` (e.g. `max_instances`).
    """

    # The dataset the format belongs to, as error messages name it.
    dataset = "the dataset"
    # Whether an instance is a text pair: True (pairs), False (single texts), None (either).
    text_pairs: bool | None = False
    # The column by which `#COLUMN=VALUE` selects examples (their `subset`), where the format has one.
    subset_column: str | None = None
    # Whether labels are float scores (a `TensorField`: regression) rather than classes (a `LabelField`).
    regression = False

    def __init__(
        self,
        transformer_model: str,
        max_length: int = 128,
        dev_fraction: float = 0.05,
        split_seed: int = 2020,
        difficulty_file: str | None = None,
        serialization_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manual_distributed_sharding=True, manual_multiprocess_sharding=True, **kwargs)
        if not 0.0 < dev_fraction < 1.0:
            raise SledgeError(f"dataset_reader.dev_fraction must lie in (0, 1), got {dev_fraction}")
        self.tokenizer = AutoTokenizer.from_pretrained(backbone_path(transformer_model, serialization_dir))
        # The fast tokenizer's Rust backend, called directly and never truncating (`encode`): the same ids
        # and segments as the tokenizer's own call for texts that fit; that call cuts the others.
        self._backend = copy.deepcopy(getattr(self.tokenizer, "backend_tokenizer", None))
        if self._backend is not None:
            self._backend.no_truncation()
            self._backend.no_padding()
        self.max_length = max_length
        self.dev_fraction = dev_fraction
        self.split_seed = split_seed
        self.known_labels = _vocabulary_labels(serialization_dir)
        self.difficulty = read_difficulty(difficulty_file) if difficulty_file else None

    def examples(self, file_path: str) -> list[Example]:
        """The checked examples `_read` turns into instances, in the same order (with their lines)."""
        path, parts = split_selector(str(file_path), self.subset_column)
        examples = list(self._examples(local_data_path(path, self.dataset), path))
        for part in parts:
            if "=" in part:
                value = part.partition("=")[2]
                examples = [example for example in examples if example.subset == value]
            else:
                examples = held_out(examples, part, self.dev_fraction, self.split_seed)
        self._check(examples, str(file_path))
        return examples

    def _read(self, file_path: str) -> Iterable[Instance]:
        examples = self.examples(file_path)
        path = without_selectors(str(file_path))
        labels = difficulty_of(self.difficulty, path)
        for example in self.shard_iterable(examples):
            easy = None
            if labels is not None:
                if str(example.line) not in labels:
                    raise MalformedInputError(path, example.line or 0, "no difficulty label for this line")
                easy = labels[str(example.line)] == "easy"
            yield self.text_to_instance(example.text, example.text_pair, example.label, easy)

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
            for text, which in ((example.text, "the text"), (example.text_pair, "the second text")):
                problem = None if text is None else text_problem(text)
                if problem is not None:
                    raise MalformedInputError(*where, f"{which} {problem}")
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

    def encode(self, text: str, text_pair: str | None = None) -> Encoded:
        """
        Tokenize as `text_to_instance` does, and say whether the text (pair) was longer than `max_length`
        tokens and so was cut to it: what `allennlp predict` and `allennlp serve` report as `truncated`.
        """
        if self._backend is not None:
            full = self._backend.encode(text, text_pair)
            ids, types = full.ids, full.type_ids
        else:  # a slow (Python) tokenizer
            full = self.tokenizer(text, text_pair, return_token_type_ids=True)
            ids, types = full["input_ids"], full["token_type_ids"]
        if len(ids) <= self.max_length:
            return Encoded(ids, types, False)
        cut = self.tokenizer(
            text, text_pair, truncation=True, max_length=self.max_length, return_token_type_ids=True
        )
        return Encoded(cut["input_ids"], cut["token_type_ids"], True)

    def encoded_instance(self, encoded: Encoded, text: str, text_pair: str | None = None) -> Instance:
        """An unlabelled instance of `encode`'s output (its metadata says whether it was truncated)."""
        return Instance({
            "tokens": TransformerTextField(
                input_ids=encoded.input_ids,
                token_type_ids=encoded.token_type_ids,
                attention_mask=[1] * len(encoded.input_ids),
                padding_token_id=self.tokenizer.pad_token_id or 0,
            ),
            "metadata": MetadataField({"text": text, "text_pair": text_pair, "truncated": encoded.truncated}),
        })

    def text_to_instance(  # type: ignore[override]
        self,
        text: str,
        text_pair: str | None = None,
        label: str | int | None = None,
        easy: bool | None = None,
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
        if easy is not None:
            fields["difficulty"] = TensorField(torch.tensor(int(easy)))
        return Instance(fields)


FOLD = re.compile(r"(without-)?fold-(\d+)-of-(\d+)")


def split_selector(file_path: str, subset_column: str | None = None) -> tuple[str, list[str]]:
    """
    `("x.csv", parts)` for `x.csv#part[#part...]`, each part `train`, `dev`, `fold-k-of-K` or
    `without-fold-k-of-K`, or `COLUMN=VALUE` where the reader's format has a `subset_column`, applied
    left to right (`train.csv#train#fold-1-of-4`: the first of 4 folds of the training part);
    `(file_path, [])` for a path without a selector (or an existing file whose name has a '#').
    """
    if "#" not in file_path or Path(file_path).exists():
        return file_path, []
    path, *parts = file_path.split("#")
    for part in parts:
        fold = FOLD.fullmatch(part)
        if part.partition("=")[0] == subset_column and part.partition("=")[2]:
            continue
        if part not in ("train", "dev") and not (fold and 1 <= int(fold.group(2)) <= int(fold.group(3))):
            subset = f", #{subset_column}=VALUE" if subset_column else ""
            raise SledgeError(
                f"{file_path}: unknown split {part!r} after '#'; use #train, #dev, #fold-k-of-K or "
                f"#without-fold-k-of-K (1 <= k <= K){subset}"
            )
    return path, parts


def without_selectors(file_path: str) -> str:
    """The data file of `file_path`: the path before any `#selector` (an existing file as it is)."""
    return file_path if Path(file_path).exists() else file_path.partition("#")[0]


def held_out(examples: list[Example], part: str, fraction: float, seed: int) -> list[Example]:
    """
    The `part` of a seeded split of `examples`, in file order. `dev`: `round(fraction * n)` of them
    (at least 1, and at least 1 left) drawn at random; `train`: the rest. `fold-k-of-K`: the k-th of
    K folds (each example in exactly one fold, sizes differing by at most 1); `without-fold-k-of-K`:
    the other K - 1 folds. The same seed gives the same split on every machine.
    """
    n = len(examples)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    fold = FOLD.fullmatch(part)
    if fold:
        k, folds = int(fold.group(2)), int(fold.group(3))
        if n < folds:
            raise SledgeError(f"cannot split {n} example(s) into {folds} folds")
        chosen = {index for position, index in enumerate(order) if position % folds == k - 1}
        keep = fold.group(1) is None
    else:
        if n < 2:
            raise SledgeError(f"cannot split {n} example(s) into train and dev")
        size = min(max(1, round(fraction * n)), n - 1)
        chosen, keep = set(order[:size]), part == "dev"
    return [example for i, example in enumerate(examples) if (i in chosen) == keep]


def read_difficulty(path: str) -> dict[str, dict[str, str]]:
    """The per-file labels of a difficulty file: {data path: {line: "easy" | "hard"}}."""
    try:
        files = json.loads(Path(path).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SledgeError(f"dataset_reader.difficulty_file {path}: not a difficulty file ({error})") from None
    for name, labels in files.items():
        if any(value not in ("easy", "hard") for value in labels.values()):
            raise SledgeError(f"dataset_reader.difficulty_file {path}: labels of {name} must be easy or hard")
    return files


def difficulty_of(files: dict[str, dict[str, str]] | None, path: str) -> dict[str, str] | None:
    """The labels a difficulty file has for the data file `path` (compared as real paths), if any."""
    for name, labels in (files or {}).items():
        if os.path.realpath(name) == os.path.realpath(path):
            return labels
    return None


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
