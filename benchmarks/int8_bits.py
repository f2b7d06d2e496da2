"""
int8 activations on 7 bits (PyTorch's default) or on 8 (what `quantize_int8` uses where the CPU's
int8 kernels do not saturate, as with VNNI): each exit's accuracy, and how often its predictions equal
the fp32 model's, for the trained models of benchmarks/int8.py (SST-2) and benchmarks/policies.py (AG
News); and the time of both at batch 1 and 32 for the first model, interleaved, medians of repeats.
Writes benchmarks/results/int8/full-range/bits.{json,md}.

    .venv/bin/python benchmarks/int8_bits.py [--repeats 5]
"""

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402
import run as bench  # noqa: E402

from sledge.commands.common import full_pass, inputs_of, load_sledge_archive, read_labelled, tensor_batches  # noqa: E402
from sledge.nn.quantize import full_range_is_exact, quantize_int8  # noqa: E402

MODELS = {
    "sst2": ["distilled-attention", "distilled-attention-seed1", "distilled-attention-seed2", "standard",
             "standard-seed1", "standard-seed2"],
    "agnews": ["sledge-lte", "standard"],
}
VARIANTS = {"fp32": None, "int8, 7 bits": False, "int8, 8 bits": True}


def at(model, full_range: bool | None):
    """The model at fp32 (None), or a copy in int8 with activations on 7 (False) or 8 (True) bits."""
    if full_range is None:
        return model
    model = copy.deepcopy(model)
    quantize_int8(model.core, full_range=full_range)
    return model


def predictions(model, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every exit's predicted labels (exits, N) and the gold labels."""
    logits, _, labels = full_pass(model, batches)
    return logits.argmax(dim=-1), labels


@torch.no_grad()
def timing(cores: dict, archive, instances, repeats: int) -> dict:
    """Seconds per instance at batch 1 and per batch of 32 for each of `cores`, interleaved."""
    sizes = {1: tensor_batches(instances[:200], archive, 1, torch.device("cpu")),
             32: tensor_batches(instances[:320], archive, 32, torch.device("cpu"))}
    times = {(name, size): [] for name in cores for size in sizes}
    for _ in range(repeats + 1):  # the first round warms up
        for size, batches in sizes.items():
            for name, core in cores.items():
                start = time.perf_counter()
                for batch in batches:
                    core.forward_all(*inputs_of(batch))
                times[(name, size)].append((time.perf_counter() - start) / len(batches))
    return {f"{name}, batch {size}": statistics.median(values[1:]) for (name, size), values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/int8/full-range")
    args = parser.parse_args()
    os.chdir(bench.ROOT)
    if not full_range_is_exact():
        sys.exit("this CPU's int8 kernels saturate with 8-bit activations: nothing to compare")
    data = policies.datasets(Path(args.work))
    results = {"machine": bench.machine(), "models": {}}
    for dataset, names in MODELS.items():
        for name in names:
            archive = load_sledge_archive(str(Path(args.work) / dataset / name / "model.tar.gz"))
            instances = read_labelled(archive, data[dataset]["eval"])
            batches = tensor_batches(instances, archive, 64, torch.device("cpu"))
            models = {variant: at(archive.model, full_range) for variant, full_range in VARIANTS.items()}
            predicted = {variant: predictions(model, batches) for variant, model in models.items()}
            reference, labels = predicted["fp32"]
            rows = {
                variant: {
                    "accuracy": (labelled == labels).float().mean(dim=1).tolist(),
                    "agreement_with_fp32": (labelled == reference).float().mean(dim=1).tolist(),
                }
                for variant, (labelled, _) in predicted.items()
            }
            results["models"][f"{dataset}/{name}"] = {"exit_layers": archive.model.core.layer_indices, **rows}
            if "timing" not in results:  # the first model's int8 copies, as quantized above
                int8 = {variant: model.core for variant, model in models.items() if variant != "fp32"}
                seconds = timing(int8, archive, instances, args.repeats)
                results["timing"] = {"model": f"{dataset}/{name}", **seconds}
            print(dataset, name, json.dumps(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bits.json").write_text(json.dumps(results, indent=2))
    report(results, out / "bits.md", args)


def report(results: dict, path: Path, args: argparse.Namespace) -> None:
    lines = [
        "# int8 activations on 7 or 8 bits: accuracy and agreement with fp32, per exit",
        "",
        f"Machine: {results['machine']}. Reproduce: `.venv/bin/python benchmarks/int8_bits.py --repeats "
        f"{args.repeats}`. Evaluation split of each dataset (SST-2 test, 1,821 sentences; AG News, the "
        "1,500 texts of run.py's split); every exit's prediction at fp32 and with dynamic int8 (one weight "
        "scale per output channel) with activations quantized to 7 bits (PyTorch's `reduce_range`) or 8.",
        "",
        "| model | exit layers | accuracy: fp32 / 7 bits / 8 bits "
        "| same prediction as fp32: 7 bits / 8 bits |",
        "|---|---|---|---|",
    ]
    for name, row in results["models"].items():
        exits = range(len(row["exit_layers"]))
        accuracy = " ; ".join(" / ".join(f"{row[v]['accuracy'][i]:.4f}" for v in VARIANTS) for i in exits)
        int8 = list(VARIANTS)[1:]
        agreement = " ; ".join(
            " / ".join(f"{100 * row[v]['agreement_with_fp32'][i]:.1f}%" for v in int8) for i in exits
        )
        layers = ", ".join(map(str, row["exit_layers"]))
        lines.append(f"| {name} | {layers} | {accuracy} | {agreement} |")
    timing = results["timing"]
    lines += [
        "",
        f"Time of every layer and exit of `{timing['model']}` (median of {args.repeats} interleaved repeats "
        "after a warm-up; 200 sentences at batch 1, ms per sentence; 320 at batch 32, ms per batch):",
        "",
        *(f"- {key}: {value * 1000:.2f} ms" for key, value in timing.items() if key != "model"),
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
