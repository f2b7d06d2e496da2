"""
CascadeBERT against early exit at high speed-ups, with and without difficulty-aware regularisation.

For SST-2, AG News (the splits of `run.py`) and RTE (train.jsonl split into train / a seeded 5% dev;
evaluation on val.jsonl), on MiniLM-L6:

1. difficulty labels by K-fold cross-prediction (`allennlp difficulty-labels`, the 2-layer complete model,
   --folds 4 --seeds 1 on this CPU; the paper's 8 folds x 5 seeds would cost 10x), the evaluation file
   labelled by the same fold models;
2. the efficient baselines (complete 1-, 2- and 4-layer models: the backbone truncated and fine-tuned end
   to end), the standard baseline, sledge (exits 0, 1, 3, 5, the configs' detached strategy), and with
   DAR (lambda 0.5, margin 0.5; 0.3 for AG News): the 2-layer model, the standard model and sledge;
3. the cascades 2 -> 6 layers with and without DAR (`allennlp cascade`), everything calibrated on dev;
4. ONE `allennlp sweep` per dataset: sledge, sledge+DAR, cascade, cascade+DAR curves with the baselines,
   batch 1 and 32; the DIS of every model and exit (`allennlp difficulty --difficulty-file`).

Writes benchmarks/results/cascade/. Models already trained are reused unless --retrain.

    .venv/bin/python benchmarks/cascade.py [--datasets sst2 agnews rte] [--train-only] [--report-only]
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402
import run as bench  # noqa: E402

ROOT = bench.ROOT
SINGLE = {"efficient-0": [0], "efficient-1": [1], "efficient-3": [3], "standard": [5]}
SLEDGE = "detached-linear"  # heads.py's name for the configs' detached model
MARGIN = {"sst2": 0.5, "agnews": 0.3, "rte": 0.5}
DAR_WEIGHT = 0.5
FOLDS, SEEDS = 4, [1]


def datasets(work: Path) -> dict[str, dict]:
    data = policies.datasets(work)
    rte = Path("../shared/data/rte")
    data["rte"] = {
        "config": "training_config/rte_minilm.jsonnet",
        "train": f"{rte / 'train.jsonl'}#train",
        "dev": f"{rte / 'train.jsonl'}#dev",
        "eval": str(rte / "val.jsonl"),
        "note": "RTE (SuperGLUE): train.jsonl without a seeded 5% (2,365 pairs) / that 5% as dev (125) / the "
        "official val.jsonl as evaluation (277); the test file has no labels",
    }
    return {name: data[name] for name in ("sst2", "agnews", "rte")}


def labels(dataset: str, data: dict, work: Path) -> Path:
    output = work / "difficulty-labels.json"
    if not output.exists():
        overrides = {  # the 2-layer model as the baselines train it
            **bench.BASE,
            "model.layer_indices": [1],
            "train_data_path": data["train"],
            "validation_data_path": data["dev"],
            "test_data_path": data["eval"],
        }
        bench.run(
            [
                str(bench.BIN / "allennlp"),
                "difficulty-labels",
                data["config"],
                "-o",
                json.dumps(overrides),
                "--folds",
                str(FOLDS),
                "--seeds",
                *map(str, SEEDS),
                "--label-also",
                data["eval"],
                "--output-file",
                str(output),
            ],
            work / "difficulty-labels.log",
        )
    return output


def train_all(dataset: str, data: dict, work: Path, retrain: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    difficulty = labels(dataset, data, work)
    dar = {
        "dataset_reader.difficulty_file": str(difficulty),
        "model.difficulty_weight": DAR_WEIGHT,
        "model.difficulty_margin": MARGIN[dataset],
    }
    trained = {name: policies.train(name, layers, data, work, {}, retrain) for name, layers in SINGLE.items()}
    # sledge's model is the detached one with linear heads: run.BASE, which policies.train starts from
    trained[SLEDGE] = policies.train(SLEDGE, [0, 1, 3, 5], data, work, {}, retrain)
    for name, layers in (("efficient-1", [1]), ("standard", [5])):
        trained[f"{name}-dar"] = policies.train(f"{name}-dar", layers, data, work, dar, retrain)
    trained[f"{SLEDGE}-dar"] = policies.train(f"{SLEDGE}-dar", [0, 1, 3, 5], data, work, dar, retrain)
    return trained


def benchmark(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    work, out = work / dataset, out / dataset
    out.mkdir(parents=True, exist_ok=True)
    trained = train_all(dataset, data, work, args.retrain)
    (out / "trained.json").write_text(json.dumps(trained, indent=2))
    allennlp = str(bench.BIN / "allennlp")
    for suffix in ("", "-dar"):
        bench.run(
            [
                allennlp,
                "cascade",
                str(work / f"efficient-1{suffix}" / "model.tar.gz"),
                str(work / f"standard{suffix}" / "model.tar.gz"),
                "--output-file",
                str(work / f"cascade{suffix}.tar.gz"),
            ],
            out / f"cascade{suffix}.log",
        )
    models = {
        "sledge": work / SLEDGE / "model.tar.gz",
        "sledge+DAR": work / f"{SLEDGE}-dar" / "model.tar.gz",
        "cascade": work / "cascade.tar.gz",
        "cascade+DAR": work / "cascade-dar.tar.gz",
    }
    calibrated = {}
    for name, archive in models.items():
        calibrated[name] = work / f"calibrated-{name.replace('+', '-')}.tar.gz"
        bench.run(
            [allennlp, "calibrate", str(archive), data["dev"], "--output-file", str(calibrated[name])],
            out / f"calibrate-{name.replace('+', '-')}.log",
        )
    first, *others = calibrated
    baselines = {name: work / name / "model.tar.gz" for name in [*SINGLE, "efficient-1-dar", "standard-dar"]}
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
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
        ],
        work / "cascade-sweep.log",
    )
    difficulty = work / "difficulty-labels.json"
    dis = {}
    for name, archive in {**calibrated, **baselines}.items():
        target = out / "difficulty" / name.replace("+", "-")
        bench.run(
            [
                allennlp,
                "difficulty",
                str(archive),
                data["eval"],
                "--output-dir",
                str(target),
                "--difficulty-file",
                str(difficulty),
            ],
            work / "difficulty.log",
        )
        report = json.loads((target / "difficulty.json").read_text())
        dis[name] = dict(zip(map(str, report["exit_layers"]), report["dis"]))
    (out / "dis.json").write_text(json.dumps(dis, indent=2))


def at_speedup(rows: list[dict], standard: dict, speedup: float) -> dict:
    """Per curve: the most accurate setting measured at least `speedup` times faster than the standard."""
    result = {}
    for label in dict.fromkeys(row["policy"] for row in rows if row["kind"] == "sledge"):
        fast = [
            row
            for row in rows
            if row.get("policy") == label
            and standard["seconds_per_instance"] / row["seconds_per_instance"] >= speedup
        ]
        best = max(fast, key=lambda row: row["accuracy"]) if fast else None
        result[label] = (
            None
            if best is None
            else {
                "accuracy": best["accuracy"],
                "value": best["value"],
                "speedup": standard["seconds_per_instance"] / best["seconds_per_instance"],
            }
        )
    return result


def summarise(dataset: str, out: Path) -> dict:
    sweep = json.loads((out / "sweep.json").read_text())
    rows = sweep["rows"]
    standard = next(row for row in rows if row["name"] == "standard")
    within = {}
    for label in dict.fromkeys(row["policy"] for row in rows if row["kind"] == "sledge"):
        close = [
            row
            for row in rows
            if row.get("policy") == label and row["accuracy"] >= standard["accuracy"] - 0.005
        ]
        pick = min(close, key=lambda row: row["seconds_per_instance"]) if close else None
        within[label] = (
            None
            if pick is None
            else {
                "accuracy": pick["accuracy"],
                "value": pick["value"],
                "speedup": standard["seconds_per_instance"] / pick["seconds_per_instance"],
                "throughput_ratio": pick["instances_per_second"] / standard["instances_per_second"],
            }
        )
    labels_file = Path(
        json.loads((out / "trained.json").read_text())["efficient-1-dar"]["overrides"][
            "dataset_reader.difficulty_file"
        ]
    )
    labelling = json.loads(labels_file.read_text()) if labels_file.exists() else {}
    fastest = {
        label: max(
            standard["seconds_per_instance"] / row["seconds_per_instance"]
            for row in rows
            if row.get("policy") == label
        )
        for label in within
    }
    summary = {
        "fastest_speedup": fastest,
        "standard": {
            "accuracy": standard["accuracy"],
            "seconds_per_instance": standard["seconds_per_instance"],
        },
        "at_2x": at_speedup(rows, standard, 2.0),
        "at_3x": at_speedup(rows, standard, 3.0),
        "at_4x": at_speedup(rows, standard, 4.0),
        "within_half_point": within,
        "dis": json.loads((out / "dis.json").read_text()),
        "labelling": {
            k: labelling.get(k) for k in ("folds", "seeds", "models_trained", "cost_seconds", "easy_share")
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def claim(summary: dict) -> list[str]:
    """CascadeBERT's claim at 3x and 4x: the best cascade against the best early exit, DAR or not."""
    lines = []
    for key, speedup in (("at_3x", 3), ("at_4x", 4)):
        best = {}
        for kind in ("sledge", "cascade"):
            picks = [pick for name, pick in summary[key].items() if name.startswith(kind) and pick]
            best[kind] = max((pick["accuracy"] for pick in picks), default=None)
        if best["cascade"] is None and best["sledge"] is None:
            verdict = "neither a cascade nor early exit has a setting that fast"
        elif best["cascade"] is None:
            verdict = f"only early exit gets there ({best['sledge']:.4f}); no cascade setting is"
        elif best["sledge"] is None:
            verdict = f"only the cascade gets there ({best['cascade']:.4f}); no early-exit setting is"
        else:
            gap = (best["cascade"] - best["sledge"]) * 100
            winner = "the cascade" if gap > 0 else "early exit"
            verdict = (
                f"{winner} is more accurate by {abs(gap):.2f} points (cascade {best['cascade']:.4f}, "
                f"early exit {best['sledge']:.4f})"
            )
        lines.append(f"- At >= {speedup}x measured speed-up (batch 1): {verdict}.")
    return lines


def report(summaries: dict[str, dict], out: Path, args: argparse.Namespace) -> None:
    names = ["sledge, confidence", "sledge+DAR, confidence", "cascade, confidence", "cascade+DAR, confidence"]
    lines = [
        "# Cascades of complete models against early exit (CascadeBERT), MiniLM-L6, this machine",
        "",
        f"Machine: {bench.machine()}.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/cascade.py`. Timing: one `allennlp sweep` run per dataset "
        f"(median of {args.repeats} repeats after a warm-up, every curve and baseline interleaved, a seeded "
        "sample of the evaluation instances, its size given per dataset, batch 1 and 32; accuracy on all of "
        "them). 'Complete k-layer model' "
        "here is the MiniLM-L6 backbone truncated to its first k layers and fine-tuned end to end (the "
        "efficient baseline), not a separately pretrained compact model as in the paper. DAR: lambda "
        f"{DAR_WEIGHT}, margin 0.5 (AG News 0.3); difficulty labels by {FOLDS}-fold cross-prediction with "
        f"{len(SEEDS)} seed(s) of the 2-layer model.",
        "",
    ]
    for dataset, summary in summaries.items():
        info = json.loads((out / dataset / "sweep.json").read_text())["info"]
        lines += [
            f"## {dataset}",
            "",
            f"![curves]({dataset}/sweep.png)",
            "",
            f"Standard baseline: accuracy {summary['standard']['accuracy']:.4f}, "
            f"{summary['standard']['seconds_per_instance'] * 1000:.2f} ms per instance at batch 1. Timed on "
            f"{info['timed_instances']} of the {info['instances']} evaluation instances.",
            "",
            "| curve | fastest setting | best accuracy at >= 2x | at >= 3x | at >= 4x | fastest within "
            "0.5 pt: speed-up (batch 1), throughput ratio (batch 32) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name in names:
            cells = [f"{summary['fastest_speedup'][name]:.2f}x"]
            for key in ("at_2x", "at_3x", "at_4x"):
                pick = summary[key].get(name)
                cells.append("none" if pick is None else f"{pick['accuracy']:.4f} ({pick['speedup']:.2f}x)")
            within = summary["within_half_point"].get(name)
            cells.append(
                "none"
                if within is None
                else f"{within['speedup']:.2f}x, {within['throughput_ratio']:.2f}x "
                f"(accuracy {within['accuracy']:.4f})"
            )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [
            "",
            *claim(summary),
            "",
            "Speed-ups are measured batch-1 times against the standard model's in the same sweep. A cascade "
            "cannot be faster than its first member run alone (its threshold 0). At threshold 1 a cascade "
            "skips its first member and runs the last alone, though the sweep counts its exit as the "
            "layers of both.",
            "",
            "Difficulty Inversion Score on the evaluation set (by exit layer; a cascade's exits are its "
            "members, counted in layers run in total):",
            "",
            "| model | DIS by exit |",
            "|---|---|",
        ]
        for name, by_exit in summary["dis"].items():
            lines.append(
                f"| {name} | " + ", ".join(f"{layer}: {value:.3f}" for layer, value in by_exit.items()) + " |"
            )
        labelling = summary["labelling"]
        if labelling.get("cost_seconds"):
            lines += [
                "",
                f"Difficulty labelling: {labelling['models_trained']} models, "
                f"{labelling['cost_seconds'] / 60:.1f} min; easy shares: "
                + ", ".join(f"{share:.3f}" for share in labelling["easy_share"].values())
                + ".",
            ]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["sst2", "agnews", "rte"], choices=["sst2", "agnews", "rte"]
    )
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--out", default="benchmarks/results/cascade")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=300)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = datasets(work)
    for dataset in args.datasets:
        if args.train_only:
            train_all(dataset, data[dataset], work / dataset, args.retrain)
        elif not args.report_only:
            benchmark(dataset, data[dataset], work, out, args)
    if args.train_only:
        return
    done = [d for d in ("sst2", "agnews", "rte") if (out / d / "sweep.json").exists()]
    report({d: summarise(d, out / d) for d in done}, out, args)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
