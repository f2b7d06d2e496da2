"""`allennlp calibrate`: one temperature per exit, fitted on development data."""

import argparse
import json
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand

from sledge.commands.common import (
    device_of,
    exit_logits,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
    write_archive_with_weights,
)
from sledge.nn import expected_calibration_error, fit_temperature, negative_log_likelihood


@Subcommand.register("calibrate")
class Calibrate(Subcommand):
    """Fit a temperature per exit of a sledge model on development data and archive the result."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Fit one temperature per exit of a sledge model by maximising the log-likelihood of the "
            "development data (LBFGS), print each exit's NLL and ECE (15 bins) before and after, and "
            "write a NEW archive with the temperatures in its weights (the input archive is left as it "
            "is). Temperatures change confidences only: every prediction stays the same."
        )
        subparser = parser.add_parser(self.name, description=description, help="Calibrate a sledge model.")
        subparser.add_argument("archive_file", help="the sledge model.tar.gz to calibrate")
        subparser.add_argument("input_file", help="development data, in the format of the model's reader")
        subparser.add_argument(
            "--output-file",
            help="where to write the calibrated archive (default: calibrated.tar.gz beside the input "
            "archive); written to a temporary name, then renamed",
        )
        subparser.add_argument("--cuda-device", type=int, default=-1, help="GPU id, -1 for the CPU")
        subparser.add_argument("--batch-size", type=int, default=64, help="batch size of the full pass")
        subparser.set_defaults(func=calibrate_from_args)
        return subparser


def calibrate_from_args(args: argparse.Namespace) -> None:
    output_file = args.output_file or str(Path(args.archive_file).parent / "calibrated.tar.gz")
    calibrate(args.archive_file, args.input_file, output_file, args.cuda_device, args.batch_size)


def calibrate(
    archive_file: str, input_file: str, output_file: str, cuda_device: int = -1, batch_size: int = 64
) -> list[dict]:
    """Calibrate, print the table, write the calibrated archive; return the table's rows."""
    archive = load_sledge_archive(archive_file, cuda_device)
    model = archive.model
    instances = read_labelled(archive, input_file)
    batches = tensor_batches(instances, archive, batch_size, device_of(cuda_device))
    logits, labels = exit_logits(model, batches)
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
    write_archive_with_weights(
        archive_file, model, output_file, {"calibration.json": json.dumps(report, indent=2)}
    )
    print(f"calibrated on {len(instances)} instances of {input_file}")
    print(f"{'exit layer':>10} {'T':>7} {'accuracy':>9} {'NLL before':>11} {'NLL after':>10} "
          f"{'ECE before':>11} {'ECE after':>10}")
    for row in rows:
        print(f"{row['exit_layer']:>10} {row['temperature']:>7.3f} {row['accuracy']:>9.4f} "
              f"{row['nll_before']:>11.4f} {row['nll_after']:>10.4f} "
              f"{row['ece_before']:>11.4f} {row['ece_after']:>10.4f}")
    print(f"wrote {output_file}")
    return rows
