"""`allennlp difficulty`: what makes an instance hard, as the paper's section 5 asks."""

import argparse
import json

import numpy as np
import torch
from allennlp.commands.subcommand import Subcommand

from sledge.commands.arguments import positive_int, unit_float
from sledge.commands.common import (
    check_inputs,
    classification_only,
    device_of,
    exit_logits,
    figure_png,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
)
from sledge.dataset_readers.base import difficulty_of, read_difficulty
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_dir, write_files
from sledge.nn.difficulty import difficulty_inversion_score, difficulty_tables


@Subcommand.register("difficulty")
class Difficulty(Subcommand):
    """Relate a sledge model's calibrated confidences to length, consistency and labels."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "The paper's difficulty analyses on labelled data: per exit, Spearman's rho between its "
            "calibrated confidence and (a) the instance's length in tokens, (b) consistency (all exits "
            "predict the same label); per gold label and exit, the share of instances predicted with "
            "confidence >= --high, the average confidence and the label's F1. Writes difficulty.json, "
            "difficulty.md and two plots to the output directory."
        )
        subparser = parser.add_parser(self.name, description=description, help="Difficulty analyses.")
        subparser.add_argument("archive_file", help="a calibrated sledge model.tar.gz")
        subparser.add_argument("input_file", help="labelled data, in the format of the model's reader")
        subparser.add_argument("--output-dir", required=True, help="where the tables and plots go")
        subparser.add_argument("--high", type=unit_float, default=0.9, help="the 'confident' threshold")
        subparser.add_argument("--cuda-device", type=int, default=-1, help="GPU id, -1 for the CPU")
        subparser.add_argument("--batch-size", type=positive_int, default=64,
            help="batch size of the full pass")
        subparser.add_argument(
            "--difficulty-file", default=None,
            help="easy/hard labels of the input's instances (from allennlp difficulty-labels "
            "--label-also): adds each exit's Difficulty Inversion Score (CascadeBERT)",
        )
        subparser.set_defaults(func=lambda args: difficulty(
            args.archive_file, args.input_file, args.output_dir, args.high, args.cuda_device,
            args.difficulty_file, args.batch_size))
        return subparser


def difficulty(archive_file: str, input_file: str, output_dir: str, high: float = 0.9,
               cuda_device: int = -1, difficulty_file: str | None = None, batch_size: int = 64) -> dict:
    check_inputs(archive_file, input_file, cuda_device)
    check_output_dir(output_dir, "--output-dir")
    easy_labels = None
    if difficulty_file is not None:
        check_input_path(difficulty_file, "--difficulty-file")
        easy_labels = difficulty_of(read_difficulty(difficulty_file), input_file)
        if easy_labels is None:
            raise SledgeError(f"--difficulty-file {difficulty_file} has no labels for {input_file}")
    archive = load_sledge_archive(archive_file, cuda_device)
    model = archive.model
    classification_only(model, "allennlp difficulty (confidence, labels and F1)")
    instances = read_labelled(archive, input_file)
    logits, gold = exit_logits(model, tensor_batches(instances, archive, batch_size, device_of(cuda_device)))
    probs = torch.softmax(logits / model.core.temperatures.cpu()[:, None, None], dim=-1).numpy()
    lengths = np.array([len(instance["tokens"]) for instance in instances])
    tables = difficulty_tables(probs, gold.numpy(), lengths, high)
    if easy_labels is not None:
        lines = [str(example.line) for example in archive.validation_dataset_reader.examples(input_file)]
        missing = [line for line in lines if line not in easy_labels]
        if missing:
            shown = ", ".join(missing[:5])
            raise SledgeError(f"--difficulty-file {difficulty_file}: no label for line(s) {shown}")
        easy = np.array([easy_labels[line] == "easy" for line in lines])
        tables["easy_share"] = float(easy.mean())
        tables["dis"] = [difficulty_inversion_score(probs[j].max(axis=-1), easy) for j in range(len(probs))]
    labels = [model.vocab.get_token_from_index(i, "labels") for i in range(probs.shape[-1])]
    report = {"archive": archive_file, "data": input_file, "instances": len(instances), "high": high,
              "exit_layers": model.core.layer_indices, "labels": labels, **tables}
    markdown = to_markdown(report)
    files = {"difficulty.json": json.dumps(report, indent=2).encode(), "difficulty.md": markdown.encode()}
    write_files(output_dir, {**files, **plots(report)})
    print(markdown)
    return report


def to_markdown(report: dict) -> str:
    layers, labels = report["exit_layers"], report["labels"]
    lines = [
        f"Difficulty analyses of {report['archive']} on {report['data']} ({report['instances']} instances; "
        f"{100 * report['consistent_share']:.1f}% consistent: every exit predicts the same label).",
        "",
        "| exit layer | Spearman rho: confidence vs length | Spearman rho: confidence vs consistency |",
        "|---:|---:|---:|",
    ]
    for j, layer in enumerate(layers):
        lines.append(f"| {layer} | {report['rho_length'][j]:.3f} | {report['rho_consistency'][j]:.3f} |")
    if "dis" in report:
        lines += ["", f"Difficulty Inversion Score (CascadeBERT; {100 * report['easy_share']:.1f}% of the "
                  "instances labelled easy): " + ", ".join(
                      f"exit layer {layer} {dis:.3f}" for layer, dis in zip(layers, report["dis"])) + "."]
    lines += ["", f"Per gold label: share predicted with confidence >= {report['high']} / average "
              "confidence / F1, by exit layer.", "",
              "| label | " + " | ".join(f"layer {layer}" for layer in layers) + " |",
              "|---|" + "---:|" * len(layers)]
    for k, label in enumerate(labels):
        cells = [f"{report['high_confidence_share'][j][k]:.2f} / {report['average_confidence'][j][k]:.2f} / "
                 f"{report['f1'][j][k]:.2f}" for j in range(len(layers))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(report: dict) -> dict[str, bytes]:
    """Share of confident predictions per label and exit (the paper's Figure 5); average confidence
    against F1 per label (Figure 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, labels = report["exit_layers"], report["labels"]
    out = {}
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    width = 0.8 / len(layers)
    for j, layer in enumerate(layers):
        axes.bar(np.arange(len(labels)) + j * width, report["high_confidence_share"][j], width,
                 label=f"exit layer {layer}")
    axes.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    axes.set_ylabel(f"share with confidence >= {report['high']}")
    axes.set_title("Confident predictions per gold label")
    axes.legend(fontsize=8)
    out["high_confidence.png"] = figure_png(figure)
    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for j, layer in enumerate(layers):
        axes.scatter(report["average_confidence"][j], report["f1"][j], label=f"exit layer {layer}")
        for k, label in enumerate(labels):
            axes.annotate(label, (report["average_confidence"][j][k], report["f1"][j][k]), fontsize=7)
    axes.set_xlabel("average calibrated confidence (instances of the label)")
    axes.set_ylabel("F1 of the label")
    axes.set_title("Confidence against F1, per label and exit")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    out["confidence_vs_f1.png"] = figure_png(figure)
    return out
