"""
Early exit composed with int8 inference, with claims checked across training seeds.

For SST-2 and AG News (the splits of `run.py`), MiniLM-L6: the sledge model (by default the MiniLM
configs' own, distilled with attention heads; `--sledge` picks another of heads.py's combinations) and
the standard baseline are trained with 3 seeds each (AllenNLP's default
seeds of the configs, and 1 and 2 for all three of its seeds); the efficient baselines keep one. ONE
`allennlp sweep` per dataset measures every model at fp32 and with dynamic int8 quantization
(`--precision fp32 int8`), batch 1 and batch 32, plus the plain HuggingFace inference of the standard
model (`--hf-reference standard`: its AutoModel's forward and head, outside sledge's runner). The claims
are checked against the MEAN fp32 standard accuracy over seeds, for every seed. Writes
benchmarks/results/int8/.

    .venv/bin/python benchmarks/int8.py [--datasets sst2 agnews] [--train-only] [--report-only]
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402
import run as bench  # noqa: E402
from heads import COMBINATIONS  # noqa: E402
from seeds import aggregate, claim  # noqa: E402

ROOT = bench.ROOT
DATASETS = ["sst2", "agnews"]
OUT = "benchmarks/results/int8"
SEEDS = ["default", 1, 2]
THRESHOLDS = [0.0, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
TARGETS = {"agnews": 3.0, "sst2": 1.6}  # the int8 speed-up targets at batch 1
EFFICIENT = {"efficient-0": [0], "efficient-1": [1], "efficient-3": [3]}
# What the configs' own model (distilled-attention) sets beyond heads.py's combination, per dataset: the
# SST-2 config lets 30% of the earlier exits' gradient reach the encoder (heads/backbone_gradient.md).
CONFIGS_OWN = {
    "sst2": {"model.training_strategy": {"type": "distilled", "backbone_gradient": 0.3}},
    "agnews": {},
}


def seed_overrides(seed) -> dict:
    return {} if seed == "default" else {"random_seed": seed, "numpy_seed": seed, "pytorch_seed": seed}


def names(seed, sledge: str) -> tuple[str, str]:
    """Run folders of the sledge and standard models of a seed (the default seed's are shared)."""
    if seed == "default":
        return sledge, "standard"
    return f"{sledge}-seed{seed}", f"standard-seed{seed}"


def standard_label(seed) -> str:
    """The standard model's name in the sweep (its rows and the report)."""
    return "standard" if seed == "default" else f"standard-s{seed}"


def sledge_overrides(dataset: str, args: argparse.Namespace) -> dict:
    """
    The sledge model's training overrides: policies.train starts every model from run.BASE (detached,
    linear heads); the combination's overrides make it the one asked for (for distilled-attention, the
    configs' own model on `dataset`), then --sledge-overrides.
    """
    own = CONFIGS_OWN[dataset] if args.sledge == "distilled-attention" else {}
    return {**COMBINATIONS[args.sledge], **own, **json.loads(args.sledge_overrides)}


def train_all(dataset: str, data: dict, work: Path, args: argparse.Namespace) -> dict:
    extra = sledge_overrides(dataset, args)
    trained = {
        name: policies.train(name, layers, data, work, {}, args.retrain) for name, layers in EFFICIENT.items()
    }
    for seed in SEEDS:
        sledge, standard = names(seed, args.sledge)
        trained[sledge] = policies.train(
            sledge, [0, 1, 3, 5], data, work, {**extra, **seed_overrides(seed)}, args.retrain
        )
        trained[standard] = policies.train(standard, [5], data, work, seed_overrides(seed), args.retrain)
    return trained


def benchmark(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    work, out = work / dataset, out / dataset
    out.mkdir(parents=True, exist_ok=True)
    trained = train_all(dataset, data, work, args)
    (out / "trained.json").write_text(json.dumps(trained, indent=2))
    allennlp = str(bench.BIN / "allennlp")
    calibrated = {}
    for seed in SEEDS:
        sledge = names(seed, args.sledge)[0]
        calibrated[f"sledge-s{seed}"] = work / sledge / "calibrated.tar.gz"
        bench.run(
            [
                allennlp,
                "calibrate",
                str(work / sledge / "model.tar.gz"),
                data["dev"],
                "--output-file",
                str(calibrated[f"sledge-s{seed}"]),
            ],
            out / f"calibrate-{sledge}.log",
        )
    first, *others = calibrated
    baselines = {standard_label(seed): work / names(seed, args.sledge)[1] / "model.tar.gz" for seed in SEEDS}
    baselines.update({name: work / name / "model.tar.gz" for name in EFFICIENT})
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
            *[f"--baseline={name}={path}" for name, path in baselines.items()],
            "--precision",
            "fp32",
            "int8",
            "--hf-reference",
            "standard",
            "--thresholds",
            *map(str, THRESHOLDS),
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
        ],
        work / "int8-sweep.log",
    )


def summarise(dataset: str, out: Path) -> dict:
    sweep = json.loads((out / "sweep.json").read_text())
    rows = sweep["rows"]
    trained = json.loads((out / "trained.json").read_text())
    by_name = {row["name"]: row for row in rows}
    standard = by_name["standard"]
    summary = {
        "standard_seconds_per_instance": standard["seconds_per_instance"],
        "standard_instances_per_second": standard["instances_per_second"],
        "hf_reference": {
            name: {
                "seconds_per_instance": row["seconds_per_instance"],
                "instances_per_second": row["instances_per_second"],
                "agreement_with_baseline": row["agreement_with_baseline"],
            }
            for name, row in by_name.items()
            if row["kind"] == "reference"
        },
        "train_seconds_of_the_seeds": sum(
            record["train_seconds"] for name, record in trained.items() if not name.startswith("efficient")
        ),
        "precisions": {},
        "int8_activation_bits": sweep["info"].get("int8_activation_bits", 7),  # 7 before it was recorded
        "sledge_training": next(  # the default seed's sledge model: its strategy and exit head
            {key: record["overrides"].get(f"model.{key}") for key in ("training_strategy", "exit_head")}
            for name, record in trained.items()
            if len(record["layers"]) > 1 and "-seed" not in name
        ),
    }
    for precision in ("fp32", "int8"):
        suffix = "" if precision == "fp32" else " int8"
        standards = [by_name[standard_label(seed) + suffix] for seed in SEEDS]
        fp32_standards = [by_name[standard_label(seed)] for seed in SEEDS]
        curves = {
            str(seed): [
                row for row in rows if row["kind"] == "sledge" and row["model"] == f"sledge-s{seed}{suffix}"
            ]
            for seed in SEEDS
        }
        deepest = [max(curve, key=lambda row: row["value"])["accuracy"] for curve in curves.values()]
        result = claim(
            curves,
            [row["accuracy"] for row in fp32_standards],
            standard["seconds_per_instance"],
            points=0.5,
            target_speedup=TARGETS[dataset] if precision == "int8" else None,
        )
        for seed, pick in result["per_seed"].items():
            if pick is not None:
                chosen = next(row for row in curves[seed] if row["value"] == pick["value"])
                pick["throughput_ratio_batch32"] = (
                    chosen["instances_per_second"] / standard["instances_per_second"]
                )
        summary["precisions"][precision] = {
            "standard_accuracy": aggregate([row["accuracy"] for row in standards]),
            "standard_speedup_batch1": aggregate(
                [standard["seconds_per_instance"] / row["seconds_per_instance"] for row in standards]
            ),
            "standard_throughput_ratio_batch32": aggregate(
                [row["instances_per_second"] / standard["instances_per_second"] for row in standards]
            ),
            "sledge_deepest_accuracy": aggregate(deepest),
            "sledge_exit_accuracies": {
                seed: [
                    exit_["accuracy"] for exit_ in sweep["info"]["exit_metrics"][f"sledge-s{seed}{suffix}"]
                ]
                for seed in SEEDS
            },
            "claim_within_half_point_of_mean_fp32_standard": result,
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def reproduce_options(args: argparse.Namespace) -> str:
    """The command's options beyond --sledge that differ from the defaults."""
    options = "" if args.datasets == DATASETS else " --datasets " + " ".join(args.datasets)
    options += "" if args.out == OUT else f" --out {args.out}"
    if args.sledge_overrides != "{}":
        options += f" --sledge-overrides '{args.sledge_overrides}'"
    return options


def report(summaries: dict[str, dict], out: Path, args: argparse.Namespace) -> None:
    lines = [
        "# int8 early exit, across seeds: MiniLM-L6, this machine",
        "",
        f"Machine: {bench.machine()}.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/int8.py --sledge {args.sledge}{reproduce_options(args)}`. "
        f"The sledge model: {args.sledge} (heads.py's combination, exits 0, 1, 3, 5; its training per "
        "dataset below). One `allennlp sweep` run per dataset "
        "measures every model at fp32 and int8 (dynamic quantization of every linear layer, one scale per "
        "output channel, activations on the bits given below per dataset: 8 where this CPU's int8 kernels "
        f"allow it, else 7), batch 1 and 32 (median of {args.repeats} repeats after a warm-up, every job "
        "interleaved, a seeded sample of "
        f"{args.timing_instances} evaluation instances; accuracy on all of them). Seeds: the configs' own "
        "(random 13370, numpy 1337, torch 133) and 1 and 2. Speed-ups are against the fp32 standard model of "
        "the configs' seed, at batch 1 (throughput ratios at batch 32).",
        "",
    ]
    for dataset, summary in summaries.items():
        lines += [
            f"## {dataset}",
            "",
            f"![fp32 and int8]({dataset}/sweep.png)",
            "",
            f"sledge model's training: `{json.dumps(summary.get('sledge_training'))}`; int8 activations "
            f"on {summary['int8_activation_bits']} bits.",
            "",
            f"fp32 standard (configs' seed): {summary['standard_seconds_per_instance'] * 1000:.2f} ms per "
            f"instance at batch 1, {summary['standard_instances_per_second']:.1f} instances/s at batch 32.",
            "",
        ]
        for name, reference in summary["hf_reference"].items():
            lines.append(
                f"- {name}: {reference['seconds_per_instance'] * 1000:.2f} ms at batch 1, "
                f"{reference['instances_per_second']:.1f} instances/s at batch 32 (predictions equal to "
                f"the baseline's on {100 * reference['agreement_with_baseline']:.1f}% of the timed sample)."
            )
        lines += [
            "",
            "| | standard accuracy (mean ± std) | standard speed-up b1 / throughput b32 "
            "| sledge deepest exit "
            "| sledge within 0.5 pt of the mean fp32 standard: speed-up b1 per seed (mean) | throughput b32 "
            "per seed | every seed: within 0.5 pt; the issue's speed-up target |",
            "|---|---|---|---|---|---|---|",
        ]
        for precision, result in summary["precisions"].items():
            std, claim_ = result["standard_accuracy"], result["claim_within_half_point_of_mean_fp32_standard"]
            per_seed = claim_["per_seed"].values()
            speedups = ", ".join(
                "none" if p is None else f"{p['speedup']:.2f}x (t={p['value']:g})" for p in per_seed
            )
            throughput = ", ".join(
                "-" if p is None else f"{p['throughput_ratio_batch32']:.2f}x" for p in per_seed
            )
            mean = f"{claim_['speedup']['mean']:.2f}x" if claim_["speedup"] else "none"
            within = "within on every seed" if claim_["within_for_every_seed"] else "not within on every seed"
            target = {None: "no target", True: "target met", False: "target missed"}[
                claim_["holds_for_every_seed"]
            ]
            holds = f"{within}; {target}"
            lines.append(
                f"| {precision} | {std['mean']:.4f} ± {std['std']:.4f} | "
                f"{result['standard_speedup_batch1']['mean']:.2f}x / "
                f"{result['standard_throughput_ratio_batch32']['mean']:.2f}x "
                f"| {result['sledge_deepest_accuracy']['mean']:.4f} ± "
                f"{result['sledge_deepest_accuracy']['std']:.4f} "
                f"| {speedups} ({mean}) | {throughput} | {holds} |"
            )
        lines += ["", "Accuracy of each exit (0 / 1 / 3 / 5), per seed, fp32 and int8:", ""]
        for precision, result in summary["precisions"].items():
            for seed, exits in result["sledge_exit_accuracies"].items():
                lines.append(f"- {precision}, seed {seed}: " + " / ".join(f"{a:.4f}" for a in exits))
        lines += [
            "",
            f"Training time of the 3 sledge and 3 standard models: "
            f"{summary['train_seconds_of_the_seeds'] / 60:.0f} min.",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--out", default=OUT)
    parser.add_argument(
        "--sledge", default="distilled-attention", choices=list(COMBINATIONS),
        help="the sledge model: a (strategy, exit head) combination of heads.py",
    )
    parser.add_argument("--sledge-overrides", default="{}", help="further overrides of it (JSON)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=200)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = policies.datasets(work)
    for dataset in args.datasets:
        if args.train_only:
            train_all(dataset, data[dataset], work / dataset, args)
        elif not args.report_only:
            benchmark(dataset, data[dataset], work, out, args)
    if args.train_only:
        return
    done = [d for d in ("sst2", "agnews") if (out / d / "sweep.json").exists()]
    report({d: summarise(d, out / d) for d in done}, out, args)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
