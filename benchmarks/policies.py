"""
Exit policies on real data: confidence, entropy, patience and learned (BERxiT's LTE) on one model.

For SST-2 and AG News (the splits of `run.py`): train the sledge model with the learning-to-exit module
(exits 0, 1, 3, 5; the MiniLM configs' `detached` strategy), calibrate it on dev, and sweep all four
policies, plus the confidence policy without temperature scaling (the paper's Table 4 ablation), on one
plot with the efficient and standard baselines timed in the same run. For STS-B (regression; the
original train / dev / test files): train the sledge model (LTE on), the efficient baselines and the
standard baseline with `stsb_minilm.jsonnet`, and sweep the learned and patience policies on Pearson's
r; the layer-wise Pearson of each exit (BERxiT's Figure 6). Writes benchmarks/results/policies/.

    .venv/bin/python benchmarks/policies.py                     # everything (about 3 h on 2 cores)
    .venv/bin/python benchmarks/policies.py --datasets stsb
    .venv/bin/python benchmarks/policies.py --datasets stsb --sledge distilled-attention-lte \
        --out benchmarks/results/policies-distilled-attention --timing-instances 200  # STS-B config's pair
    .venv/bin/python benchmarks/policies.py --report-only       # the report from the results there

The single-exit baselines of SST-2 and AG News are `run.py`'s (`runs/benchmarks/<dataset>/`), trained
by it or here if missing; models already trained are reused unless --retrain.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (benchmarks/run.py: data splits, training, timing conventions)

ROOT = bench.ROOT
BASELINES = {"standard": [5], "efficient-0": [0], "efficient-1": [1], "efficient-3": [3]}
LTE = {"model.learn_to_exit": True}
SLEDGE_RECIPES = {  # the sledge model (`--sledge`) and its overrides of run.BASE (detached, linear heads)
    "sledge-lte": LTE,
    "distilled-attention-lte": {
        **LTE, "model.training_strategy": {"type": "distilled"}, "model.exit_head": {"type": "attention"}
    },
}
RECIPE_NOTES = {
    "sledge-lte": "the `detached` strategy with linear heads (the MiniLM configs' pair when this ran)",
    "distilled-attention-lte": "the `distilled` strategy with attention heads (the MiniLM classification "
    "configs' pair)",
}
SLEDGE = "sledge-lte"
CLASSIFICATION_POLICIES = [
    "confidence",
    '{"type": "confidence", "calibrated": false}',
    "entropy",
    "patience",
    "learned",
]
# The LTE module's certainties bunch (between 0.6 and 0.7 for the detached-linear model, 0.45 and 0.6 on
# STS-B dev for the distilled-attention one): a fine grid there.
LEARNED_GRID = [0.0, *(round(0.45 + 0.01 * i, 2) for i in range(16)), 0.62, 0.64, 0.66, 0.68, 0.7, 1.0]
REGRESSION_POLICIES = [
    "learned:" + ",".join(f"{value:g}" for value in LEARNED_GRID),
    "patience",
    '{"type": "patience", "tolerance": 0.25}',
]
TIMING_INSTANCES = 300
TOLERANCE = {"sst2": 0.005, "agnews": 0.005, "stsb": 0.01}  # "within 0.5 points" (1 Pearson point)


def relative(path: str | Path) -> str:
    """A path relative to the repository root (the shared data is ../shared/data/...)."""
    return os.path.relpath(os.path.abspath(path), ROOT)  # abspath: a symbolic link stays as it is


def datasets(work: Path) -> dict[str, dict]:
    data = {
        name: {**spec, **{k: relative(spec[k]) for k in ("train", "dev", "eval")}}
        for name, spec in bench.datasets(work).items()
    }
    stsb = Path("../shared/data/stsb")
    data["stsb"] = {
        "config": "training_config/stsb_minilm.jsonnet",
        "train": str(stsb / "sts-train.csv"),
        "dev": str(stsb / "sts-dev.csv"),
        "eval": str(stsb / "sts-test.csv"),
        "note": "STS-B, the original files: 5,749 train / 1,500 dev / 1,379 test (evaluation) pairs",
    }
    return data


def train(name: str, layers: list[int], data: dict, work: Path, extra: dict, retrain: bool) -> dict:
    directory = work / name
    record = directory / "benchmark_train.json"
    if record.exists() and (directory / "model.tar.gz").exists() and not retrain:
        return json.loads(record.read_text())
    overrides = {
        **bench.BASE,
        "model.layer_indices": layers,
        "train_data_path": data["train"],
        "validation_data_path": data["dev"],
        "test_data_path": data["eval"],
        **extra,
    }
    work.mkdir(parents=True, exist_ok=True)
    seconds = bench.run(
        [
            str(bench.BIN / "allennlp"),
            "train",
            data["config"],
            "-s",
            str(directory),
            "--force",
            "--include-package",
            "sledge",
            "-o",
            json.dumps(overrides),
        ],
        work / f"{name}.train.log",
    )
    metrics = json.loads((directory / "metrics.json").read_text())
    result = {
        "name": name,
        "layers": layers,
        "overrides": overrides,
        "wall_seconds": seconds,
        "train_seconds": bench._seconds(metrics["training_duration"]),
        "test_metrics": {
            k[5:]: v
            for k, v in metrics.items()
            if k.startswith("test_") and ("accuracy" in k or "pearson" in k or "spearman" in k)
        },
    }
    record.write_text(json.dumps(result, indent=2))
    return result


def benchmark(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    work, out = work / dataset, out / dataset
    out.mkdir(parents=True, exist_ok=True)
    regression = dataset == "stsb"
    trained = {name: train(name, layers, data, work, {}, args.retrain) for name, layers in BASELINES.items()}
    sledge = args.sledge
    trained[sledge] = train(sledge, [0, 1, 3, 5], data, work, SLEDGE_RECIPES[sledge], args.retrain)
    (out / "trained.json").write_text(json.dumps(trained, indent=2))
    allennlp = str(bench.BIN / "allennlp")
    model = work / sledge / "model.tar.gz"
    if not regression:
        calibrated = work / sledge / "calibrated.tar.gz"
        bench.run(
            [allennlp, "calibrate", str(model), data["dev"], "--output-file", str(calibrated)],
            out / "calibrate.log",
        )
        model = calibrated
    policies = REGRESSION_POLICIES if regression else CLASSIFICATION_POLICIES
    baselines = [f"--baseline={name}={work / name / 'model.tar.gz'}" for name in BASELINES]
    bench.run(
        [
            allennlp,
            "sweep",
            str(model),
            data["eval"],
            "--output-dir",
            str(out),
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
            *[f"--policy={policy}" for policy in policies],
            *baselines,
        ],
        work / "policies-sweep.log",
    )


def summarise(dataset: str, out: Path) -> dict:
    sweep = json.loads((out / "sweep.json").read_text())
    trained = json.loads((out / "trained.json").read_text())
    metric = sweep["info"]["metric"]
    rows = sweep["rows"]
    standard = next(row for row in rows if row["name"] == "standard")
    target = standard[metric] - TOLERANCE[dataset]
    policies = {}
    for label in dict.fromkeys(row["policy"] for row in rows if row["kind"] == "sledge"):
        curve = [row for row in rows if row["kind"] == "sledge" and row["policy"] == label]
        within = [row for row in curve if row[metric] >= target]
        pick = min(within, key=lambda row: row["seconds_per_instance"]) if within else None
        best = max(curve, key=lambda row: row[metric])
        policies[label] = {
            "best": {metric: best[metric], "value": best["value"]},
            "within": None
            if pick is None
            else {
                "value": pick["value"],
                metric: pick[metric],
                "average_exit_layer": pick["average_exit_layer"],
                "seconds_per_instance": pick["seconds_per_instance"],
                "speedup_batch1": standard["seconds_per_instance"] / pick["seconds_per_instance"],
                "speedup_batched": pick["instances_per_second"] / standard["instances_per_second"],
            },
        }
    summary = {
        "metric": metric,
        "tolerance": TOLERANCE[dataset],
        "standard": {
            metric: standard[metric],
            "seconds_per_instance": standard["seconds_per_instance"],
            "instances_per_second": standard["instances_per_second"],
        },
        "policies": policies,
        "sledge": next(name for name in trained if name not in BASELINES),
        # run.py's records (the SST-2 and AG News baselines) hold the single exit's test_accuracy only
        "exits": {
            name: record.get("test_metrics", {"accuracy": record.get("test_accuracy")})
            for name, record in trained.items()
        },
    }
    if metric == "accuracy":
        summary["calibration_ablation"] = ablation(rows, standard)
        earlier = ROOT / "benchmarks" / "results" / dataset / "summary.json"
        if earlier.exists():  # today's detached model (no LTE), from run.py
            summary["detached_without_lte_test_accuracy"] = json.loads(earlier.read_text())["trained"][
                "sledge"
            ]["test_accuracy"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def ablation(rows: list[dict], standard: dict) -> list[dict]:
    """The paper's Table 4: at equal accuracy, the fastest calibrated and uncalibrated confidence settings."""
    curves = {
        label: [row for row in rows if row.get("policy") == label]
        for label in ("confidence", "confidence (uncalibrated)")
    }
    result = []
    for points in (0.5, 1.0, 2.0):
        target = standard["accuracy"] - points / 100
        entry = {"within_points": points}
        for label, curve in curves.items():
            within = [row for row in curve if row["accuracy"] >= target]
            pick = min(within, key=lambda row: row["seconds_per_instance"]) if within else None
            entry[label] = (
                None
                if pick is None
                else {
                    "value": pick["value"],
                    "accuracy": pick["accuracy"],
                    "speedup_batch1": standard["seconds_per_instance"] / pick["seconds_per_instance"],
                }
            )
        result.append(entry)
    return result


def layerwise_plot(summary: dict, out: Path) -> None:
    """BERxiT's Figure 6: each exit's Pearson's r by layer, against the single-exit models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exits = summary["exits"]
    layers = [0, 1, 3, 5]
    figure, axes = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    axes.plot(
        [k + 1 for k in layers],
        [exits[summary["sledge"]][f"pearson_layer_{k}"] for k in layers],
        "o-",
        label="sledge (LTE) exits, one model",
    )
    singles = [(BASELINES[name][0], exits[name]["pearson"]) for name in BASELINES]
    axes.plot(
        [k + 1 for k, _ in sorted(singles)],
        [r for _, r in sorted(singles)],
        "s--",
        label="efficient / standard baselines, one model each",
    )
    axes.set_xlabel("layers run")
    axes.set_ylabel("Pearson's r (STS-B test)")
    axes.set_title("STS-B: Pearson's r of each exit")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "layerwise.png")
    plt.close(figure)


def report(summaries: dict[str, dict], out: Path, args: argparse.Namespace) -> None:
    (sledge,) = {summary["sledge"] for summary in summaries.values()}  # one recipe per results folder
    recipe = RECIPE_NOTES[sledge]
    options = "" if sledge == SLEDGE else f" --datasets {' '.join(summaries)} --sledge {sledge} --out {out}"
    if args.timing_instances != TIMING_INSTANCES:
        options += f" --timing-instances {args.timing_instances}"
    lines = [
        "# Exit policies on real data: MiniLM-L6, this machine",
        "",
        f"Machine: {bench.machine()}.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/policies.py{options}` (timing: median of "
        f"{args.repeats} repeats after a warm-up, every setting and baseline interleaved in one "
        f"`allennlp sweep` run, on a seeded sample of {args.timing_instances} evaluation instances, batch 1 "
        "and batch 32; the metric on all of them). sledge here is one model per dataset trained with the "
        f"learning-to-exit module (`model.learn_to_exit: true`) and {recipe}; "
        "every policy runs on that same model. 'Within' is the fastest setting (lowest measured batch-1 "
        "time) whose score is at most 0.5 points (STS-B: 1 Pearson point) below the standard baseline's.",
        "",
    ]
    for dataset, summary in summaries.items():
        metric = summary["metric"]
        data = datasets(Path(args.work))[dataset]["note"]
        lines += [
            f"## {dataset}",
            "",
            f"Data: {data}.",
            "",
            f"![policies]({dataset}/sweep.png)",
            "",
            f"Standard baseline: {metric} {summary['standard'][metric]:.4f}, "
            f"{summary['standard']['seconds_per_instance'] * 1000:.2f} ms per instance at batch 1, "
            f"{summary['standard']['instances_per_second']:.1f} instances/s at batch 32.",
            "",
            f"| policy | best {metric} | fastest setting within | {metric} | avg exit layer "
            "| speed-up, batch 1 | throughput vs standard, batch 32 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, policy in summary["policies"].items():
            within = policy["within"]
            if within is None:
                lines.append(f"| {label} | {policy['best'][metric]:.4f} | none | - | - | - | - |")
            else:
                lines.append(
                    f"| {label} | {policy['best'][metric]:.4f} | {within['value']:g} | "
                    f"{within[metric]:.4f} | {within['average_exit_layer']:.2f} | "
                    f"**{within['speedup_batch1']:.2f}x** | {within['speedup_batched']:.2f}x |"
                )
        exits = summary["exits"][summary["sledge"]]
        if metric == "accuracy":
            per_exit = " / ".join(f"{exits[f'accuracy_layer_{k}']:.4f}" for k in (0, 1, 3, 5))
            lines += ["", f"The LTE model's test accuracy by exit 0 / 1 / 3 / 5: {per_exit}."]
            if "detached_without_lte_test_accuracy" in summary:
                before = summary["detached_without_lte_test_accuracy"]
                after = exits["accuracy_layer_5"]
                lines.append(
                    f"Its deepest exit: {after:.4f}, against {before:.4f} for today's detached model "
                    f"without the module (benchmarks/results/{dataset}): {100 * (after - before):+.2f} "
                    "points."
                )
            lines += [
                "",
                "Calibration ablation (Schwartz et al. Table 4): the fastest confidence setting "
                "within 0.5 / 1 / 2 points of the standard baseline, with and without temperature "
                "scaling, on the same model:",
                "",
                "| within | calibrated: threshold, accuracy, speed-up | uncalibrated: threshold, accuracy, "
                "speed-up |",
                "|---:|---|---|",
            ]
            for entry in summary["calibration_ablation"]:
                cells = []
                for label in ("confidence", "confidence (uncalibrated)"):
                    pick = entry[label]
                    cells.append(
                        "none"
                        if pick is None
                        else f"{pick['value']:g}, {pick['accuracy']:.4f}, {pick['speedup_batch1']:.2f}x"
                    )
                lines.append(f"| {entry['within_points']:g} pt | {cells[0]} | {cells[1]} |")
        else:
            lines += [
                "",
                "Layer-wise Pearson's r on the test set (BERxiT's Figure 6):",
                "",
                "| layers run | sledge exit (one model) | single-exit model |",
                "|---:|---:|---:|",
            ]
            for name, (layer,) in sorted(BASELINES.items(), key=lambda item: item[1]):
                lines.append(
                    f"| {layer + 1} | {exits[f'pearson_layer_{layer}']:.4f} | "
                    f"{summary['exits'][name]['pearson']:.4f} ({name}) |"
                )
            lines += ["", f"![layer-wise Pearson]({dataset}/layerwise.png)"]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["sst2", "agnews", "stsb"], choices=["sst2", "agnews", "stsb"]
    )
    parser.add_argument("--work", default="runs/benchmarks", help="where models are trained")
    parser.add_argument("--out", default="benchmarks/results/policies", help="where results are written")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=TIMING_INSTANCES)
    parser.add_argument("--retrain", action="store_true", help="train again even if a model exists")
    parser.add_argument(
        "--sledge", choices=list(SLEDGE_RECIPES), default=SLEDGE, help="the sledge model's training recipe"
    )
    parser.add_argument("--train-only", action="store_true", help="train the models, sweep nothing")
    parser.add_argument(
        "--report-only", action="store_true", help="summaries and report from the results there"
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = datasets(work)
    for dataset in args.datasets:
        if args.train_only:
            for name, layers in BASELINES.items():
                train(name, layers, data[dataset], work / dataset, {}, args.retrain)
            train(args.sledge, [0, 1, 3, 5], data[dataset], work / dataset, SLEDGE_RECIPES[args.sledge],
                  args.retrain)
        elif not args.report_only:
            benchmark(dataset, data[dataset], work, out, args)
    if args.train_only:
        return
    done = [d for d in ("sst2", "agnews", "stsb") if (out / d / "sweep.json").exists()]
    summaries = {d: summarise(d, out / d) for d in done}
    if "stsb" in summaries:
        layerwise_plot(summaries["stsb"], out / "stsb")
    report(summaries, out, args)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
