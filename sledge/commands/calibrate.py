"""`allennlp calibrate`: one temperature per exit, fitted on development data."""

import argparse
import json
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand

from sledge.archival import write_archive
from sledge.commands.arguments import positive_int
from sledge.commands.common import (
    check_inputs,
    device_of,
    exit_logits,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
)
from sledge.errors import SledgeError
from sledge.files import check_output_file
from sledge.models.sledge_classifier import SCALES_FILE
from sledge.nn import activation_ranges, expected_calibration_error, fit_temperature, negative_log_likelihood


@Subcommand.register("calibrate")
class Calibrate(Subcommand):
    """Fit a temperature per exit of a sledge model on development data and archive the result."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Fit one temperature per exit of a sledge model by maximising the log-likelihood of the "
            "development data (LBFGS), print each exit's NLL and ECE (15 bins) before and after, and "
            "write a NEW archive with the temperatures in its weights (the input archive is left as it "
            "is). A temperature divides its exit's logits: each exit's own prediction (argmax) stays the "
            "same, its confidences change, and with them the exit an early-exit run may leave at. The "
            "archive also gets the largest input each linear layer saw (int8_scales.json), the static "
            "activation scales of model.quantize 'int8-static'."
        )
        subparser = parser.add_parser(self.name, description=description, help="Calibrate a sledge model.")
        subparser.add_argument(
            "archive_file", help="the sledge model.tar.gz (or serialization folder) to calibrate"
        )
        subparser.add_argument("input_file", help="development data, in the format of the model's reader")
        subparser.add_argument(
            "--output-file",
            help="where to write the calibrated archive (default: calibrated.tar.gz beside the input "
            "archive, or inside the input serialization folder); written to a temporary name, then "
            "renamed; never the input archive itself",
        )
        subparser.add_argument("--cuda-device", type=int, default=-1, help="GPU id, -1 for the CPU")
        subparser.add_argument(
            "--batch-size", type=positive_int, default=64, help="batch size of the full pass"
        )
        subparser.set_defaults(func=calibrate_from_args)
        return subparser


def calibrate_from_args(args: argparse.Namespace) -> None:
    calibrate(args.archive_file, args.input_file, args.output_file, args.cuda_device, args.batch_size)


def default_output(archive_file: str) -> str:
    """calibrated.tar.gz inside a serialization folder, else beside the archive."""
    archive = Path(archive_file)
    return str((archive if archive.is_dir() else archive.parent) / "calibrated.tar.gz")


def calibrate(
    archive_file: str,
    input_file: str,
    output_file: str | None = None,
    cuda_device: int = -1,
    batch_size: int = 64,
) -> list[dict]:
    """Calibrate, print the table, write the calibrated archive; return the table's rows."""
    check_inputs(archive_file, input_file, cuda_device)
    output_file = output_file or default_output(archive_file)
    check_output_file(output_file, "--output-file")
    if Path(output_file).resolve() == Path(archive_file).resolve():
        raise SledgeError(
            f"the output {output_file} would be the input archive, which calibrate never overwrites; "
            "give another --output-file"
        )
    archive = load_sledge_archive(archive_file, cuda_device)
    model = archive.model
    if model.core.regression:
        raise SledgeError(
            f"{archive_file} is a regression model: temperature scaling calibrates class "
            "probabilities, and a regression model has none (its learned exit policy needs no calibration)"
        )
    instances = read_labelled(archive, input_file)
    batches = tensor_batches(instances, archive, batch_size, device_of(cuda_device))
    if model.quantize is not None or model.backend != "torch":
        raise SledgeError(
            "calibrate reads the float32 model on torch: leave model.quantize and model.backend unset"
        )
    found: dict = {}
    # One full pass: every exit's logits, and the largest input of each linear layer (int8-static's scales).
    scales = activation_ranges(
        model.core, lambda: found.update(zip(("logits", "labels"), exit_logits(model, batches)))
    )
    logits, labels = found["logits"], found["labels"]
    rows = []
    for position, layer in enumerate(model.core.layer_indices):
        temperature = fit_temperature(logits[position], labels)
        rows.append(
            {
                "exit_layer": layer,
                "temperature": temperature,
                "accuracy": float((logits[position].argmax(-1) == labels).float().mean()),
                "nll_before": negative_log_likelihood(logits[position], labels),
                "nll_after": negative_log_likelihood(logits[position], labels, temperature),
                "ece_before": expected_calibration_error(torch.softmax(logits[position], -1), labels),
                "ece_after": expected_calibration_error(
                    torch.softmax(logits[position] / temperature, -1), labels
                ),
            }
        )
    model.core.temperatures.copy_(torch.tensor([row["temperature"] for row in rows]))
    report = {"data": input_file, "instances": len(instances), "exits": rows}
    extra = {"calibration.json": json.dumps(report, indent=2), SCALES_FILE: json.dumps(scales, indent=1)}
    write_archive(archive_file, output_file, model.state_dict(), extra)
    print(f"calibrated on {len(instances)} instances of {input_file}")
    print(f"{'exit layer':>10} {'T':>7} {'accuracy':>9} {'NLL before':>11} {'NLL after':>10} "
          f"{'ECE before':>11} {'ECE after':>10}")
    for row in rows:
        print(f"{row['exit_layer']:>10} {row['temperature']:>7.3f} {row['accuracy']:>9.4f} "
              f"{row['nll_before']:>11.4f} {row['nll_after']:>10.4f} "
              f"{row['ece_before']:>11.4f} {row['ece_after']:>10.4f}")
    print(f"wrote {output_file}")
    return rows
