"""
Early exit at base scale: all-mpnet-base-v2 (MPNet, 12 layers, hidden 768), the `*_mpnet` configs.

For SST-2, AG News (run.py's split), RTE and STS-B: the sledge model (the config's own strategy and exit
heads, exits 0, 2, 6, 11), the standard baseline (one exit on layer 11) and, for SST-2 and AG News, the
efficient baselines (one exit on layer 0, 2 or 6), trained with `allennlp train`; on SST-2 sledge and the
standard model over 3 seeds (the configs' own seeds, 1 and 2), the others one seed. The baselines have
linear heads, as every baseline of the benchmarks. Models already trained under --work are reused.

Then, per dataset whose models are trained: sledge calibrated on the dev set, and one `allennlp sweep`
of sledge (every seed trained) against the standard and efficient baselines, fp32 and int8, timed at
batch 1 and batch 32 on a seeded sample of the evaluation set (accuracy on all of it), with the oracle.
The report (--out) puts the targets of issue 30 beside the papers' published base-scale figures.

    make backbone-mpnet
    .venv/bin/python benchmarks/base_scale.py --train-only [--datasets sst2 agnews rte stsb]
    .venv/bin/python benchmarks/base_scale.py --datasets sst2 [--timing-instances 200 --repeats 3]
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402
import run as bench  # noqa: E402
import seeds  # noqa: E402
from allennlp.common import Params  # noqa: E402

ROOT = bench.ROOT
SHARED = Path("../shared/data")  # relative to the repository root, where the script runs
WORK = "runs/base_scale"
OUT = "benchmarks/results/base_scale"
EXITS = [0, 2, 6, 11]
EFFICIENT = {"efficient-0": [0], "efficient-2": [2], "efficient-6": [6]}
SEEDS = {"sst2": ["default", 1, 2], "agnews": ["default"], "rte": ["default"], "stsb": ["default"]}


def datasets(work: Path) -> dict[str, dict]:
    """Each dataset's config and files (AG News: run.py's seeded split of the official test set)."""
    ag = bench.ag_news_split(Path("runs/benchmarks"))
    sst, rte, stsb = SHARED / "sst2", SHARED / "rte", SHARED / "stsb"
    return {
        "sst2": {
            "config": "training_config/sst2_mpnet.jsonnet",
            "train": str(sst / "stsa.binary.train"),
            "dev": str(sst / "stsa.binary.dev"),
            "eval": str(sst / "stsa.binary.test"),
            "efficient": True,
            "note": "SST-2 sentence level (stsa.binary): 6,920 train / 872 dev / 1,821 test (evaluation)",
        },
        "agnews": {
            "config": "training_config/agnews_mpnet.jsonnet",
            "train": ag["train"],
            "dev": ag["dev"],
            "eval": ag["eval"],
            "efficient": True,
            "note": "AG News: run.py's seeded, class-balanced split of the official test.csv: 5,600 "
            "train / 500 dev / 1,500 evaluation",
        },
        "rte": {
            "config": "training_config/rte_mpnet.jsonnet",
            "train": f"{rte / 'train.jsonl'}#train",
            "dev": f"{rte / 'train.jsonl'}#dev",
            "eval": str(rte / "val.jsonl"),
            "efficient": False,
            "note": "RTE (SuperGLUE jsonl): a seeded 95% / 5% train / dev split of train.jsonl (2,365 / "
            "125), the official validation set (277) for evaluation; the test set has no labels",
        },
        "stsb": {
            "config": "training_config/stsb_mpnet.jsonnet",
            "train": str(stsb / "sts-train.csv"),
            "dev": str(stsb / "sts-dev.csv"),
            "eval": str(stsb / "sts-test.csv"),
            "efficient": False,
            "note": "STS-B: 5,749 train / 1,500 dev / 1,379 test (evaluation); Pearson's r",
        },
    }


def seed_overrides(seed) -> dict:
    return {} if seed == "default" else {"random_seed": seed, "numpy_seed": seed, "pytorch_seed": seed}


def run_name(model: str, seed) -> str:
    return model if seed == "default" else f"{model}-seed{seed}"


def config_own(config: str) -> dict:
    """The sledge model's overrides of run.BASE (detached, linear heads): the config's strategy and heads."""
    raw = Params.from_file(config).as_dict()
    own = {
        "model.training_strategy": raw["model"]["training_strategy"],
        "model.exit_head": raw["model"].get("exit_head", {"type": "linear"}),
    }
    if "early_exit_lr" in raw["trainer"]["optimizer"]:
        own["trainer.optimizer.early_exit_lr"] = raw["trainer"]["optimizer"]["early_exit_lr"]
    return own


def jobs(dataset: str, data: dict) -> list[tuple[str, list[int], dict]]:
    """The models of a dataset, in the order they are trained: (run name, exits, overrides)."""
    own = config_own(data["config"])
    listed = []
    for seed in SEEDS[dataset]:
        listed.append((run_name("sledge", seed), EXITS, {**own, **seed_overrides(seed)}))
        listed.append((run_name("standard", seed), [EXITS[-1]], seed_overrides(seed)))
        if seed == "default" and data["efficient"]:
            listed += [(name, layers, {}) for name, layers in EFFICIENT.items()]
    return listed


def train_all(dataset: str, data: dict, work: Path, retrain: bool) -> dict:
    return {
        name: policies.train(name, layers, data, work / dataset, extra, retrain)
        for name, layers, extra in jobs(dataset, data)
    }


def trained_runs(dataset: str, data: dict, work: Path) -> dict[str, dict]:
    """The runs of `jobs` already trained under `work` (their benchmark_train.json records)."""
    found = {}
    for name, _, _ in jobs(dataset, data):
        record = work / dataset / name / "benchmark_train.json"
        if record.exists() and (work / dataset / name / "model.tar.gz").exists():
            found[name] = json.loads(record.read_text())
    return found


def sweep(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    """Calibrate every trained sledge model, then sweep them against every trained baseline, fp32 and int8."""
    trained = trained_runs(dataset, data, work)
    sledges = [name for name in trained if name.startswith("sledge")]
    if "sledge" not in sledges or "standard" not in trained:
        raise SystemExit(f"{dataset}: train sledge and standard first (--train-only)")
    allennlp = str(bench.BIN / "allennlp")
    out.mkdir(parents=True, exist_ok=True)
    models = []
    for name in sledges:
        model = work / dataset / name / "model.tar.gz"
        if dataset != "stsb":  # a regression model has no probabilities to calibrate
            calibrated = model.with_name("calibrated.tar.gz")
            if not calibrated.exists():
                bench.run(
                    [allennlp, "calibrate", str(model), data["dev"], "--output-file", str(calibrated)],
                    out / f"calibrate-{name}.log",
                )
            model = calibrated
        models.append((name, model))
    baselines = [
        f"--baseline={name}={work / dataset / name / 'model.tar.gz'}"
        for name in trained
        if not name.startswith("sledge")
    ]
    also = [f"--also={name}={model}" for name, model in models[1:]]
    if "onnxruntime" in args.backend and "int8" in args.precision and "standard" in trained:
        also.append("--reference-line=standard onnxruntime int8")  # what a user would run instead
    bench.run(
        [
            allennlp,
            "sweep",
            str(models[0][1]),
            data["eval"],
            "--output-dir",
            str(out),
            "--name",
            "sledge",
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
            "--precision",
            *args.precision,
            "--backend",
            *args.backend,
            *also,
            *baselines,
        ],
        out / "sweep.log",
    )
    records = {name: {**record, "overrides": None} for name, record in trained.items()}
    (out / "trained.json").write_text(json.dumps(records, indent=2))


def summarise(dataset: str, out: Path) -> dict:
    """
    Issue 30's targets read off one dataset's sweep, per backend and precision (the rows' name suffix, as
    `allennlp sweep` names them): the fastest setting of each sledge model within the tolerance of the mean
    standard model there, its speed-up over that standard, over the torch fp32 standard and over the
    standard on ONNX Runtime int8 (where swept); the last exit against the standard; and sledge's best
    accuracy at the measured time of each efficient baseline.
    """
    result = json.loads((out / "sweep.json").read_text())
    info, rows = result["info"], result["rows"]
    metric = info["metric"]
    tolerance = 0.01 if dataset == "stsb" else 0.005
    baselines = {row["name"]: row for row in rows if row["kind"] == "baseline"}
    bases = sorted({row["model"] for row in rows if row["kind"] == "sledge" and " " not in row["model"]})
    reference = baselines.get("standard onnxruntime int8")
    summary = {
        "metric": metric,
        "tolerance": tolerance,
        "instances": info["instances"],
        "timed_instances": info["timed_instances"],
        "exit_metrics": info["exit_metrics"],
        "backends": info.get("backends", {}),
        "combinations": {},
    }
    for backend in info.get("backends", {"torch": ""}):
        for precision in info["precisions"]:
            suffix = "".join(f" {part}" for part in (backend, precision) if part not in ("torch", "fp32"))
            standard = baselines[f"standard{suffix}"]
            pattern = re.escape(suffix)
            standards = [
                row for name, row in baselines.items() if re.fullmatch(rf"standard(-seed\d+)?{pattern}", name)
            ]
            target = seeds.aggregate([row[metric] for row in standards])["mean"] - tolerance
            entry = {
                "standard": {
                    k: standard[k] for k in (metric, "seconds_per_instance", "instances_per_second")
                },
                "standard_mean": target + tolerance,
                "models": {},
                "efficient": [],
            }
            for base in bases:
                curve = [row for row in rows if row["kind"] == "sledge" and row["model"] == base + suffix]
                reaching = [row for row in curve if row[metric] >= target]
                pick = min(reaching, key=lambda row: row["seconds_per_instance"]) if reaching else None
                last = max(curve, key=lambda row: row["average_exit_layer"])
                within = None
                if pick is not None:
                    within = {
                        "threshold": pick["value"],
                        metric: pick[metric],
                        "average_exit_layer": pick["average_exit_layer"],
                        "speedup_batch1": standard["seconds_per_instance"] / pick["seconds_per_instance"],
                        "speedup_batched": pick["instances_per_second"] / standard["instances_per_second"],
                        "speedup_batch1_vs_torch_fp32_standard": baselines["standard"]["seconds_per_instance"]
                        / pick["seconds_per_instance"],
                    }
                    if reference is not None:
                        within["speedup_batch1_vs_ort_int8_standard"] = (
                            reference["seconds_per_instance"] / pick["seconds_per_instance"]
                        )
                        within["speedup_batched_vs_ort_int8_standard"] = (
                            pick["instances_per_second"] / reference["instances_per_second"]
                        )
                entry["models"][base] = {
                    "last_exit": last[metric],
                    "last_exit_minus_standard": last[metric] - standard[metric],
                    "within": within,
                }
            sledge_curve = [
                row for row in rows if row["kind"] == "sledge" and row["model"] == "sledge" + suffix
            ]
            for name, row in baselines.items():
                if re.fullmatch(rf"efficient-\d+{pattern}", name):
                    as_fast = [
                        p for p in sledge_curve if p["seconds_per_instance"] <= row["seconds_per_instance"]
                    ]
                    best = max(as_fast, key=lambda p: p[metric]) if as_fast else None
                    entry["efficient"].append(
                        {
                            "name": name,
                            metric: row[metric],
                            "seconds_per_instance": row["seconds_per_instance"],
                            "sledge_best_as_fast": None
                            if best is None
                            else {"threshold": best["value"], metric: best[metric]},
                        }
                    )
            summary["combinations"][f"{backend} {precision}"] = entry
    oracle = [row for row in rows if row["kind"] == "oracle"]
    if oracle:
        summary["oracle"] = {metric: oracle[0][metric], "average_exit_layer": oracle[0]["average_exit_layer"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


PAPERS = [  # published base-scale figures (read in the sources named; none of them measured here)
    (
        "DeeBERT, BERT-base",
        "SST-2",
        "93.6",
        "-0.2 / -0.6 / -2.1 points",
        "1.27x / 1.67x / 1.89x",
        "measured wall-clock, GLUE test set, batch 1, one P100 (Table 1)",
    ),
    (
        "DeeBERT, BERT-base",
        "RTE",
        "69.9",
        "-0.4 / -0.6 / -3.2 points",
        "1.10x / 1.12x / 1.49x",
        "measured wall-clock, GLUE test set, batch 1, one P100 (Table 1)",
    ),
    ("PABEE, BERT-base", "SST-2", "92.1", "-0.1 points", "1.62x", "layer ratio, GLUE dev (authors' README)"),
    ("PABEE, BERT-base", "STS-B", "88.9", "-0.2 points", "1.62x", "layer ratio, GLUE dev (authors' README)"),
    (
        "PABEE, ALBERT-base",
        "SST-2",
        "92.8",
        "+0.2 points",
        "1.57x",
        "layer ratio, GLUE dev (authors' README)",
    ),
    ("PABEE, ALBERT-base", "RTE", "78.6", "+1.5 points", "1.57x", "layer ratio, GLUE dev (authors' README)"),
    (
        "PABEE, ALBERT-base",
        "STS-B",
        "89.5",
        "+0.6 points",
        "1.57x",
        "layer ratio, GLUE dev (authors' README)",
    ),
    (
        "FastBERT, BERT-base",
        "AG News",
        "94.47",
        "-0.09 / -1.33 points",
        "3.62x / 10.33x",
        "FLOPs ratio (Table 2)",
    ),
    (
        "CascadeBERT, BERT-base",
        "six tasks",
        "",
        '"15% improvement under 4x speed-up" over early exit',
        "4x",
        "layer ratio, 12 / average layers (abstract; per-task table not found)",
    ),
    (
        "RTJ (Schwartz et al.), BERT-large",
        "AG, IMDB, SST, SNLI, MNLI",
        "",
        '"preserving their accuracy"',
        "up to 5x",
        "abstract; per-dataset figures and measure not found",
    ),
    ("BERxiT", "", "", "", "", "figures not found (abstract only)"),
]


def report(summaries: dict[str, dict], work: Path, out: Path, args: argparse.Namespace) -> None:
    lines = [
        "# Early exit at base scale: all-mpnet-base-v2 (12 layers, hidden 768)",
        "",
        f"Machine: {bench.machine()}.",
        "",
        "Every figure below was measured by `.venv/bin/python benchmarks/base_scale.py --datasets "
        f"{' '.join(summaries)} --sweep-only --backend {' '.join(args.backend)} --precision "
        f"{' '.join(args.precision)} --timing-instances {args.timing_instances} --repeats {args.repeats}` "
        "(models trained before with `--train-only`); times are medians over the repeats after a warm-up, "
        "at batch 1 and batch 32, on a seeded sample of the evaluation set, every model interleaved in "
        "one sweep; accuracy on the whole evaluation set.",
        "",
    ]
    for dataset, summary in summaries.items():
        metric, tol = summary["metric"], summary["tolerance"]
        trained = json.loads((out / dataset / "trained.json").read_text())
        lines += [
            f"## {dataset}",
            "",
            SPEC_NOTES[dataset],
            "",
            f"{summary['instances']} evaluation instances, {summary['timed_instances']} timed. Seeds trained "
            f"so far: {1 + sum(name.startswith('sledge-seed') for name in trained)} (the models below).",
            "",
            "| model | test " + metric + " by exit | training (s) |",
            "|---|---|---|",
        ]
        for name, record in trained.items():
            exits = summary["exit_metrics"].get(name)  # the sweep's, on the evaluation set (sledge models)
            values = (
                " / ".join(f"{e[metric]:.3f}" for e in exits)
                if exits
                else " / ".join(
                    f"{v:.3f}" for k, v in record["test_metrics"].items() if k.startswith(f"{metric}_layer")
                )
            )
            lines.append(f"| {name} | {values} | {record['train_seconds']:.0f} |")
        lines += [
            "",
            f"Fastest threshold within {tol * 100:g} points of the mean standard model at the same "
            "backend and precision; its speed-up over that standard at batch 1 and at batch 32, over the "
            "torch fp32 standard and over the standard on ONNX Runtime int8 at batch 1:",
            "",
            f"| backend, precision | model | threshold | {metric} | avg exit layer | batch 1 | batch 32 | "
            "vs torch fp32 standard | vs ORT int8 standard | last exit - standard |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for combination, entry in summary["combinations"].items():
            for model, got in entry["models"].items():
                within = got["within"]
                if within is None:
                    cells = ["none reaches it", "", "", "", "", "", ""]
                else:
                    ort = within.get("speedup_batch1_vs_ort_int8_standard")
                    cells = [
                        f"{within['threshold']:g}",
                        f"{within[metric]:.4f}",
                        f"{within['average_exit_layer']:.2f}",
                        f"{within['speedup_batch1']:.2f}x",
                        f"{within['speedup_batched']:.2f}x",
                        f"{within['speedup_batch1_vs_torch_fp32_standard']:.2f}x",
                        "" if ort is None else f"{ort:.2f}x",
                    ]
                lines.append(
                    f"| {combination} | {model} | "
                    + " | ".join(cells)
                    + f" | {got['last_exit_minus_standard'] * 100:+.2f} points |"
                )
        if any(entry["efficient"] for entry in summary["combinations"].values()):
            lines += [
                "",
                "At the measured time (batch 1) of each efficient baseline, sledge's most accurate setting "
                "that "
                "is as fast:",
                "",
                f"| backend, precision | baseline | its {metric} | sledge, as fast | sledge above? |",
                "|---|---|---|---|---|",
            ]
            for combination, entry in summary["combinations"].items():
                for row in entry["efficient"]:
                    best = row["sledge_best_as_fast"]
                    verdict = (
                        "no setting as fast | no |"
                        if best is None
                        else (
                            f"{best[metric]:.4f} (threshold {best['threshold']:g}) | "
                            f"{'yes' if best[metric] > row[metric] else 'no'} |"
                        )
                    )
                    lines.append(f"| {combination} | {row['name']} | {row[metric]:.4f} | {verdict}")
        oracle = summary.get("oracle")
        if oracle:
            lines += [
                "",
                f"Oracle (the first exit that is right, torch fp32): {metric} {oracle[metric]:.4f} at an "
                f"average exit layer of {oracle['average_exit_layer']:.2f}.",
            ]
        lines += [
            "",
            f"Sweep: [{dataset}/sweep.png]({dataset}/sweep.png), [{dataset}/sweep.csv]({dataset}/sweep.csv).",
            "",
        ]
    lines += [
        "## The papers at base scale, as published",
        "",
        "Nothing in this table was measured here; each row says how its paper measured speed.",
        "",
        "| paper, backbone | task | its standard | accuracy change | speed-up | measure |",
        "|---|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in PAPERS],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print((out / "report.md").read_text())


SPEC_NOTES: dict[str, str] = {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(SEEDS), choices=list(SEEDS))
    parser.add_argument("--work", default=WORK, help="where models are trained")
    parser.add_argument("--retrain", action="store_true", help="train again even if a model exists")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--sweep-only", action="store_true", help="sweep the models already trained")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the sweeps")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--timing-instances", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--backend", nargs="+", default=["torch", "onnxruntime"])
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = datasets(work)
    SPEC_NOTES.update({name: spec["note"] for name, spec in data.items()})
    summaries = {}
    for dataset in args.datasets:
        if not (args.sweep_only or args.report_only):
            trained = train_all(dataset, data[dataset], work, args.retrain)
            print(json.dumps({name: record["test_metrics"] for name, record in trained.items()}, indent=2))
        if args.train_only:
            continue
        if not args.report_only:
            sweep(dataset, data[dataset], work, out / dataset, args)
        summaries[dataset] = summarise(dataset, out / dataset)
    if summaries:
        report(summaries, work, out, args)


if __name__ == "__main__":
    main()
