"""`allennlp cascade`: one self-contained cascade archive from single-exit sledge archives."""

import argparse
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand
from allennlp.models.archival import Archive

from sledge.archival import CONFIG_NAME, WEIGHTS_NAME, read_config, stage_archive
from sledge.commands.checks import check_archive
from sledge.commands.common import load_sledge_archive
from sledge.dataset_readers.base import BACKBONE_DIR
from sledge.errors import SledgeError
from sledge.files import check_output_file, replaced_on_success
from sledge.models.sledge_cascade import MEMBER_KEYS, member_backbone


@Subcommand.register("cascade")
class CascadeCommand(Subcommand):
    """Build a cascade of complete models (CascadeBERT) from single-exit sledge archives."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Build one self-contained archive of a cascade of complete models from single-exit sledge "
            "archives (efficient or standard baselines: a backbone truncated to k layers and fine-tuned "
            "end to end), given smallest first. Their labels must agree and their tokenizers be the same "
            "(the cascade tokenizes once). The cascade is calibrated, evaluated, predicted with and swept "
            "as a multi-exit model; each member keeps the temperature it was calibrated with until the "
            "cascade is calibrated."
        )
        subparser = parser.add_parser(self.name, description=description, help="Build a model cascade.")
        subparser.add_argument(
            "archives", nargs="+", help="single-exit sledge archives, smallest first (2 or more)"
        )
        subparser.add_argument("--output-file", required=True, help="the cascade archive to write")
        subparser.set_defaults(func=lambda args: build_cascade(args.archives, args.output_file))
        return subparser


def build_cascade(archive_files: list[str], output_file: str) -> None:
    """Check the members, then write the cascade archive (to a temporary name, renamed at the end)."""
    if len(archive_files) < 2:
        raise SledgeError(f"a cascade needs at least 2 archives, got {len(archive_files)}")
    for path in archive_files:
        check_archive(path, "archives")
    check_output_file(output_file, "--output-file")
    for path in archive_files:
        if Path(path).resolve() == Path(output_file).resolve():
            raise SledgeError(f"--output-file {output_file} is one of the member archives; choose another")
    archives = [load_sledge_archive(path, option="archives") for path in archive_files]
    for path, archive in zip(archive_files, archives):
        layers = archive.model.core.layer_indices
        if len(layers) != 1 or not hasattr(archive.model.core, "encoder"):
            raise SledgeError(f"{path} has exits on layers {layers}; a cascade member is a single-exit model")
    orders = check_labels(archive_files, archives)
    check_tokenizers(archive_files, archives)
    state = {}
    for position, (archive, order) in enumerate(zip(archives, orders)):
        for key, value in archive.model.core.state_dict().items():
            if order is not None and key.startswith("exits.0.classifier."):
                value = value[order]  # rows in the first member's label order
            state[f"core.members.{position}.{key}"] = value
    state["core.temperatures"] = torch.stack([archive.model.core.temperatures[-1] for archive in archives])
    write(archive_files, archives, state, output_file)
    depths = [archive.model.core.layer_indices[-1] + 1 for archive in archives]
    print(f"wrote {output_file}: a cascade of {len(archives)} models of {', '.join(map(str, depths))} layers")


def check_labels(archive_files: list[str], archives: list[Archive]) -> list[torch.Tensor | None]:
    """The members' labels agree; for each member, the permutation to the first's order (None: same)."""
    kinds = {archive.model.core.regression for archive in archives}
    if len(kinds) > 1:
        raise SledgeError(
            "the archives mix regression and classification models: "
            + ", ".join(
                f"{path} ({'regression' if a.model.core.regression else 'classification'})"
                for path, a in zip(archive_files, archives)
            )
        )
    if kinds == {True}:
        return [None] * len(archives)
    labels = [
        [a.model.vocab.get_token_from_index(i, "labels") for i in range(a.model.core.num_labels)]
        for a in archives
    ]
    orders: list[torch.Tensor | None] = []
    for path, own in zip(archive_files, labels):
        if set(own) != set(labels[0]):
            raise SledgeError(
                f"the labels of {path} ({', '.join(sorted(own))}) differ from those of {archive_files[0]} "
                f"({', '.join(sorted(labels[0]))})"
            )
        orders.append(None if own == labels[0] else torch.tensor([own.index(label) for label in labels[0]]))
    return orders


def check_tokenizers(archive_files: list[str], archives: list[Archive]) -> None:
    """Every member tokenizes as the first does: the same tokenizer class, vocabulary and casing."""

    def signature(archive: Archive) -> tuple:
        tokenizer = archive.validation_dataset_reader.tokenizer
        return type(tokenizer).__name__, tokenizer.get_vocab(), getattr(tokenizer, "do_lower_case", None)

    first = signature(archives[0])
    for path, archive in zip(archive_files[1:], archives[1:]):
        if signature(archive) != first:
            raise SledgeError(
                f"the tokenizer of {path} differs from that of {archive_files[0]}: a cascade tokenizes its "
                "input once, so its members must share one tokenizer"
            )


def write(archive_files: list[str], archives: list[Archive], state: dict, output_file: str) -> None:
    first = read_config(archive_files[0])
    config = {
        key: first[key]
        for key in (
            "dataset_reader",
            "validation_dataset_reader",
            "data_loader",
            "validation_data_loader",
            "vocabulary",
        )
        if key in first
    }
    members = []
    for path in archive_files:
        model = read_config(path)["model"]
        members.append({key: model[key] for key in MEMBER_KEYS if key in model})
    config["model"] = {"type": "sledge_cascade", "members": members}
    with tempfile.TemporaryDirectory(prefix="sledge-cascade-") as work:
        staging = Path(work) / "archive"
        staging.mkdir()
        for position, path in enumerate(archive_files):
            member = Path(work) / f"member-{position}"
            member.mkdir()
            stage_archive(path, str(member))
            if not (member / BACKBONE_DIR).is_dir():
                raise SledgeError(f"{path} has no {BACKBONE_DIR}/ folder (its backbone config and tokenizer)")
            shutil.copytree(member / BACKBONE_DIR, staging / member_backbone(position))
            if position == 0:
                shutil.copytree(member / BACKBONE_DIR, staging / BACKBONE_DIR)
                shutil.copytree(member / "vocabulary", staging / "vocabulary")
                if (member / "meta.json").is_file():
                    shutil.copyfile(member / "meta.json", staging / "meta.json")
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        torch.save(state, staging / WEIGHTS_NAME)
        (staging / "cascade.json").write_text(json.dumps({"members": archive_files}, indent=2))
        with replaced_on_success(output_file, "wb") as file, tarfile.open(fileobj=file, mode="w:gz") as tar:
            for name in sorted(os.listdir(staging)):
                tar.add(staging / name, arcname=name)
