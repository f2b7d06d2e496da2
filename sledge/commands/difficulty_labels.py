"""`allennlp difficulty-labels`: easy/hard labels of training instances by K-fold cross-prediction."""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand
from allennlp.commands.train import train_model_from_file
from allennlp.common import Params

from sledge.commands.arguments import positive_int
from sledge.commands.common import exit_logits, load_sledge_archive, tensor_batches
from sledge.dataset_readers.base import without_selectors
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_file, write_atomically

PAPER_FOLDS, PAPER_SEEDS = 8, [1, 2, 3, 4, 5]


@Subcommand.register("difficulty-labels")
class DifficultyLabels(Subcommand):
    """Label every training instance easy or hard by K-fold cross-prediction (CascadeBERT)."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "CascadeBERT's difficulty labels: the training data of CONFIG is split into --folds folds; for "
            "each fold and each seed a model of the config's architecture is trained on the other folds "
            "(validated on the config's development data) and predicts the held-out fold. An instance is "
            "easy if it is predicted correctly under every seed, else hard. The config's development data "
            "(which the training run reads with the same reader) and --label-also files are predicted by "
            "every one of those models (none was trained on them) and labelled the same way. Writes "
            "a JSON file that `dataset_reader.difficulty_file` reads (for the difficulty-aware "
            "regularisation, model.difficulty_weight) and `allennlp difficulty --difficulty-file` reads "
            "(for the Difficulty Inversion Score). Costs folds x seeds trainings on (K-1)/K of the data."
        )
        subparser = parser.add_parser(self.name, description=description, help="Label instances easy/hard.")
        subparser.add_argument(
            "config_file",
            help="a sledge training config (its train_data_path and validation_data_path are labelled)",
        )
        subparser.add_argument("--output-file", required=True, help="where the labels go (JSON)")
        subparser.add_argument(
            "--folds", type=positive_int, default=PAPER_FOLDS, help=f"K (default {PAPER_FOLDS}, the paper's)"
        )
        subparser.add_argument(
            "--seeds",
            type=int,
            nargs="+",
            default=PAPER_SEEDS,
            help="training seeds; easy means right under every one (default: 5, the paper's)",
        )
        subparser.add_argument(
            "--label-also",
            action="append",
            default=[],
            metavar="DATA",
            help="another data file to label with every model (repeatable)",
        )
        subparser.add_argument("-o", "--overrides", default="", help="overrides of the config (JSON)")
        subparser.add_argument(
            "--work-dir",
            default=None,
            help="where the fold models are trained and kept (default: a temporary "
            "folder, removed at the end)",
        )
        subparser.set_defaults(
            func=lambda args: label(
                args.config_file,
                args.output_file,
                args.folds,
                args.seeds,
                args.label_also,
                args.overrides,
                args.work_dir,
            )
        )
        return subparser


def label(
    config_file: str,
    output_file: str,
    folds: int = PAPER_FOLDS,
    seeds: list[int] = PAPER_SEEDS,
    label_also: list[str] | None = None,
    overrides: str = "",
    work_dir: str | None = None,
) -> dict:
    """Train folds x seeds models, label the instances, write and return the labels."""
    check_input_path(config_file, "config_file")
    check_output_file(output_file, "--output-file")
    if folds < 2:
        raise SledgeError(f"--folds must be at least 2, got {folds}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise SledgeError(f"--seeds must be distinct, got {seeds}")
    params = Params.from_file(config_file, overrides).as_dict()
    train_data = params["train_data_path"]
    check_input_path(train_data, "train_data_path")
    for path in label_also or []:
        check_input_path(path, "--label-also")
    # The training run reads its development data with the same reader, so it needs labels too.
    wanted = dict.fromkeys([params.get("validation_data_path"), *(label_also or [])])
    others = [path for path in wanted if path and path != train_data]
    start = time.perf_counter()
    correct: dict[str, dict[str, bool]] = {path: {} for path in [*others, train_data]}
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="sledge-difficulty-"))
    try:
        for seed in seeds:
            for k in range(1, folds + 1):
                run = work / f"seed-{seed}" / f"fold-{k}-of-{folds}"
                print(
                    f"difficulty-labels: seed {seed}, fold {k} of {folds}: training on the other folds",
                    flush=True,
                )
                fold_overrides = {
                    **(json.loads(overrides) if overrides else {}),
                    "train_data_path": f"{train_data}#without-fold-{k}-of-{folds}",
                    "random_seed": seed,
                    "numpy_seed": seed,
                    "pytorch_seed": seed,
                    "evaluate_on_test": False,
                }
                train_model_from_file(config_file, str(run), json.dumps(fold_overrides), force=True)
                archive = load_sledge_archive(str(run / "model.tar.gz"))
                _and(correct[train_data], predicted_right(archive, f"{train_data}#fold-{k}-of-{folds}"))
                for path in others:
                    _and(correct[path], predicted_right(archive, path))
                if not work_dir:
                    shutil.rmtree(run, ignore_errors=True)
    finally:
        if not work_dir:
            shutil.rmtree(work, ignore_errors=True)
    # Keyed by the data file itself (no #selector): the reader finds the labels of any part of it, e.g.
    # a training part labelled across folds and a development part of the same file labelled by
    # prediction (the training data comes last, so its labels win where a line is in both).
    files: dict[str, dict[str, str]] = {}
    for path, lines in correct.items():
        labels = files.setdefault(without_selectors(path), {})
        labels.update({line: "easy" if right else "hard" for line, right in lines.items()})
    report = {
        "config": config_file,
        "overrides": overrides,
        "folds": folds,
        "seeds": seeds,
        "models_trained": folds * len(seeds),
        "cost_seconds": time.perf_counter() - start,
        "easy_share": {
            path: sum(v == "easy" for v in lines.values()) / len(lines) for path, lines in files.items()
        },
        "files": files,
    }
    write_atomically(output_file, json.dumps(report, indent=2).encode())
    print(
        f"difficulty-labels: {folds * len(seeds)} models in {report['cost_seconds']:.0f} s; easy share "
        + ", ".join(f"{path}: {share:.3f}" for path, share in report["easy_share"].items())
    )
    return report


def predicted_right(archive, data_path: str) -> dict[str, bool]:
    """{line: whether the archive's deepest exit predicts the gold label} for the examples of `data_path`."""
    reader = archive.validation_dataset_reader
    examples = reader.examples(data_path)
    instances = list(reader.read(data_path))
    logits, labels = exit_logits(archive.model, tensor_batches(instances, archive, 64, torch.device("cpu")))
    right = (logits[-1].argmax(dim=-1) == labels).tolist()
    return {str(example.line): bool(ok) for example, ok in zip(examples, right)}


def _and(into: dict[str, bool], lines: dict[str, bool]) -> None:
    for line, right in lines.items():
        into[line] = into.get(line, True) and right
