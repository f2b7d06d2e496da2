"""What the sledge subcommands share: loading an archive, reading labelled data, one full pass."""

import io
import json
import random

import torch
from allennlp.data import Instance
from allennlp.data.data_loaders import SimpleDataLoader
from allennlp.models.archival import Archive, load_archive
from allennlp.nn import util as nn_util
from tqdm import tqdm

from sledge.commands.checks import check_archive, check_cuda
from sledge.errors import SledgeError
from sledge.files import check_input_path
from sledge.models.sledge_classifier import SledgeClassifier
from sledge.nn import all_exits


def load_sledge_archive(
    archive_file: str, cuda_device: int = -1, overrides: dict | None = None, option: str = "archive_file"
) -> Archive:
    """
    Load a sledge model from an archive or a serialization folder (safely: see `sledge.archival`),
    with a clear error if it is not one (checked before anything is loaded: see `check_archive`).
    `overrides`: dotted config keys, as `-o` takes them (e.g. `{"model.backend": "onnxruntime"}`).
    """
    check_cuda(cuda_device)
    check_archive(archive_file, option, overrides)
    archive = load_archive(archive_file, cuda_device=cuda_device, overrides=json.dumps(overrides or {}))
    if not isinstance(archive.model, SledgeClassifier):
        raise SledgeError(f"{archive_file} holds a {type(archive.model).__name__}, not a sledge model")
    archive.model.eval()
    return archive


def read_labelled(archive: Archive, data_path: str) -> list[Instance]:
    """
    Read `data_path` with the archive's validation reader (which refuses an empty file and labels the
    model does not know, naming file and lines); every instance must have a gold label.
    """
    instances = list(archive.validation_dataset_reader.read(data_path))
    if any("label" not in instance.fields for instance in instances):
        raise SledgeError(f"{data_path}: some instances have no gold label; this command needs labels")
    return instances


def timing_sample(instances: list, count: int, seed: int = 0) -> list[int]:
    """The indices, in file order, of the seeded random sample of `count` instances (all if fewer) that
    `allennlp sweep` times, and the benchmarks with it."""
    return sorted(random.Random(seed).sample(range(len(instances)), min(count, len(instances))))


def check_inputs(archive_file: str, input_file: str, cuda_device: int = -1) -> None:
    """Before any computation: the GPU asked for exists, the archive is one, and the data exists."""
    check_cuda(cuda_device)
    check_archive(archive_file, "archive_file")
    check_input_path(input_file, "input_file")


def tensor_batches(
    instances: list[Instance], archive: Archive, batch_size: int, device: torch.device
) -> list[dict]:
    """The instances as model-ready batches on `device`, in data order."""
    loader = SimpleDataLoader(instances, batch_size, vocab=archive.model.vocab)
    return [nn_util.move_to_device(batch, device) for batch in loader]


def inputs_of(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The (input_ids, attention_mask, token_type_ids) of a batch."""
    tokens = batch["tokens"]
    return tokens["input_ids"], tokens["attention_mask"], tokens.get("token_type_ids")


@torch.no_grad()
def full_pass(model: SledgeClassifier, batches: list[dict], desc: str = "full pass") -> tuple:
    """
    Every exit's uncalibrated logits, (num_exits, N, num_labels); the LTE module's certainties,
    (num_exits, N), or None; and the gold labels, (N,).
    """
    per_batch, certainties, labels = [], [], []
    for batch in tqdm(batches, desc=desc, leave=False):
        logits, certainty = all_exits(model.core, *inputs_of(batch))  # on the model's backend
        per_batch.append(torch.stack(logits).float().cpu())
        if certainty is not None:
            certainties.append(torch.stack(certainty).float().cpu())
        labels.append(batch["label"].cpu())
    certainty = torch.cat(certainties, dim=1) if certainties else None
    return torch.cat(per_batch, dim=1), certainty, torch.cat(labels)


def exit_logits(model: SledgeClassifier, batches: list[dict], desc: str = "full pass") -> tuple:
    """Every exit's uncalibrated logits, (num_exits, N, num_labels), and the gold labels, (N,)."""
    logits, _, labels = full_pass(model, batches, desc)
    return logits, labels


def classification_only(model: SledgeClassifier, what: str) -> None:
    """A clear error where a command has no meaning for a regression model."""
    if model.core.regression:
        raise SledgeError(f"{what} applies to classification models; this one is a regression model")


def device_of(cuda_device: int) -> torch.device:
    return torch.device("cpu") if cuda_device < 0 else torch.device("cuda", cuda_device)


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
