"""`allennlp sweep`: the speed/accuracy curve of a sledge model over confidence thresholds."""

import argparse
import csv
import io
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand
from tqdm import tqdm

from sledge.commands.arguments import positive_int, unit_float
from sledge.commands.common import (
    check_inputs,
    device_of,
    exit_logits,
    figure_png,
    inputs_of,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
)
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_dir, write_files
from sledge.nn import check_threshold, early_exit, exits_at_threshold, oracle_exits

PAPER_THRESHOLDS = [0.0] + [round(0.55 + 0.05 * i, 2) for i in range(10)]  # 0, 0.55, 0.6, ..., 1.0


@Subcommand.register("sweep")
class Sweep(Subcommand):
    """Measure accuracy, exits and wall-clock time of a sledge model at each confidence threshold."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "For each confidence threshold: accuracy, average exit layer and exit shares (from one full "
            "pass over the data), and measured wall-clock time of real early-exit inference: seconds per "
            "instance at batch size 1 and instances per second batched (medians over repeats after a "
            "warm-up). Adds the oracle and any baseline archives, measured in the same run on the same "
            "data. Writes sweep.json, sweep.csv and sweep.png (accuracy against time relative to the "
            "standard baseline) to the output directory."
        )
        subparser = parser.add_parser(self.name, description=description, help="Speed/accuracy sweep.")
        subparser.add_argument("archive_file", help="a (calibrated) sledge model.tar.gz")
        subparser.add_argument("input_file", help="labelled evaluation data, in the model reader's format")
        subparser.add_argument("--output-dir", required=True, help="where sweep.json/.csv/.png go")
        subparser.add_argument(
            "--thresholds", type=unit_float, nargs="+", default=PAPER_THRESHOLDS,
            help="confidence thresholds (default: 0 and 0.55 to 1.0 in steps of 0.05, as the paper)",
        )
        subparser.add_argument(
            "--baseline", action="append", default=[], metavar="[NAME=]ARCHIVE",
            help="a baseline model archive (repeatable), e.g. standard=runs/l5/model.tar.gz; the one "
            "whose exit is deepest is the standard baseline that times are relative to",
        )
        subparser.add_argument(
            "--batch-size", type=positive_int, default=32, help="batch size of batched timing"
        )
        subparser.add_argument(
            "--repeats", type=positive_int, default=3, help="timed repeats (median is reported)"
        )
        subparser.add_argument(
            "--timing-instances", type=positive_int, default=500,
            help="time on a seeded random sample of this many instances (all if fewer); accuracy always "
            "uses every instance",
        )
        subparser.add_argument("--seed", type=int, default=0, help="seed of the timing sample")
        subparser.add_argument("--cuda-device", type=int, default=-1, help="GPU id, -1 for the CPU")
        subparser.set_defaults(func=sweep_from_args)
        return subparser


def sweep_from_args(args: argparse.Namespace) -> None:
    baselines = {}
    for spec in args.baseline:
        name, _, path = spec.rpartition("=")
        if not path:
            raise SledgeError(f"--baseline {spec!r}: give [NAME=]ARCHIVE")
        name = name or Path(path).parent.name
        if name in baselines:
            raise SledgeError(f"--baseline: two baselines are named {name!r}; name them with NAME=ARCHIVE")
        baselines[name] = path
    rows = sweep(
        args.archive_file, args.input_file, args.output_dir, args.thresholds, baselines,
        args.cuda_device, args.batch_size, args.repeats, args.timing_instances, args.seed,
    )
    print_table(rows)


class _Timer:
    """Times jobs (callables over batches), interleaving the repeats so drift hits every job alike."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.jobs: dict[str, tuple[Callable, list]] = {}

    def add(self, name: str, run: Callable, batches: list) -> None:
        self.jobs[name] = (run, batches)

    def _once(self, run: Callable, batches: list) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def median_seconds(self, repeats: int) -> dict[str, float]:
        for run, batches in self.jobs.values():  # warm-up
            self._once(run, batches[: max(1, len(batches) // 10)])
        times: dict[str, list[float]] = {name: [] for name in self.jobs}
        with tqdm(total=repeats * len(self.jobs), desc="timing") as bar:
            for _ in range(repeats):
                for name, (run, batches) in self.jobs.items():
                    times[name].append(self._once(run, batches))
                    bar.update()
        return {name: statistics.median(values) for name, values in times.items()}


def sweep(
    archive_file: str,
    input_file: str,
    output_dir: str,
    thresholds: list[float] = PAPER_THRESHOLDS,
    baselines: dict[str, str] | None = None,
    cuda_device: int = -1,
    batch_size: int = 32,
    repeats: int = 3,
    timing_instances: int = 500,
    seed: int = 0,
) -> list[dict]:
    """Run the sweep; write sweep.json, sweep.csv, sweep.png to `output_dir`; return the rows."""
    check_inputs(archive_file, input_file, cuda_device)
    for name, path in (baselines or {}).items():
        check_input_path(path, f"--baseline {name}")
    check_output_dir(output_dir, "--output-dir")
    for option, value in (("--batch-size", batch_size), ("--repeats", repeats),
                          ("--timing-instances", timing_instances)):
        if value < 1:
            raise SledgeError(f"{option} must be at least 1, got {value}")
    if not thresholds:
        raise SledgeError("--thresholds: give at least one threshold")
    for threshold in thresholds:
        check_threshold(threshold, "--thresholds")
    device = device_of(cuda_device)
    archive = load_sledge_archive(archive_file, cuda_device)
    model = archive.model
    layers = model.core.layer_indices
    instances = read_labelled(archive, input_file)
    logits, labels = exit_logits(model, tensor_batches(instances, archive, 64, device))
    probs = torch.softmax(logits / model.core.temperatures.cpu()[:, None, None], dim=-1)
    confidences = probs.max(dim=-1)[0].T  # (N, exits)
    correct = (logits.argmax(dim=-1) == labels).T  # (N, exits)

    sample = sorted(random.Random(seed).sample(range(len(instances)), min(timing_instances, len(instances))))
    timed = [instances[i] for i in sample]
    single = tensor_batches(timed, archive, 1, device)
    batched = tensor_batches(timed, archive, batch_size, device)
    timer = _Timer(device.type == "cuda")
    exits_seen: dict[float, dict[int, int]] = {}  # threshold -> {id(batch-1 batch): exit taken}

    def runner(core, threshold: float, last_exit: int | None = None, record: dict | None = None) -> Callable:
        def run(batch: dict) -> None:
            result = early_exit(core, *inputs_of(batch), threshold=threshold, last_exit=last_exit)
            if record is not None:
                record[id(batch)] = int(result.exit_index)
        return run

    for threshold in thresholds:
        exits_seen[threshold] = {}
        timer.add(f"t{threshold}/1", runner(model.core, threshold, record=exits_seen[threshold]), single)
        timer.add(f"t{threshold}/b", runner(model.core, threshold), batched)
    for position in range(len(layers)):
        timer.add(f"exit{position}/1", runner(model.core, 1.0, last_exit=position), single)

    baseline_rows = []
    for name, path in (baselines or {}).items():
        other = load_sledge_archive(path, cuda_device)
        other_instances = read_labelled(other, input_file)
        other_batches = tensor_batches(other_instances, other, 64, device)
        other_logits, other_labels = exit_logits(other.model, other_batches)
        other_timed = [other_instances[i] for i in sample]
        for suffix, size in (("1", 1), ("b", batch_size)):
            timer.add(f"{name}/{suffix}", runner(other.model.core, 1.0),
                      tensor_batches(other_timed, other, size, device))
        baseline_rows.append(
            {
                "kind": "baseline",
                "name": name,
                "archive": path,
                "accuracy": float((other_logits[-1].argmax(-1) == other_labels).float().mean()),
                "average_exit_layer": float(other.model.core.layer_indices[-1]),
            }
        )

    seconds = timer.median_seconds(repeats)
    n_timed = len(sample)
    rows: list[dict] = []
    for threshold in thresholds:
        exits = exits_at_threshold(confidences, threshold)
        taken = torch.tensor([exits_seen[threshold][id(batch)] for batch in single])
        agreement = (taken == exits[sample]).float().mean()  # real runs against the full-pass exits
        rows.append(
            {
                "kind": "sledge",
                "name": f"sledge@{threshold:g}",
                "threshold": threshold,
                **_exit_statistics(exits, correct, layers),
                "seconds_per_instance": seconds[f"t{threshold}/1"] / n_timed,
                "instances_per_second": n_timed / seconds[f"t{threshold}/b"],
                "exit_agreement": float(agreement),
            }
        )
    oracle = oracle_exits(correct)
    per_exit = torch.tensor([seconds[f"exit{j}/1"] / n_timed for j in range(len(layers))])
    rows.append(
        {
            "kind": "oracle",
            "name": "oracle",
            **_exit_statistics(oracle, correct, layers),
            # Each instance costs the measured batch-1 time of running to its oracle exit.
            "seconds_per_instance": float(per_exit[oracle].mean()),
        }
    )
    for row in baseline_rows:
        row["seconds_per_instance"] = seconds[f"{row['name']}/1"] / n_timed
        row["instances_per_second"] = n_timed / seconds[f"{row['name']}/b"]
        rows.append(row)

    deepest = max(baseline_rows, key=lambda row: row["average_exit_layer"], default=None)
    if deepest is not None and deepest["average_exit_layer"] >= layers[-1]:
        standard = deepest
    else:  # no standard baseline given: sledge with no early exit stands in for it
        standard = next(row for row in rows if row.get("threshold") == 1.0) if 1.0 in thresholds else rows[-1]
    for row in rows:
        row["relative_time"] = row["seconds_per_instance"] / standard["seconds_per_instance"]
        row["standard"] = standard["name"]
    info = {
        "archive": archive_file,
        "data": input_file,
        "instances": len(instances),
        "timed_instances": n_timed,
        "timing": f"median of {repeats} repeats after a warm-up; batch 1 and batch {batch_size}; "
        f"device {device}; threads {torch.get_num_threads()}",
        "exit_layers": layers,
        "temperatures": model.core.temperatures.tolist(),
    }
    write_outputs(rows, info, Path(output_dir))
    if n_timed < len(instances):
        print(f"timings measured on a seeded random sample of {n_timed} of {len(instances)} instances")
    return rows


def _exit_statistics(exits: torch.Tensor, correct: torch.Tensor, layers: list[int]) -> dict:
    shares = torch.bincount(exits, minlength=len(layers)).double() / len(exits)
    return {
        "accuracy": float(correct[torch.arange(len(exits)), exits].float().mean()),
        "average_exit_layer": float((shares * torch.tensor(layers, dtype=torch.float64)).sum()),
        "exit_shares": {str(layer): float(share) for layer, share in zip(layers, shares)},
    }


CSV_COLUMNS = [
    "kind", "name", "threshold", "accuracy", "average_exit_layer", "seconds_per_instance",
    "instances_per_second", "relative_time", "exit_agreement",
]


def write_outputs(rows: list[dict], info: dict, output_dir: Path) -> None:
    """sweep.json ({"info", "rows"}), sweep.csv (one line a row, exit shares as columns), sweep.png."""
    report = json.dumps({"info": info, "rows": rows}, indent=2).encode()
    share_columns = [f"exit_share_layer_{layer}" for layer in info["exit_layers"]]
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS + share_columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        shares = {f"exit_share_layer_{layer}": share for layer, share in row.get("exit_shares", {}).items()}
        writer.writerow({**row, **shares})
    files = {"sweep.json": report, "sweep.csv": text.getvalue().encode(), "sweep.png": plot(rows, info)}
    write_files(output_dir, files)


def plot(rows: list[dict], info: dict, title: str | None = None) -> bytes:
    """Accuracy against processing time relative to the standard baseline (the paper's Figure 3), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    curve = sorted((row for row in rows if row["kind"] == "sledge"), key=lambda row: row["threshold"])
    axes.plot(
        [row["relative_time"] for row in curve], [row["accuracy"] for row in curve],
        "o-", color="tab:blue", label="sledge (calibrated)",
    )
    for row in curve:
        axes.annotate(f"{row['threshold']:g}", (row["relative_time"], row["accuracy"]),
                      textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:blue")
    for row in rows:
        if row["kind"] == "baseline":
            axes.plot(row["relative_time"], row["accuracy"], "s", color="tab:orange")
            axes.annotate(row["name"], (row["relative_time"], row["accuracy"]),
                          textcoords="offset points", xytext=(5, 4), fontsize=8)
        elif row["kind"] == "oracle":
            axes.plot(row["relative_time"], row["accuracy"], "*", markersize=12, color="tab:green",
                      label="oracle")
    if any(row["kind"] == "baseline" for row in rows):
        axes.plot([], [], "s", color="tab:orange", label="baselines")
    axes.set_xlabel(f"time per instance, batch 1, relative to {rows[0]['standard']}")
    axes.set_ylabel("accuracy")
    axes.set_title(title or f"{Path(info['data']).name}: {info['instances']} instances")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return figure_png(figure)


def print_table(rows: list[dict]) -> None:
    print(f"{'name':>18} {'accuracy':>9} {'avg layer':>9} {'s/inst (b1)':>12} {'inst/s (batched)':>17} "
          f"{'rel. time':>9}")
    for row in rows:
        batched = row.get("instances_per_second")
        print(f"{row['name']:>18} {row['accuracy']:>9.4f} {row['average_exit_layer']:>9.2f} "
              f"{row['seconds_per_instance']:>12.5f} {'-' if batched is None else f'{batched:.1f}':>17} "
              f"{row['relative_time']:>9.3f}")
