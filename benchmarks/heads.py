"""
Stronger shallow exits: self-distillation and richer exit heads, on real data.

For SST-2 and AG News (the splits of `run.py`), train the sledge model (exits 0, 1, 3, 5; MiniLM-L6,
2 epochs) with each (training strategy, exit head) combination below, calibrate each on dev, and sweep
their confidence curves in ONE `allennlp sweep` run (`--also`) with the efficient and standard
baselines, so every time is measured side by side. Then time each head type's exit against one
transformer layer at batch 1 and 32 (`head_cost`). Writes benchmarks/results/heads/.

    .venv/bin/python benchmarks/heads.py                 # both datasets
    .venv/bin/python benchmarks/heads.py --train-only    # train what is missing, sweep nothing
    .venv/bin/python benchmarks/heads.py --report-only

Models already trained are reused unless --retrain; the baselines are run.py's.
"""

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402  (benchmarks/policies.py: data, training, paths)
import run as bench  # noqa: E402

ROOT = bench.ROOT
DETACHED = bench.STRATEGIES["detached"]
DISTILLED = {**DETACHED, "model.training_strategy": {"type": "distilled"}}
COMBINATIONS = {
    "detached-linear": DETACHED,  # today's model: the MiniLM configs as they were
    "distilled-linear": DISTILLED,
    "distilled-mlp": {**DISTILLED, "model.exit_head": {"type": "mlp"}},
    "distilled-attention": {**DISTILLED, "model.exit_head": {"type": "attention"}},
}
PER_DATASET = {
    "sst2": list(COMBINATIONS),
    "agnews": ["detached-linear", "distilled-linear", "distilled-attention"],
}


def train_all(dataset: str, data: dict, work: Path, retrain: bool) -> dict:
    trained = {
        name: policies.train(name, layers, data, work, {}, retrain)
        for name, layers in policies.BASELINES.items()
    }
    for name in PER_DATASET[dataset]:
        trained[name] = policies.train(name, [0, 1, 3, 5], data, work, COMBINATIONS[name], retrain)
    return trained


def benchmark(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    work, out = work / dataset, out / dataset
    out.mkdir(parents=True, exist_ok=True)
    trained = train_all(dataset, data, work, args.retrain)
    (out / "trained.json").write_text(json.dumps(trained, indent=2))
    allennlp = str(bench.BIN / "allennlp")
    calibrated = {}
    for name in PER_DATASET[dataset]:
        calibrated[name] = work / name / "calibrated.tar.gz"
        bench.run(
            [
                allennlp,
                "calibrate",
                str(work / name / "model.tar.gz"),
                data["dev"],
                "--output-file",
                str(calibrated[name]),
            ],
            out / f"calibrate-{name}.log",
        )
    first, *others = PER_DATASET[dataset]
    bench.run(
        [
            allennlp,
            "sweep",
            str(calibrated[first]),
            data["eval"],
            "--output-dir",
            str(out),
            "--name",
            first,
            *[f"--also={name}={calibrated[name]}" for name in others],
            *[f"--baseline={name}={work / name / 'model.tar.gz'}" for name in policies.BASELINES],
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
        ],
        work / "heads-sweep.log",
    )


def head_cost(repeats: int = 30) -> dict:
    """Each head type's exit (the encoder's states to logits) against one MiniLM-L6 layer, batch 1 and 32."""
    import torch

    from sledge.nn import EXIT_HEADS, LayerwiseEncoder, MultiExitClassifier

    torch.manual_seed(0)
    encoder = LayerwiseEncoder("sentence-transformers/all-MiniLM-L6-v2")
    result = {"threads": torch.get_num_threads(), "repeats": repeats, "length": 32, "layers": {}, "heads": {}}
    models = {
        name: MultiExitClassifier(encoder, [0, 5], 2, pooling="mean", exit_head={"type": name}).eval()
        for name in EXIT_HEADS
    }
    for batch in (1, 32):
        ids = torch.randint(1000, 20000, (batch, 32))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden, additive = encoder.embed(ids, mask)
            hidden = encoder.layer(0, hidden, additive)
            jobs = {"layer": functools.partial(encoder.layer, 1, hidden, additive)}
            for name, model in models.items():
                jobs[name] = functools.partial(
                    exit_logits, model.exits[0], [model.pool(hidden, mask)], hidden, mask
                )
            times: dict[str, list[float]] = {name: [] for name in jobs}
            for _ in range(3):
                for job in jobs.values():
                    job()
            for _ in range(repeats):  # interleaved
                for name, job in jobs.items():
                    start = time.perf_counter()
                    job()
                    times[name].append(time.perf_counter() - start)
        layer = statistics.median(times["layer"])
        result["layers"][str(batch)] = layer
        for name in EXIT_HEADS:
            seconds = statistics.median(times[name])
            result["heads"].setdefault(name, {})[str(batch)] = {
                "seconds": seconds,
                "share_of_a_layer": seconds / layer,
            }
    return result


def exit_logits(head, pooled, hidden, mask):
    return head.classify(head.features(pooled, hidden, mask))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["sst2", "agnews"], choices=["sst2", "agnews"])
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--out", default="benchmarks/results/heads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=300)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(COMBINATIONS), help="these combinations only")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.only:  # trained, swept and reported: the combinations named, of those each dataset has
        for dataset, names in PER_DATASET.items():
            PER_DATASET[dataset] = [name for name in names if name in args.only]
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = policies.datasets(work)
    for dataset in args.datasets:
        if args.train_only:
            train_all(dataset, data[dataset], work / dataset, args.retrain)
        elif not args.report_only:
            benchmark(dataset, data[dataset], work, out, args)
    if args.train_only:
        return
    if not args.report_only or not (out / "head_cost.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / "head_cost.json").write_text(json.dumps(head_cost(), indent=2))
    report(out, args)


TARGETS = {
    "sst2": {"exit_0": 0.836, "exit_1": 0.858, "point_accuracy": 0.874, "point_layer": 1.55, "point_ms": 5.5}
}


def summarise(dataset: str, out: Path) -> dict:
    sweep = json.loads((out / "sweep.json").read_text())
    rows, info = sweep["rows"], sweep["info"]
    trained = json.loads((out / "trained.json").read_text())
    standard = next(row for row in rows if row["name"] == "standard")
    today = sorted(
        (row for row in rows if row.get("model") == "detached-linear" and row["kind"] == "sledge"),
        key=lambda r: r["seconds_per_instance"],
    )
    combos = {}
    for name in PER_DATASET[dataset]:
        curve = [row for row in rows if row.get("model") == name and row["kind"] == "sledge"]
        within = [row for row in curve if row["accuracy"] >= standard["accuracy"] - 0.005]
        pick = min(within, key=lambda row: row["seconds_per_instance"]) if within else None
        # Against today's curve at the same measured batch-1 time: today's best accuracy at most that slow.
        gaps = []
        for row in curve:
            slower_or_equal = [
                t["accuracy"] for t in today if t["seconds_per_instance"] <= row["seconds_per_instance"]
            ]
            if slower_or_equal:
                gaps.append(row["accuracy"] - max(slower_or_equal))
        target = TARGETS.get(dataset)
        point = None
        if target:
            cheap = [
                row
                for row in curve
                if row["average_exit_layer"] <= target["point_layer"]
                and row["seconds_per_instance"] * 1000 <= target["point_ms"]
            ]
            point = max(cheap, key=lambda row: row["accuracy"]) if cheap else None
        combos[name] = {
            "exit_accuracies": [e["accuracy"] for e in info["exit_metrics"][name]],
            "train_seconds": trained[name]["train_seconds"],
            "within_half_point": None
            if pick is None
            else {
                "value": pick["value"],
                "accuracy": pick["accuracy"],
                "average_exit_layer": pick["average_exit_layer"],
                "speedup_batch1": standard["seconds_per_instance"] / pick["seconds_per_instance"],
                "throughput_ratio_batch32": pick["instances_per_second"] / standard["instances_per_second"],
            },
            "worst_gap_to_today_at_equal_time": min(gaps) if gaps else None,
            "target_point": None
            if point is None
            else {
                "value": point["value"],
                "accuracy": point["accuracy"],
                "average_exit_layer": point["average_exit_layer"],
                "ms": point["seconds_per_instance"] * 1000,
            },
        }
    summary = {
        "standard": {
            "accuracy": standard["accuracy"],
            "ms": standard["seconds_per_instance"] * 1000,
            "train_seconds": trained["standard"]["train_seconds"],
        },
        "efficient": {
            name: {"accuracy": row["accuracy"], "ms": row["seconds_per_instance"] * 1000}
            for row in rows
            if row["kind"] == "baseline" and (name := row["name"]) != "standard"
        },
        "combinations": combos,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def report(out: Path, args: argparse.Namespace) -> None:
    lines = [
        "# Stronger shallow exits: self-distillation and exit heads, MiniLM-L6, this machine",
        "",
        f"Machine: {bench.machine()}.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/heads.py --datasets {' '.join(args.datasets)}"
        + (f" --only {' '.join(args.only)}" if args.only else "")
        + f" --timing-instances {args.timing_instances}`. Every combination of training strategy and exit "
        "head is its own model (exits 0, 1, 3, 5; 2 epochs), calibrated on dev; their confidence curves and "
        "the baselines are timed in ONE `allennlp sweep` run per dataset (`--also`; median of "
        f"{args.repeats} repeats after a warm-up, a seeded sample of {args.timing_instances} evaluation "
        "instances, batch 1 and 32). `detached-linear` is the MiniLM configs' model before this change. "
        "`distilled`: temperature 2, gold weight 0.5, teacher detached, one stage.",
        "",
    ]
    for dataset in ("sst2", "agnews"):
        if not (out / dataset / "sweep.json").exists():
            continue
        summary = summarise(dataset, out / dataset)
        standard = summary["standard"]
        lines += [
            f"## {dataset}",
            "",
            f"![curves]({dataset}/sweep.png)",
            "",
            f"Standard baseline: accuracy {standard['accuracy']:.4f}, {standard['ms']:.2f} ms per instance "
            "at "
            "batch 1. Efficient baselines: "
            + ", ".join(
                f"{name} {e['accuracy']:.4f} ({e['ms']:.2f} ms)" for name, e in summary["efficient"].items()
            )
            + ".",
            "",
            "| model | exit 0 / 1 / 3 / 5 accuracy | fastest within 0.5 pt: setting, speed-up b1, "
            "throughput b32 | worst accuracy gap to detached-linear at equal time | train s |",
            "|---|---|---|---:|---:|",
        ]
        for name, combo in summary["combinations"].items():
            exits = " / ".join(f"{a:.4f}" for a in combo["exit_accuracies"])
            within = combo["within_half_point"]
            cell = (
                "none"
                if within is None
                else (
                    f"{within['value']:g}: {within['speedup_batch1']:.2f}x, "
                    f"{within['throughput_ratio_batch32']:.2f}x"
                )
            )
            gap = combo["worst_gap_to_today_at_equal_time"]
            lines.append(
                f"| {name} | {exits} | {cell} | {'-' if gap is None else f'{100 * gap:+.2f} pt'} | "
                f"{combo['train_seconds']:.0f} |"
            )
        if dataset in TARGETS:
            target = TARGETS[dataset]
            lines += [
                "",
                f"Targets (SST-2): exit 0 >= {target['exit_0']}, exit 1 >= {target['exit_1']}, the last "
                "exit within 0.5 points of the standard, and a setting of at least "
                f"{target['point_accuracy']} with average exit layer <= {target['point_layer']} and at most "
                f"{target['point_ms']} ms per sentence at batch 1:",
                "",
            ]
            for name, combo in summary["combinations"].items():
                exits = combo["exit_accuracies"]
                point = combo["target_point"]
                met = [
                    exits[0] >= target["exit_0"],
                    exits[1] >= target["exit_1"],
                    exits[-1] >= standard["accuracy"] - 0.005,
                    point is not None and point["accuracy"] >= target["point_accuracy"],
                ]
                described = (
                    "no setting that cheap"
                    if point is None
                    else (
                        f"best such setting {point['value']:g}: {point['accuracy']:.4f}, avg exit layer "
                        f"{point['average_exit_layer']:.2f}, {point['ms']:.2f} ms"
                    )
                )
                lines.append(
                    f"- {name}: exit 0 {'met' if met[0] else 'missed'}, "
                    f"exit 1 {'met' if met[1] else 'missed'}, "
                    f"last exit {'met' if met[2] else 'missed'}; {described} "
                    f"({'met' if met[3] else 'missed'})."
                )
        lines.append("")
    cost = json.loads((out / "head_cost.json").read_text())
    lines += [
        "## Cost of one exit, by head type",
        "",
        f"One exit (from the encoder's states to logits) against one MiniLM-L6 layer, sequences of "
        f"{cost['length']} tokens, median of {cost['repeats']} interleaved repeats, "
        f"{cost['threads']} threads:",
        "",
        "| head | batch 1: ms, share of a layer | batch 32: ms, share of a layer |",
        "|---|---:|---:|",
    ]
    for name, by_batch in cost["heads"].items():
        cells = [
            f"{by_batch[b]['seconds'] * 1000:.3f} ms, {100 * by_batch[b]['share_of_a_layer']:.1f}%"
            for b in ("1", "32")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        f"| (one layer) | {cost['layers']['1'] * 1000:.3f} ms | {cost['layers']['32'] * 1000:.3f} ms |"
    )
    (out / "report.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
