"""What the sledge subcommands share: loading an archive, reading labelled data, one full pass."""

import io
import os
import tarfile
import tempfile
from pathlib import Path

import torch
from allennlp.data import Instance
from allennlp.data.data_loaders import SimpleDataLoader
from allennlp.models.archival import Archive, extracted_archive, load_archive
from allennlp.nn import util as nn_util
from tqdm import tqdm

from sledge.models.sledge_classifier import SledgeClassifier


def load_sledge_archive(archive_file: str, cuda_device: int = -1) -> Archive:
    """Load a sledge model archive, with a clear error if it is not one."""
    if not Path(archive_file).is_file():
        raise FileNotFoundError(f"no model archive at {archive_file}")
    archive = load_archive(archive_file, cuda_device=cuda_device)
    if not isinstance(archive.model, SledgeClassifier):
        raise ValueError(f"{archive_file} holds a {type(archive.model).__name__}, not a sledge model")
    archive.model.eval()
    return archive


def read_labelled(archive: Archive, data_path: str) -> list[Instance]:
    """Read `data_path` with the archive's validation reader; every instance must have a known label."""
    instances = list(archive.validation_dataset_reader.read(data_path))
    if not instances:
        raise ValueError(f"{data_path}: no instances read")
    if any("label" not in instance.fields for instance in instances):
        raise ValueError(f"{data_path}: some instances have no gold label; this command needs labels")
    vocab = archive.model.vocab
    labels = set(vocab.get_token_to_index_vocabulary("labels"))
    unknown = {instance["label"].label for instance in instances} - labels  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"{data_path}: labels {sorted(unknown)} are not among the model's {sorted(labels)}")
    return instances


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
def exit_logits(model: SledgeClassifier, batches: list[dict], desc: str = "full pass") -> tuple:
    """Every exit's uncalibrated logits, (num_exits, N, num_labels), and the gold labels, (N,)."""
    per_batch, labels = [], []
    for batch in tqdm(batches, desc=desc, leave=False):
        per_batch.append(torch.stack(model.core(*inputs_of(batch))).float().cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(per_batch, dim=1), torch.cat(labels)


def device_of(cuda_device: int) -> torch.device:
    return torch.device("cpu") if cuda_device < 0 else torch.device("cuda", cuda_device)


def write_archive_with_weights(
    archive_file: str, model: torch.nn.Module, output_file: str, extra_files: dict[str, str]
) -> None:
    """
    Write a copy of `archive_file` to `output_file` with `model`'s state dict as its weights and
    `extra_files` (name -> text) added. Written to a temporary name beside it, then renamed.
    """
    output = Path(output_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    with extracted_archive(archive_file) as directory:
        torch.save(model.state_dict(), os.path.join(directory, "weights.th"))
        for name, text in extra_files.items():
            Path(directory, name).write_text(text)
        handle, partial = tempfile.mkstemp(dir=output.parent, prefix=output.name, suffix=".partial")
        os.close(handle)
        try:
            with tarfile.open(partial, "w:gz") as tar:
                for name in sorted(os.listdir(directory)):
                    tar.add(os.path.join(directory, name), arcname=name)
            os.replace(partial, output)
        finally:
            if os.path.exists(partial):
                os.remove(partial)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it to `path`."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
